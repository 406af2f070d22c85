//! Public-key pins (RFC 7469 form, `sha256/BASE64` of the DER
//! SubjectPublicKeyInfo) and the trust modes that use them.

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TlsError;

/// How an account's servers are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrustMode {
    /// System roots plus `ca_file`, host name checked.
    #[serde(rename = "ca")]
    Ca,
    /// The server's key must match one of the configured pins; no CA.
    #[serde(rename = "pin")]
    Pin,
    /// Both a valid CA chain and a matching pin.
    #[serde(rename = "ca+pin")]
    CaAndPin,
    /// CA-checked on first contact, then the leaf key recorded in
    /// `pins.toml` is required, like SSH's known_hosts.
    #[default]
    #[serde(rename = "tofu")]
    Tofu,
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

impl Pin {
    /// Parses `sha256/BASE64` (44 base64 characters).
    pub fn parse(text: &str) -> Result<Pin, String> {
        let encoded = text
            .trim()
            .strip_prefix("sha256/")
            .ok_or_else(|| format!("'{text}' is not a pin; pins look like sha256/ followed by base64 (see 'sealpost pin fetch')"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("'{text}': the part after sha256/ is not base64"))?;
        let digest: [u8; 32] = bytes.try_into().map_err(|_| format!("'{text}': a SHA-256 pin has 32 bytes"))?;
        Ok(Pin(digest))
    }

    /// The pin of a DER certificate's public key.
    pub fn of_certificate(der: &[u8]) -> Result<Pin, TlsError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Certificate(format!("unreadable certificate: {e}")))?;
        Ok(Pin(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into()))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256/{}", base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_and_reject_junk() {
        let text = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(Pin::parse(text).unwrap().to_string(), text);
        assert!(Pin::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
            .unwrap_err()
            .contains("sha256/"));
        assert!(Pin::parse("sha256/!!!").unwrap_err().contains("not base64"));
        assert!(Pin::parse("sha256/AAAA").unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn pin_is_of_the_key_not_the_certificate() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let first = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let renewed = rcgen::CertificateParams::new(vec!["a.test".into(), "b.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        let pin = |c: &rcgen::Certificate| Pin::of_certificate(c.der()).unwrap();
        assert_eq!(pin(&first), pin(&renewed));
        assert_ne!(pin(&first), pin(&other));
        // Independent of our parser: the DER of the PEM public key is the SPKI.
        use rustls::pki_types::pem::PemObject;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(key.public_key_pem().as_bytes()).unwrap();
        assert_eq!(pin(&first).0[..], Sha256::digest(spki.as_ref())[..]);
    }
}
