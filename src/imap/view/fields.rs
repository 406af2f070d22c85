//! What the header fields of a part say: the Content-* fields (Dovecot's
//! `message-part-data.c`) and the ENVELOPE fields, kept raw as IMAP
//! reports them.

use super::address::parse_addresses;
use super::part::{Address, Envelope, PartData};
use super::rfc822::{rfc2231_parse, Rfc822, NUL_REPLACEMENT};

/// Dovecot's `message_header_strdup`: NULs become U+FFFD.
fn header_strdup(value: &[u8]) -> Vec<u8> {
    if !value.contains(&0) {
        return value.to_vec();
    }
    let mut out = Vec::with_capacity(value.len() + 4);
    for &b in value {
        if b == 0 {
            out.extend_from_slice(NUL_REPLACEMENT);
        } else {
            out.push(b);
        }
    }
    out
}

/// A `Content-*` field (`name` without the `Content-` prefix) of a part.
/// Dovecot keeps the first of each, except that a Content-Disposition
/// without parameters can be replaced by a later one.
pub(super) fn parse_content_field(data: &mut PartData, name: &[u8], value: &[u8]) {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"ID") {
        if data.id.is_none() {
            data.id = Some(header_strdup(value));
        }
    } else if is(b"MD5") {
        if data.md5.is_none() {
            data.md5 = Some(header_strdup(value));
        }
    } else if is(b"Type") {
        if data.content_type.is_none() {
            parse_content_type_data(data, value);
        }
    } else if is(b"Transfer-Encoding") {
        if data.transfer_encoding.is_none() {
            let mut p = Rfc822::new(value);
            p.skip_lwsp();
            let mut s = Vec::new();
            if p.parse_mime_token(&mut s) >= 0 && p.skip_lwsp() == 0 && !s.is_empty() {
                data.transfer_encoding = Some(s);
            }
        }
    } else if is(b"Language") {
        if data.language.is_none() {
            let mut p = Rfc822::new(value);
            let mut langs = Vec::new();
            p.skip_lwsp();
            loop {
                let mut s = Vec::new();
                if p.parse_atom(&mut s) < 0 {
                    break;
                }
                langs.push(s);
                if p.pos >= p.data.len() || p.data[p.pos] != b',' {
                    break;
                }
                p.pos += 1;
                p.skip_lwsp();
            }
            if !langs.is_empty() {
                data.language = Some(langs);
            }
        }
    } else if is(b"Location") {
        if data.location.is_none() {
            data.location = Some(header_strdup(value));
        }
    } else if is(b"Description") {
        if data.description.is_none() {
            data.description = Some(header_strdup(value));
        }
    } else if is(b"Disposition") && data.disposition_params.is_empty() {
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut s = Vec::new();
        if p.parse_mime_token(&mut s) < 0 {
            return;
        }
        data.disposition = Some(s);
        data.disposition_params = rfc2231_parse(&mut p);
    }
}

fn parse_content_type_data(data: &mut PartData, value: &[u8]) {
    let mut p = Rfc822::new(value);
    p.skip_lwsp();
    let mut s = Vec::new();
    let ret = p.parse_content_type(&mut s);
    match s.iter().position(|&b| b == b'/') {
        Some(slash) => {
            data.content_subtype = Some(s[slash + 1..].to_vec());
            data.content_type = Some(s[..slash].to_vec());
        }
        None => {
            data.content_subtype = Some(Vec::new());
            data.content_type = Some(s);
        }
    }
    if ret < 0 {
        return;
    }
    data.type_params = rfc2231_parse(&mut p);
}

pub(super) fn parse_envelope_field(env: &mut Envelope, name: &[u8], value: &[u8]) {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"Date") {
        env.date = Some(header_strdup(value));
    } else if is(b"Subject") {
        env.subject = Some(header_strdup(value));
    } else if is(b"Message-ID") {
        env.message_id = Some(header_strdup(value));
    } else if is(b"In-Reply-To") {
        env.in_reply_to = Some(header_strdup(value));
    } else if is(b"From") {
        append_addresses(&mut env.from, value);
    } else if is(b"Sender") {
        append_addresses(&mut env.sender, value);
    } else if is(b"Reply-To") {
        append_addresses(&mut env.reply_to, value);
    } else if is(b"To") {
        append_addresses(&mut env.to, value);
    } else if is(b"Cc") {
        append_addresses(&mut env.cc, value);
    } else if is(b"Bcc") {
        append_addresses(&mut env.bcc, value);
    }
}

/// A repeated address field adds to the list (Dovecot keeps all of them,
/// unlike the string fields, where the last one wins).
fn append_addresses(list: &mut Option<Vec<Address>>, value: &[u8]) {
    if let Some(more) = parse_addresses(value) {
        list.get_or_insert_with(Vec::new).extend(more);
    }
}
