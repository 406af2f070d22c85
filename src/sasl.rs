//! SASL as both proxies read it: which mechanisms they relay, how a
//! client's base64 response decodes, and which user name (hence which
//! account) a response names. The proxies never check a password: the
//! response goes to the provider as it came, and the provider answers it.
//! What a session does with the exchange is the protocol module's
//! business.

use base64::Engine;

/// The mechanisms offered to clients and relayed to providers.
pub const MECHANISMS: [&str; 4] = ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"];

/// Why a SASL response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("the SASL response is not valid base64")]
    Base64,
    /// The mechanism's format was not followed.
    #[error("the {0} response is malformed")]
    Malformed(&'static str),
    /// A mechanism the proxy does not relay.
    #[error("unsupported mechanism {0}; use one of PLAIN, LOGIN, XOAUTH2, OAUTHBEARER")]
    Unsupported(String),
}

/// Decodes one SASL response line from a client (`=` is the empty
/// response; a trailing line end is ignored).
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line);
    let line = line.trim_ascii();
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| SaslError::Base64)
}

/// The user name a decoded one-step response logs in as (PLAIN, XOAUTH2,
/// OAUTHBEARER; LOGIN sends the name as its own first response).
pub fn user_name(mechanism: &str, response: &[u8]) -> Result<String, SaslError> {
    match mechanism {
        // RFC 4616: authzid NUL authcid NUL password, authcid not empty.
        // The provider checks authcid's password, so authcid picks the
        // account.
        "PLAIN" => {
            let fields: Vec<&[u8]> = response.split(|&b| b == 0).collect();
            match fields[..] {
                [_authzid, authcid, _password] if !authcid.is_empty() => Ok(String::from_utf8_lossy(authcid).into_owned()),
                _ => Err(SaslError::Malformed("PLAIN")),
            }
        }
        // user=NAME ^A auth=Bearer TOKEN ^A ^A
        "XOAUTH2" => response
            .split(|&b| b == 1)
            .find_map(|f| f.strip_prefix(b"user="))
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .ok_or(SaslError::Malformed("XOAUTH2")),
        // RFC 7628: gs2 header "n,a=NAME," with , and = escaped.
        "OAUTHBEARER" => {
            let header = response.split(|&b| b == 1).next().unwrap_or_default();
            String::from_utf8_lossy(header)
                .split(',')
                .find_map(|f| f.strip_prefix("a="))
                .map(|u| u.replace("=2C", ",").replace("=3D", "="))
                .ok_or(SaslError::Malformed("OAUTHBEARER"))
        }
        other => Err(SaslError::Unsupported(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_from_each_mechanism() {
        assert_eq!(user_name("PLAIN", b"\0alice@x.test\0pw").unwrap(), "alice@x.test");
        assert_eq!(user_name("PLAIN", b"admin\0bob\0pw").unwrap(), "bob");
        // An empty authcid is malformed (RFC 4616), over SMTP and IMAP alike.
        assert_eq!(user_name("PLAIN", b"admin\0\0pw"), Err(SaslError::Malformed("PLAIN")));
        assert!(user_name("PLAIN", b"no-nul").is_err());
        assert!(user_name("PLAIN", b"a\0b\0c\0d").is_err());
        assert_eq!(
            user_name("XOAUTH2", b"user=carol@x.test\x01auth=Bearer tok\x01\x01").unwrap(),
            "carol@x.test"
        );
        assert_eq!(
            user_name("OAUTHBEARER", b"n,a=d=2Cave@x.test,\x01host=x\x01auth=Bearer t\x01\x01").unwrap(),
            "d,ave@x.test"
        );
        assert!(matches!(user_name("CRAM-MD5", b"x"), Err(SaslError::Unsupported(_))));
    }

    #[test]
    fn responses_decode() {
        assert_eq!(decode_response(b"AHUAcA==\r\n").unwrap(), b"\0u\0p");
        assert_eq!(decode_response(b"AGFsaWNlAHB3").unwrap(), b"\0alice\0pw");
        assert_eq!(decode_response(b"=\r\n").unwrap(), b"");
        assert_eq!(decode_response(b"***\r\n"), Err(SaslError::Base64));
    }
}
