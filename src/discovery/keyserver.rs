//! Verifying keyservers (VKS, the API of keys.openpgp.org and Hagrid):
//! `GET BASE/vks/v1/by-email/ADDRESS`, the address percent-encoded. Such
//! servers publish a user ID only after its owner confirmed the address by
//! mail, and answer 404 when they have no confirmed key for it. The answer
//! is filtered like a WKD answer: only certificates with a user ID for
//! exactly the looked-up address are kept.

use super::http::{percent_encode, Fetched, HttpsClient, HttpsUrl};
use super::{matching_certs, Address, DiscoveryError};
use sequoia_openpgp::Cert;

/// The by-email URL for `address` on the keyserver at `base` (which may
/// have a path of its own, e.g. `https://example.org/hagrid`).
pub fn by_email_url(base: &HttpsUrl, address: &Address) -> HttpsUrl {
    base.join_path(&format!("vks/v1/by-email/{}", percent_encode(&address.to_string())))
}

/// Looks `address` up; `Ok(None)` means the keyserver has no key for it.
pub(crate) async fn lookup(
    client: &HttpsClient,
    base: &HttpsUrl,
    address: &Address,
) -> Result<Option<(Vec<Cert>, HttpsUrl)>, DiscoveryError> {
    match client.get(&by_email_url(base, address)).await? {
        Fetched::Body { url, bytes } => Ok(Some((matching_certs(&bytes, address, &url)?, url))),
        Fetched::Gone { .. } => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_email_urls() {
        let address = Address::parse("Joe.Doe+tag@Example.ORG").unwrap();
        let base = HttpsUrl::parse("https://keys.openpgp.org").unwrap();
        assert_eq!(
            by_email_url(&base, &address).to_string(),
            "https://keys.openpgp.org/vks/v1/by-email/Joe.Doe%2Btag%40example.org"
        );
        let base = HttpsUrl::parse("https://keys.example:8443/hagrid/").unwrap();
        assert_eq!(
            by_email_url(&base, &address).to_string(),
            "https://keys.example:8443/hagrid/vks/v1/by-email/Joe.Doe%2Btag%40example.org"
        );
    }
}
