//! The OpenPGP Web Key Directory (draft-koch-openpgp-webkey-service,
//! section 3.1): where a domain publishes its users' keys over HTTPS.
//!
//! The local part, with upper-case ASCII letters mapped to lower case, is
//! hashed with SHA-1 and the digest written in z-base-32 (RFC 6189 section
//! 5.1.6): 32 characters. The unchanged local part goes along,
//! percent-encoded, as the `l` query parameter. Two places are asked:
//!
//! - the advanced method, `https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH?l=LOCAL`,
//!   when `openpgpkey.DOMAIN` resolves (a `[keys.connect_to]` entry counts);
//! - the direct method, `https://DOMAIN/.well-known/openpgpkey/hu/HASH?l=LOCAL`,
//!   when the sub-domain does not resolve, cannot be reached (no
//!   connection, a failed TLS handshake: domains with wildcard DNS often
//!   have such a sub-domain by accident), or has nothing for the address
//!   (404/410).
//!
//! Whatever the advanced method's server says about the key otherwise (a
//! key file, an error status, an oversized or unreadable answer, a pin
//! mismatch) is final: the direct method is not asked. The policy file is
//! not consulted, and no DNS-based checks (SRV, DANE) are made.

use sequoia_openpgp::Cert;

use super::http::{percent_encode, Fetched, HttpsClient, HttpsUrl};
use super::{matching_certs, Address, DiscoveryError};

/// The z-base-32 alphabet (RFC 6189 section 5.1.6).
const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Which WKD method found a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `openpgpkey.DOMAIN`.
    Advanced,
    /// `DOMAIN` itself.
    Direct,
}

/// z-base-32 of `bytes`, 5 bits per character, most significant first;
/// a final partial group is padded with zero bits.
pub fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ZBASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ZBASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The WKD hash of a local part: z-base-32 of the SHA-1 of the local part
/// with only ASCII letters lower-cased (other characters are hashed as
/// their UTF-8 bytes, unchanged).
pub fn hash(local_part: &str) -> String {
    let lowered = local_part.to_ascii_lowercase();
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, lowered.as_bytes());
    zbase32(digest.as_ref())
}

/// The advanced method's URL for `address`.
pub fn advanced_url(address: &Address) -> HttpsUrl {
    HttpsUrl::from_parts(
        &format!("openpgpkey.{}", address.domain()),
        443,
        format!(
            "/.well-known/openpgpkey/{}/hu/{}?l={}",
            address.domain(),
            hash(address.local_part()),
            percent_encode(address.local_part())
        ),
    )
}

/// The direct method's URL for `address`.
pub fn direct_url(address: &Address) -> HttpsUrl {
    HttpsUrl::from_parts(
        address.domain(),
        443,
        format!(
            "/.well-known/openpgpkey/hu/{}?l={}",
            hash(address.local_part()),
            percent_encode(address.local_part())
        ),
    )
}

/// What a WKD look-up found.
#[derive(Debug)]
pub(crate) struct WkdFound {
    pub certs: Vec<Cert>,
    pub url: HttpsUrl,
    pub method: Method,
}

/// Looks `address` up by the advanced, then the direct method. `Ok(None)`
/// means the domain definitively has no key for it.
pub(crate) async fn lookup(client: &HttpsClient, address: &Address) -> Result<Option<WkdFound>, DiscoveryError> {
    let advanced = advanced_url(address);
    let advanced_result = match client.resolve(advanced.host(), advanced.port()).await {
        Ok(_) => Some(client.get(&advanced).await),
        Err(e) => {
            tracing::debug!(host = advanced.host(), error = %e, "WKD: no advanced-method sub-domain; using the direct method");
            None
        }
    };
    let advanced_said = match advanced_result {
        None => None,
        Some(Ok(Fetched::Body { url, bytes })) => {
            let certs = matching_certs(&bytes, address, &url)?;
            return Ok(Some(WkdFound {
                certs,
                url,
                method: Method::Advanced,
            }));
        }
        Some(Ok(Fetched::Gone { url, status })) => Some(format!("{url} answered {status}")),
        Some(Err(e)) if e.is_unreachable() => Some(e.to_string()),
        Some(Err(e)) => return Err(e.into()),
    };
    let direct = direct_url(address);
    let result = match client.get(&direct).await {
        Ok(Fetched::Body { url, bytes }) => matching_certs(&bytes, address, &url).map(|certs| {
            Some(WkdFound {
                certs,
                url,
                method: Method::Direct,
            })
        }),
        Ok(Fetched::Gone { .. }) => Ok(None),
        Err(e) => Err(DiscoveryError::from(e)),
    };
    match (result, advanced_said) {
        // The direct method failed after the advanced one said nothing
        // useful: report both, the first may be the one to fix.
        (Err(DiscoveryError::Http(direct)), Some(advanced)) => Err(DiscoveryError::BothMethods { advanced, direct }),
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zbase32_of_known_bytes() {
        assert_eq!(zbase32(&[]), "");
        assert_eq!(zbase32(&[0]), "yy");
        assert_eq!(zbase32(&[0xff]), "9h");
        assert_eq!(zbase32(&[0xf0, 0xbf, 0xc7]), "6n9hq");
        assert_eq!(zbase32(&[0xd4, 0x7a, 0x04]), "4t7ye");
        assert_eq!(zbase32(&[0x00; 20]).len(), 32);
    }

    #[test]
    fn wkd_hash_vectors() {
        // The draft's example.
        assert_eq!(hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
        assert_eq!(hash("joe.doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
        // From GnuPG 2.2's gpg-wks-client --print-wkd-hash.
        assert_eq!(hash("alice"), "kei1q4tipxxu1yj79k9kfukdhfy631xe");
        assert_eq!(hash("a+b"), "i6wwpbayndmjsnjzbzdj15jgc77g8a4f");
        assert_eq!(hash("test.user"), "dpkwqu7tcssks3gmmbmqf4xar83heb6c");
        // Only ASCII is lower-cased: Ü stays as it is.
        assert_eq!(hash("Ünïcode"), "hss8e8o6az1fjiz8iujfffi83416i73g");
        assert_eq!(hash("ÜNÏCODE"), hash("ÜnÏcode"));
        assert_ne!(hash("ÜNÏCODE"), hash("Ünïcode"));
    }

    #[test]
    fn urls_of_both_methods() {
        let a = Address::parse("Joe.Doe@Example.ORG").unwrap();
        assert_eq!(
            advanced_url(&a).to_string(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(
            direct_url(&a).to_string(),
            "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        let b = Address::parse("<a+b@Mail.Example.COM>").unwrap();
        assert_eq!(
            advanced_url(&b).to_string(),
            "https://openpgpkey.mail.example.com/.well-known/openpgpkey/mail.example.com/hu/i6wwpbayndmjsnjzbzdj15jgc77g8a4f?l=a%2Bb"
        );
        let c = Address::parse("Ünïcode@example.org").unwrap();
        assert!(direct_url(&c)
            .to_string()
            .ends_with("/hu/hss8e8o6az1fjiz8iujfffi83416i73g?l=%C3%9Cn%C3%AFcode"));
    }
}
