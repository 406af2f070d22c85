//! Autocrypt Level 1 headers (`Autocrypt:` and `Autocrypt-Gossip:`):
//! writing ours, and reading what peers send, with the spec's validity
//! rules (addr must be the sender's, one valid header at most, unknown
//! critical attributes invalidate, 10 KiB limit, key with an encryption
//! subkey and the address).

use std::time::SystemTime;

use base64::Engine;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

use crate::mime::{addresses, Entity};
use crate::pgp::{minimal_autocrypt_key, normalize_email, KeyError};

/// Headers above this size are invalid (Autocrypt Level 1).
const MAX_HEADER: usize = 10 * 1024;

/// Characters of base64 per folded line, as Thunderbird writes them.
const KEYDATA_LINE: usize = 72;

/// A complete, folded header field `name: addr=EMAIL; keydata=...` ending
/// in CRLF, carrying the minimal form of `cert` for `email`;
/// `prefer-encrypt=mutual` before the key data when `mutual`.
pub fn autocrypt_header(name: &str, email: &str, cert: &Cert, mutual: bool) -> Result<Vec<u8>, KeyError> {
    let key = minimal_autocrypt_key(cert, email)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let preference = if mutual { " prefer-encrypt=mutual;" } else { "" };
    let mut field = format!("{name}: addr={email};{preference} keydata=\r\n");
    for chunk in encoded.as_bytes().chunks(KEYDATA_LINE) {
        field.push(' ');
        field.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        field.push_str("\r\n");
    }
    Ok(field.into_bytes())
}

/// An Autocrypt or Autocrypt-Gossip header as received.
#[derive(Debug, Clone)]
pub struct PeerKey {
    /// The address it is for, normalised.
    pub addr: String,
    /// `prefer-encrypt=mutual`.
    pub mutual: bool,
    /// The key.
    pub cert: Cert,
}

/// Reads one header value (unfolded). `Err` says why it is invalid.
pub fn parse_autocrypt(value: &str) -> Result<PeerKey, String> {
    if value.len() > MAX_HEADER {
        return Err("larger than 10 KiB".into());
    }
    let (mut addr, mut mutual, mut keydata) = (None, false, None);
    for attribute in value.split(';') {
        let attribute = attribute.trim();
        if attribute.is_empty() {
            continue;
        }
        let (name, val) = attribute
            .split_once('=')
            .ok_or_else(|| format!("attribute without a value: {attribute}"))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "addr" => addr = Some(normalize_email(val.trim())),
            "prefer-encrypt" => mutual = val.trim().eq_ignore_ascii_case("mutual"),
            "keydata" => keydata = Some(val.chars().filter(|c| !c.is_whitespace()).collect::<String>()),
            other if other.starts_with('_') => {}
            other => return Err(format!("unknown critical attribute '{other}'")),
        }
    }
    let addr = addr.ok_or("no addr attribute")?;
    let keydata = keydata.ok_or("no keydata attribute")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(keydata)
        .map_err(|_| "keydata is not base64".to_string())?;
    let cert = Cert::from_bytes(&bytes).map_err(|e| format!("keydata is not an OpenPGP key: {e}"))?;
    if cert.is_tsk() {
        return Err("keydata holds secret key material".into());
    }
    Ok(PeerKey { addr, mutual, cert })
}

/// What one incoming message says about keys (Autocrypt Level 1, "Updating
/// Autocrypt Peer State").
#[derive(Debug, Clone)]
pub struct Lessons {
    /// The sender (the single From address).
    pub sender: String,
    /// The message's effective date: its Date, or `now` when missing or in
    /// the future.
    pub date: SystemTime,
    /// The sender's key, when exactly one valid header for the sender
    /// came with the message.
    pub autocrypt: Option<PeerKey>,
    /// Gossiped keys for addresses in To/Cc/Reply-To.
    pub gossip: Vec<PeerKey>,
}

/// The lessons of `message` (its header section is read) given the
/// `gossip` values of its encrypted payload, or `None` when the message
/// is not a source: several or no From addresses, or a
/// `multipart/report` (bounces).
pub fn lessons(message: &[u8], gossip: &[String], now: SystemTime) -> Option<Lessons> {
    let entity = Entity::parse(message);
    if entity.content_type().is("multipart/report") {
        return None;
    }
    let from = addresses(entity.header, &["From"]);
    let [sender] = from.as_slice() else { return None };
    let date = entity
        .field("Date")
        .and_then(|f| mail_parser::DateTime::parse_rfc822(f.value().trim()))
        .and_then(|d| u64::try_from(d.to_timestamp()).ok())
        .map(|secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .filter(|d| *d <= now)
        .unwrap_or(now);
    let headers: Vec<PeerKey> = entity
        .fields
        .iter()
        .filter(|f| f.is("Autocrypt"))
        .filter_map(|f| parse_autocrypt(&f.value()).ok())
        .filter(|k| k.addr == *sender)
        .collect();
    let autocrypt = match headers.len() {
        1 => headers.into_iter().next(),
        _ => None,
    };
    let recipients = addresses(entity.header, &["To", "Cc", "Reply-To"]);
    let gossip = gossip
        .iter()
        .filter_map(|g| parse_autocrypt(g).ok())
        .filter(|k| recipients.contains(&k.addr) && k.addr != *sender)
        .collect();
    Some(Lessons {
        sender: sender.clone(),
        date,
        autocrypt,
        gossip,
    })
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
        let mutual = String::from_utf8(autocrypt_header("Autocrypt", "a@x.test", &cert, true).unwrap()).unwrap();
        assert!(mutual.starts_with("Autocrypt: addr=a@x.test; prefer-encrypt=mutual; keydata=\r\n "));
        let parsed = parse_autocrypt(&mutual.replace("\r\n", "")[11..]).unwrap();
        assert!(parsed.mutual && parsed.addr == "a@x.test");
        let header = autocrypt_header("Autocrypt", "a@x.test", &cert, false).unwrap();
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
