//! Byte-preserving MIME: split a message into header fields and body, find
//! multipart parts, read the few header values the OpenPGP layer needs.
//!
//! This module owns *reading* structure without re-serialising anything:
//! every slice it hands out points into the caller's buffer, so a signed part
//! or an attachment passes through untouched. It never decodes bodies and
//! never touches OpenPGP; interpreting addresses and encoded words is left to
//! `mail-parser` through [`addresses`].

mod content_type;
mod entity;

pub use content_type::ContentType;
pub use entity::{split_multipart, Entity, Field};

use mail_parser::MessageParser;

/// Lower-cased e-mail addresses found in the given header fields of a header
/// section (for example `["To", "Cc"]`), in order of appearance, without
/// duplicates. Group syntax and RFC 2047 display names are handled by
/// `mail-parser`; entries without an address are skipped.
pub fn addresses(header: &[u8], fields: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    // mail-parser stops at the first empty line; give it only the header.
    let mut section = header.to_vec();
    section.extend_from_slice(b"\r\n");
    let Some(parsed) = MessageParser::new().parse_headers(&section) else {
        return found;
    };
    for header in parsed.headers() {
        if !fields.iter().any(|f| header.name.as_str().eq_ignore_ascii_case(f)) {
            continue;
        }
        if let mail_parser::HeaderValue::Address(list) = &header.value {
            for addr in list.iter() {
                if let Some(a) = addr.address() {
                    let a = a.trim().to_ascii_lowercase();
                    if !a.is_empty() && !found.contains(&a) {
                        found.push(a);
                    }
                }
            }
        }
    }
    found
}

/// The decoded (RFC 2047) text of the first `name` field of a header
/// section, as a mail client would display it.
pub fn decoded_text(header: &[u8], name: &str) -> Option<String> {
    let mut section = header.to_vec();
    section.extend_from_slice(b"\r\n");
    let parsed = MessageParser::new().parse_headers(&section)?;
    parsed
        .headers()
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .and_then(|h| match &h.value {
            mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
            mail_parser::HeaderValue::TextList(l) => Some(l.join(", ")),
            _ => None,
        })
}

/// Address fields whose display names may be re-encoded.
const ADDRESS_FIELDS: [&str; 7] = ["From", "To", "Cc", "Reply-To", "Sender", "Resent-From", "Resent-To"];

/// The field with any raw UTF-8 in it re-encoded as RFC 2047 encoded
/// words, so that the header is plain ASCII and a relay needs no SMTPUTF8.
/// Display names are encoded; an address that is itself non-ASCII cannot
/// be, and the field is returned unchanged. ASCII fields come back as
/// they are, byte for byte.
pub fn ascii_field(field: &Field<'_>) -> Vec<u8> {
    use mail_builder::headers::address::Address as Out;
    use mail_builder::headers::Header;
    if field.raw.is_ascii() || field.name().is_empty() {
        return field.raw.to_vec();
    }
    let mut section = field.raw.to_vec();
    section.extend_from_slice(b"\r\n");
    let parsed = MessageParser::new().parse_headers(&section);
    let Some(value) = parsed.as_ref().and_then(|m| m.headers().first()).map(|h| &h.value) else {
        return field.raw.to_vec();
    };
    let name = field.name();
    let mut out = format!("{name}:").into_bytes();
    let written = match value {
        mail_parser::HeaderValue::Address(list) if ADDRESS_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name)) => {
            let mut items = Vec::new();
            for addr in list.iter() {
                let Some(email) = addr.address().filter(|a| a.is_ascii()) else {
                    return field.raw.to_vec();
                };
                items.push(Out::new_address(addr.name().map(str::to_string), email.to_string()));
            }
            Out::new_list(items).write_header(&mut out, name.len() + 1)
        }
        mail_parser::HeaderValue::Text(text) => {
            mail_builder::headers::text::Text::new(text.to_string()).write_header(&mut out, name.len() + 1)
        }
        _ => return field.raw.to_vec(),
    };
    if written.is_err() {
        return field.raw.to_vec();
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Rewrites bare LF line endings as CRLF, the canonical form RFC 3156 signs
/// and encrypts. Input that is already CRLF is returned as it is.
pub fn to_crlf(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare_lf = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
    if !bare_lf {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    std::borrow::Cow::Owned(out)
}

/// A fresh MIME boundary that cannot occur in base64 or armored text
/// (it contains `=_`, which neither alphabet produces at that position).
pub fn new_boundary() -> String {
    use rand::Rng;
    let token: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("=_sealpost_{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_handles_groups_names_and_duplicates() {
        let header = b"To: \"Bob, B\" <Bob@Example.net>, carol@example.com\r\n\
Cc: friends: dave@example.org, bob@example.net;\r\n\
Subject: hi\r\n";
        assert_eq!(
            addresses(header, &["To", "Cc"]),
            vec!["bob@example.net", "carol@example.com", "dave@example.org"]
        );
    }

    #[test]
    fn decoded_text_decodes_encoded_words() {
        let header = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n";
        assert_eq!(decoded_text(header, "subject").as_deref(), Some("Grüße"));
    }

    #[test]
    fn non_ascii_fields_become_encoded_words() {
        let header = "From: Zoë Ångström <zoe@example.org>\r\nComments: Grüße\r\nTo: bob@example.net\r\nCc: jörg@exämple.org\r\n\r\n";
        let e = Entity::parse(header.as_bytes());
        let from = ascii_field(&e.fields[0]);
        assert!(from.is_ascii(), "{}", String::from_utf8_lossy(&from));
        assert_eq!(addresses(&from, &["From"]), vec!["zoe@example.org"]);
        assert_eq!(decoded_text(&ascii_field(&e.fields[1]), "Comments").as_deref(), Some("Grüße"));
        assert!(ascii_field(&e.fields[1]).is_ascii());
        assert_eq!(ascii_field(&e.fields[2]), e.fields[2].raw.to_vec(), "ASCII stays byte for byte");
        assert_eq!(
            ascii_field(&e.fields[3]),
            e.fields[3].raw.to_vec(),
            "a UTF-8 address cannot be encoded"
        );
    }

    #[test]
    fn crlf_conversion_only_touches_bare_lf() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(matches!(to_crlf(b"a\r\nb"), std::borrow::Cow::Borrowed(_)));
    }
}
