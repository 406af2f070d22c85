//! What a client logs in with: LOGIN's user name and password, or a SASL
//! mechanism's response (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER). The proxy
//! reads only the user name, to choose the account; the credentials go to
//! the provider as they are, and are kept in memory (never logged) so the
//! side connection that fetches messages for decryption can log in too.

use base64::Engine;

/// SASL mechanisms offered to clients before login.
pub const MECHANISMS: [&str; 4] = ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"];

/// Credentials as the client gave them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The LOGIN command (or SASL LOGIN, which carries the same two).
    Login {
        /// User name.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// A one-step SASL mechanism and its (decoded) initial response.
    Sasl {
        /// PLAIN, XOAUTH2 or OAUTHBEARER.
        mechanism: String,
        /// The decoded response.
        response: Vec<u8>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Login { .. } => f.write_str("Credentials::Login(redacted)"),
            Credentials::Sasl { mechanism, .. } => write!(f, "Credentials::Sasl({mechanism}, redacted)"),
        }
    }
}

/// Why a SASL response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
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

impl Credentials {
    /// The user name that selects the account.
    pub fn user(&self) -> Result<String, AuthError> {
        match self {
            Credentials::Login { user, .. } => Ok(String::from_utf8_lossy(user).into_owned()),
            Credentials::Sasl { mechanism, response } => match mechanism.as_str() {
                // authzid NUL authcid NUL password: the provider checks
                // authcid's password.
                "PLAIN" => {
                    let mut fields = response.split(|&b| b == 0);
                    let (_authzid, authcid, _password) = (fields.next(), fields.next(), fields.next());
                    match (authcid, _password, fields.next()) {
                        (Some(authcid), Some(_), None) if !authcid.is_empty() => Ok(String::from_utf8_lossy(authcid).into_owned()),
                        _ => Err(AuthError::Malformed("PLAIN")),
                    }
                }
                // user=NAME ^A auth=Bearer TOKEN ^A ^A
                "XOAUTH2" => response
                    .split(|&b| b == 1)
                    .find_map(|f| f.strip_prefix(b"user="))
                    .map(|u| String::from_utf8_lossy(u).into_owned())
                    .ok_or(AuthError::Malformed("XOAUTH2")),
                // RFC 7628: gs2-header "n,a=NAME," with , and = escaped.
                "OAUTHBEARER" => {
                    let header = response.split(|&b| b == 1).next().unwrap_or_default();
                    let header = String::from_utf8_lossy(header);
                    header
                        .split(',')
                        .find_map(|f| f.strip_prefix("a="))
                        .map(|u| u.replace("=2C", ",").replace("=3D", "="))
                        .ok_or(AuthError::Malformed("OAUTHBEARER"))
                }
                other => Err(AuthError::Unsupported(other.to_string())),
            },
        }
    }
}

/// Decodes one SASL line from the client (`=` is the empty response).
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, AuthError> {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line);
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| AuthError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: &str, response: &[u8]) -> Credentials {
        Credentials::Sasl {
            mechanism: mechanism.into(),
            response: response.to_vec(),
        }
    }

    #[test]
    fn user_names_from_each_mechanism() {
        assert_eq!(sasl("PLAIN", b"\0alice@x.test\0pw").user().unwrap(), "alice@x.test");
        assert_eq!(sasl("PLAIN", b"admin\0bob\0pw").user().unwrap(), "bob");
        assert!(sasl("PLAIN", b"no-nul").user().is_err());
        assert_eq!(
            sasl("XOAUTH2", b"user=carol@x.test\x01auth=Bearer tok\x01\x01").user().unwrap(),
            "carol@x.test"
        );
        assert_eq!(
            sasl("OAUTHBEARER", b"n,a=d=2Cave@x.test,\x01host=x\x01auth=Bearer t\x01\x01").user().unwrap(),
            "d,ave@x.test"
        );
        assert!(matches!(sasl("CRAM-MD5", b"x").user(), Err(AuthError::Unsupported(_))));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Credentials::Login {
            user: b"u".to_vec(),
            password: b"hunter2".to_vec(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", sasl("PLAIN", b"\0u\0hunter2")).contains("hunter2"));
    }

    #[test]
    fn responses_decode() {
        assert_eq!(decode_response(b"AHUAcA==\r\n").unwrap(), b"\0u\0p");
        assert_eq!(decode_response(b"=\r\n").unwrap(), b"");
        assert!(decode_response(b"***\r\n").is_err());
    }
}
