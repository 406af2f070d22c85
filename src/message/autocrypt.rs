//! Autocrypt Level 1 headers (`Autocrypt:` and `Autocrypt-Gossip:`).

use base64::Engine;
use sequoia_openpgp::Cert;

use crate::pgp::{minimal_autocrypt_key, KeyError};

/// Characters of base64 per folded line, as Thunderbird writes them.
const KEYDATA_LINE: usize = 72;

/// A complete, folded header field `name: addr=EMAIL; keydata=...` ending
/// in CRLF, carrying the minimal form of `cert` for `email`.
pub fn autocrypt_header(name: &str, email: &str, cert: &Cert) -> Result<Vec<u8>, KeyError> {
    let key = minimal_autocrypt_key(cert, email)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let mut field = format!("{name}: addr={email}; keydata=\r\n");
    for chunk in encoded.as_bytes().chunks(KEYDATA_LINE) {
        field.push(' ');
        field.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        field.push_str("\r\n");
    }
    Ok(field.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::parse::Parse;

    #[test]
    fn header_is_folded_and_parses_back_to_a_minimal_key() {
        let (cert, _) = CertBuilder::general_purpose(Some("<a@x.test>"))
            .add_userid("<other@x.test>")
            .generate()
            .unwrap();
        let header = autocrypt_header("Autocrypt", "a@x.test", &cert).unwrap();
        let text = String::from_utf8(header).unwrap();
        assert!(text.starts_with("Autocrypt: addr=a@x.test; keydata=\r\n "));
        assert!(text.lines().all(|l| l.len() <= 78));
        assert!(text.len() < 10 * 1024);
        let b64: String = text.lines().skip(1).map(|l| l.trim()).collect();
        let key = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let parsed = Cert::from_bytes(&key).unwrap();
        assert_eq!(parsed.fingerprint(), cert.fingerprint());
        assert_eq!(parsed.userids().count(), 1);
        // general_purpose makes a signing and an encryption subkey; only the
        // encryption one is kept.
        assert_eq!(parsed.keys().subkeys().count(), 1);
        assert!(!parsed.is_tsk());
    }
}
