//! The text a message offers to SEARCH, in the form Dovecot 2.3 compares
//! search strings with (see [`crate::search::normalize`]), so that
//! Sealpost answers a search of an encrypted message exactly as the
//! server would answer it about the same message stored in plaintext:
//!
//! - `SUBJECT`: each top-level Subject field, white space runs of the raw
//!   value made one space, RFC 2047 decoded;
//! - `FROM`, `TO`, `CC`, `BCC`: each such top-level field parsed as an
//!   address list and written back as Dovecot writes addresses
//!   (`Name <local@domain>`, groups as `group: <a@b>;`), then decoded;
//! - `HEADER name value`: every top-level field, decoded, by name;
//! - `TEXT`: every header field of every part (`Name: value`), and every
//!   searched body;
//! - `BODY`: the bodies of the parts whose Content-Type is `text/*` or
//!   `message/*` or absent, transfer encoding undone, charset read.
//!
//! Values of repeated fields and the texts of different parts are kept
//! apart by a line feed, which a search string does not contain, so no
//! match spans two of them. Body line ends are LF, as Dovecot stores them.

use super::address::parse_addresses;
use super::header::read_line;
use super::part::{Address, FLAG_MULTIPART, FLAG_RFC822};
use super::preview::from_charset;
use super::rfc822::Rfc822;
use super::MessageView;
use crate::search::normalize::{normalize, normalize_into};
use crate::search::{days_from_civil, Document, OrderKeys};

/// One header field, unfolded the way Dovecot's search reads it: line
/// ends removed, a tab starting a continuation line made a space.
struct Field<'m> {
    name: &'m [u8],
    /// The colon and the white space the value starts after.
    middle: &'m [u8],
    value: Vec<u8>,
}

impl MessageView<'_> {
    /// The text SEARCH reads in this message.
    pub fn search_text(&self) -> Document {
        let mut text = Document {
            size: self.bytes.len() as u64,
            ..Document::default()
        };
        let mut date = None;
        let top = fields(&self.bytes, self.parts[0].pos);
        text.order = order_keys(&top);
        for field in top {
            let name = normalize(field.name);
            let target = match name.as_str() {
                "SUBJECT" => Some(&mut text.subject),
                "FROM" => Some(&mut text.from),
                "TO" => Some(&mut text.to),
                "CC" => Some(&mut text.cc),
                "BCC" => Some(&mut text.bcc),
                _ => None,
            };
            if let Some(target) = target {
                let value = match name.as_str() {
                    "SUBJECT" => compress_white_space(&field.value),
                    _ => write_addresses(parse_addresses(&field.value).as_deref().unwrap_or_default()),
                };
                if !target.is_empty() {
                    target.push('\n');
                }
                decode_header_into(&value, target);
            }
            if name == "DATE" && date.is_none() {
                date = Some(sent_date(&field.value));
            }
            text.fields.push('\n');
            text.fields.push_str(&name);
            text.fields.push(':');
            decode_header_into(&field.value, &mut text.fields);
        }
        text.sent = date.unwrap_or(0);
        for (idx, part) in self.parts.iter().enumerate() {
            for field in fields(&self.bytes, part.pos) {
                normalize_into(field.name, &mut text.all_fields);
                text.all_fields.push_str(&String::from_utf8_lossy(field.middle));
                decode_header_into(&field.value, &mut text.all_fields);
                text.all_fields.push('\n');
            }
            if part.has(FLAG_MULTIPART) || part.has(FLAG_RFC822) {
                continue;
            }
            let reading = self.reading(idx);
            let searched = reading
                .content_type
                .as_deref()
                .is_none_or(|ct| ct.starts_with("text/") || ct.starts_with("message/"));
            if searched {
                let body = self.body_text(idx, &reading).replace("\r\n", "\n");
                if !text.body.is_empty() {
                    text.body.push('\n');
                }
                normalize_into(body.as_bytes(), &mut text.body);
            }
        }
        text
    }
}

/// What SORT and THREAD read in the top-level `fields`.
fn order_keys(fields: &[Field<'_>]) -> OrderKeys {
    let first = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| &f.value)
    };
    let first_address =
        |name: &str| first(name).map(|value| parse_addresses(value).and_then(|list| list.into_iter().next()).unwrap_or_default());
    let mailbox = |name: &str| {
        let address = first_address(name);
        normalize(address.and_then(|a| a.mailbox).as_deref().unwrap_or_default())
    };
    let display = |name: &str| {
        let Some(address) = first_address(name) else { return String::new() };
        let mut shown = String::new();
        if let Some(display_name) = &address.name {
            decode_header_into(display_name, &mut shown);
        }
        if shown.is_empty() {
            let mut raw = address.mailbox.unwrap_or_default();
            if let Some(domain) = address.domain {
                raw.push(b'@');
                raw.extend_from_slice(&domain);
            }
            shown = normalize(&raw);
        }
        shown
    };
    let (base_subject, reply_or_forward) = match first("Subject") {
        Some(subject) => {
            let (base, reply) = base_subject(subject);
            (Some(base), reply)
        }
        None => (None, false),
    };
    let mut references = first("References").map(|v| message_ids(v)).unwrap_or_default();
    if references.is_empty() {
        references = first("In-Reply-To")
            .and_then(|v| message_ids(v).into_iter().next())
            .into_iter()
            .collect();
    }
    OrderKeys {
        base_subject,
        reply_or_forward,
        from: mailbox("From"),
        to: mailbox("To"),
        cc: mailbox("Cc"),
        display_from: display("From"),
        display_to: display("To"),
        date: first("Date")
            .and_then(|v| parse_date(v))
            .map_or(0, |(utc, _)| i64::from(utc as u32)),
        message_id: first("Message-ID").and_then(|v| message_ids(v).into_iter().next()),
        references,
    }
}

/// The message ids in a field, as Dovecot's `message_id_get_next` finds
/// them: each `<...>` holding an `@`, white space inside removed.
fn message_ids(value: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.iter().position(|&b| b == b'<') {
        rest = &rest[open + 1..];
        let Some(end) = rest.iter().position(|&b| matches!(b, b'>' | b'"' | b'(' | b'[')) else {
            break;
        };
        if rest[end] == b'>' {
            let id = &rest[..end];
            rest = &rest[end + 1..];
            if id.contains(&b'@') {
                let id: Vec<u8> = id.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
                ids.push(String::from_utf8_lossy(&id).into_owned());
            }
        }
    }
    ids
}

/// RFC 5256's base subject as Dovecot computes it
/// (`imap_get_base_subject_cased`): decoded, in search form, white space
/// packed, then trailers (`(fwd)`), leaders (`Re:`, `[blob] Fwd:`),
/// leading blobs and `[Fwd: ...]` removed while any remain. Also whether
/// the subject was a reply or forward.
fn base_subject(raw: &[u8]) -> (String, bool) {
    let mut decoded = String::new();
    decode_header_into(raw, &mut decoded);
    let mut packed: Vec<u8> = Vec::with_capacity(decoded.len());
    for &b in decoded.as_bytes() {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            if packed.last() != Some(&b' ') || packed.is_empty() {
                packed.push(b' ');
            }
        } else {
            packed.push(b);
        }
    }
    let mut text = packed;
    let mut start = 0;
    let mut reply = false;
    loop {
        // (2) trailers
        let mut end = text.len();
        while end > start {
            if text[end - 1] == b' ' {
                end -= 1;
            } else if end >= 5 && &text[end - 5..end] == b"(FWD)" {
                reply = true;
                end -= 5;
            } else {
                break;
            }
        }
        text.truncate(end);
        loop {
            // (3) leader, (4) a blob when something is left after it
            let mut found = remove_leader(&text, &mut start, &mut reply);
            let mut at = start;
            if text.get(at) == Some(&b'[') && remove_blob(&text, &mut at) && at < text.len() {
                start = at;
                found = true;
            }
            if !found {
                break;
            }
        }
        // (6) [Fwd: ...]
        if text[start..].starts_with(b"[FWD:") && text.last() == Some(&b']') {
            reply = true;
            text.pop();
            start += 5;
            continue;
        }
        break;
    }
    (String::from_utf8_lossy(&text[start.min(text.len())..]).into_owned(), reply)
}

/// Moves `at` past `[...]` and one space after it.
fn remove_blob(text: &[u8], at: &mut usize) -> bool {
    let mut i = *at;
    if text.get(i) != Some(&b'[') {
        return false;
    }
    i += 1;
    while i < text.len() && text[i] != b'[' && text[i] != b']' {
        i += 1;
    }
    if text.get(i) != Some(&b']') {
        return false;
    }
    i += 1;
    if text.get(i) == Some(&b' ') {
        i += 1;
    }
    *at = i;
    true
}

/// Removes a leading space, or `[blob]* (RE|FWD|FW) [ ] [blob] :`.
fn remove_leader(text: &[u8], start: &mut usize, reply: &mut bool) -> bool {
    let mut found = false;
    if text.get(*start) == Some(&b' ') {
        *start += 1;
        found = true;
    }
    let mut at = *start;
    while text.get(at) == Some(&b'[') {
        if !remove_blob(text, &mut at) {
            return found;
        }
    }
    let rest = &text[at.min(text.len())..];
    at += if rest.starts_with(b"RE") {
        2
    } else if rest.starts_with(b"FWD") {
        3
    } else if rest.starts_with(b"FW") {
        2
    } else {
        return found;
    };
    if text.get(at) == Some(&b' ') {
        at += 1;
    }
    if text.get(at) == Some(&b'[') && !remove_blob(text, &mut at) {
        return found;
    }
    if text.get(at) != Some(&b':') {
        return found;
    }
    *start = at + 1;
    *reply = true;
    true
}

/// The fields of the header at `start`.
fn fields(buf: &[u8], start: usize) -> Vec<Field<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let (mut pos, mut continued) = (start, false);
    while let Some(line) = read_line(buf, pos, continued, false) {
        if line.eoh {
            break;
        }
        let value = &buf[line.value_start.min(line.content_end)..line.content_end];
        match fields.last_mut() {
            Some(field) if continued => match value.split_first() {
                Some((b'\t', rest)) => {
                    field.value.push(b' ');
                    field.value.extend_from_slice(rest);
                }
                _ => field.value.extend_from_slice(value),
            },
            _ => fields.push(Field {
                name: &buf[line.name.0..line.name.1],
                middle: &buf[line.name.1..line.value_start.max(line.name.1).min(line.content_end)],
                value: value.to_vec(),
            }),
        }
        pos = line.end;
        continued = line.continues;
    }
    fields
}

/// A Date field as Dovecot 2.3 compares it with a SENT* day: the time in
/// the field's own zone, as seconds since the epoch, taken modulo 2^32
/// as Dovecot stores it (so a date before 1970 is far in the future);
/// 0, the epoch, when the field cannot be read.
fn sent_date(value: &[u8]) -> i64 {
    match parse_date(value) {
        Some((utc, zone_minutes)) => i64::from(utc as u32) + i64::from(zone_minutes) * 60,
        None => 0,
    }
}

/// Dovecot's `message_date_parse`: `[Day ,] d Mon [yy]yy hh:mm[:ss]
/// [zone]`, forgiving about separators and unknown zones (taken as
/// +0000). The UTC time and the zone's offset in minutes.
fn parse_date(value: &[u8]) -> Option<(i64, i32)> {
    let mut p = Rfc822::new(value);
    let token = |p: &mut Rfc822<'_>| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if p.at_end() {
            return Some(out);
        }
        (p.parse_atom(&mut out) >= 0).then_some(out)
    };
    let number = |t: &[u8]| {
        t.iter()
            .all(u8::is_ascii_digit)
            .then(|| t.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    p.skip_lwsp();
    let mut t = token(&mut p).filter(|t| !t.is_empty())?;
    if t.len() == 3 {
        if p.at_end() || p.peek() != b',' {
            return None;
        }
        p.pos += 1;
        p.skip_lwsp();
        t = token(&mut p).filter(|t| !t.is_empty())?;
    }
    let day = number(&t).filter(|_| (1..=2).contains(&t.len()))?;
    let month = token(&mut p).filter(|t| t.len() >= 3)?;
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
    ];
    let month = MONTHS.iter().position(|m| month[..3].eq_ignore_ascii_case(m))? as i64 + 1;
    let year = token(&mut p).filter(|t| t.len() == 2 || t.len() == 4)?;
    let year = match (year.len(), number(&year)?) {
        (2, y) if y < 70 => 2000 + y,
        (2, y) => 1900 + y,
        (_, y) if y < 1900 => return None,
        (_, y) => y,
    };
    let hour = token(&mut p).filter(|t| (1..=2).contains(&t.len()))?;
    let hour = number(&hour)?;
    let is_separator = |p: &Rfc822<'_>| !p.at_end() && matches!(p.peek(), b':' | b'.');
    if !is_separator(&p) {
        return None;
    }
    p.pos += 1;
    p.skip_lwsp();
    let minute = token(&mut p).filter(|t| t.len() == 2).and_then(|t| number(&t))?;
    let mut second = 0;
    if is_separator(&p) {
        p.pos += 1;
        p.skip_lwsp();
        second = token(&mut p).filter(|t| t.len() == 2).and_then(|t| number(&t))?;
    }
    let zone = token(&mut p)?;
    let zone = if zone.is_empty() { 0 } else { zone_offset(&zone) };
    let days_in_month = match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let utc = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59);
    Some((utc - i64::from(zone) * 60, zone))
}

/// A zone's offset in minutes: `+hhmm`, `UT`, `GMT`, the US zones, or a
/// military letter (read the way Dovecot reads them); anything else 0.
fn zone_offset(zone: &[u8]) -> i32 {
    let digit = |i: usize| i32::from(zone[i] - b'0');
    match zone {
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 4 && rest.iter().all(u8::is_ascii_digit) => {
            let minutes = (digit(1) * 10 + digit(2)) * 60 + digit(3) * 10 + digit(4);
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        [letter] => {
            let upper = letter.to_ascii_uppercase();
            let raw = i32::from(*letter);
            match upper {
                b'A'..=b'I' => (raw - i32::from(b'A') + 1) * 60,
                b'J' => 0,
                b'K'..=b'M' => (raw - i32::from(b'A')) * 60,
                b'N'..=b'Y' => (i32::from(b'M') - raw) * 60,
                _ => 0,
            }
        }
        [a, b, b'T'] => {
            let base = match a.to_ascii_uppercase() {
                b'E' => -5,
                b'C' => -6,
                b'M' => -7,
                b'P' => -8,
                _ => return 0,
            };
            match b.to_ascii_uppercase() {
                b'S' => base * 60,
                b'D' => (base + 1) * 60,
                _ => 0,
            }
        }
        _ => 0,
    }
}

/// Leading white space dropped, each run of spaces and tabs made one
/// space (Dovecot's SUBJECT reading, before decoding).
fn compress_white_space(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in value.iter().skip_while(|&&b| b == b' ' || b == b'\t') {
        if b == b' ' || b == b'\t' {
            space = true;
            continue;
        }
        if space {
            out.push(b' ');
            space = false;
        }
        out.push(b);
    }
    if space {
        out.push(b' ');
    }
    out
}

/// Appends a header value, RFC 2047 encoded words decoded, in search
/// form: Dovecot's `message_header_decode_utf8` with its normaliser.
/// White space between two encoded words (or before the first) goes;
/// text in a charset that cannot be read is appended as it is, not
/// normalised.
pub(crate) fn decode_header_into(value: &[u8], out: &mut String) {
    let mut start = 0;
    let mut pos = 0;
    while pos + 1 < value.len() {
        if value[pos] != b'=' || value[pos + 1] != b'?' {
            pos += 1;
            continue;
        }
        // Text before an encoded word goes out first, unless it is only
        // white space (even when the word then turns out to be broken).
        let before = &value[start..pos];
        if !before.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
            normalize_into(before, out);
        }
        let Some((charset, text, used)) = encoded_word(&value[pos + 2..]) else {
            start = pos;
            pos += 2;
            continue;
        };
        pos += 2 + used;
        start = pos;
        if text.is_empty() {
            continue;
        }
        let utf8 = [b"utf-8".as_slice(), b"utf8", b"us-ascii", b"ascii"];
        if utf8.iter().any(|c| charset.eq_ignore_ascii_case(c)) {
            normalize_into(&text, out);
        } else {
            match from_charset(&text, charset) {
                Some(converted) => normalize_into(converted.as_bytes(), out),
                None => out.push_str(&String::from_utf8_lossy(&text)),
            }
        }
    }
    if start < value.len() {
        normalize_into(&value[start..], out);
    }
}

/// Reads `charset?Q|B?text?=` after an `=?`: the charset, the decoded
/// text and the bytes used. `None` when it is no encoded word.
fn encoded_word(data: &[u8]) -> Option<(&[u8], Vec<u8>, usize)> {
    let mut marks = data.iter().enumerate().filter(|(_, &b)| b == b'?').map(|(i, _)| i);
    let (first, second, third) = (marks.next()?, marks.next()?, marks.next()?);
    if data.get(third + 1) != Some(&b'=') {
        return None;
    }
    let text = &data[second + 1..third];
    let decoded = match data.get(first + 1)? {
        b'q' | b'Q' => q_decode(text),
        b'b' | b'B' => base64_prefix(text),
        _ => return None,
    };
    Some((&data[..first], decoded, third + 2))
}

/// The `Q` encoding: `_` is a space, `=XX` a byte; an `=` without two hex
/// digits stays, and so does the rest once fewer than two bytes follow.
fn q_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 >= text.len() => {
                out.extend_from_slice(&text[i..]);
                break;
            }
            b'=' => {
                let (high, low) = (text[i + 1], text[i + 2]);
                if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() {
                    let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                    out.push(digit(high) << 4 | digit(low));
                    i += 2;
                } else {
                    out.push(b'=');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Base64 up to the first character that is not base64 (what Dovecot
/// shows of an encoded word with invalid data).
fn base64_prefix(text: &[u8]) -> Vec<u8> {
    let valid = text
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        .count();
    let usable = valid - valid % 4 + if valid % 4 >= 2 { valid % 4 } else { 0 };
    let mut out = Vec::with_capacity(usable / 4 * 3 + 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in &text[..usable] {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// An address list as Dovecot's `message_address_write` writes it.
fn write_addresses(list: &[Address]) -> Vec<u8> {
    let mut out = Vec::new();
    if list.len() == 1 && list[0].mailbox.is_none() && list[0].domain.is_none() {
        return b"<>".to_vec();
    }
    let mut first = true;
    let mut in_group = false;
    for addr in list {
        if !first {
            out.extend_from_slice(b", ");
        }
        first = false;
        if addr.domain.is_none() {
            if !in_group {
                match addr.mailbox.as_deref().filter(|m| !m.is_empty()) {
                    Some(name) => append_phrase(&mut out, name),
                    None => out.extend_from_slice(b"\"\""),
                }
                out.extend_from_slice(b": ");
                first = true;
            } else {
                if out.ends_with(b", ") {
                    out.truncate(out.len() - 2);
                } else if out.ends_with(b": ") {
                    out.truncate(out.len() - 1);
                }
                out.push(b';');
            }
            in_group = !in_group;
            continue;
        }
        let mailbox = addr.mailbox.as_deref().unwrap_or_default();
        let domain = addr.domain.as_deref().unwrap_or_default();
        if let Some(name) = &addr.name {
            append_phrase(&mut out, name);
        }
        if addr.route.is_some() || !mailbox.is_empty() || !domain.is_empty() {
            if addr.name.as_ref().is_some_and(|n| !n.is_empty()) {
                out.push(b' ');
            }
            out.push(b'<');
            if let Some(route) = &addr.route {
                out.extend_from_slice(route);
                out.push(b':');
            }
            if mailbox.is_empty() {
                out.extend_from_slice(b"\"\"");
            } else {
                append_maybe_quoted(&mut out, mailbox, false);
            }
            if !domain.is_empty() {
                out.push(b'@');
                out.extend_from_slice(domain);
            }
            out.push(b'>');
        }
    }
    out
}

/// A display name or group name: raw when it holds an encoded word (so
/// that decoding finds it), quoted when it needs to be.
fn append_phrase(out: &mut Vec<u8>, phrase: &[u8]) {
    if phrase.windows(2).any(|w| w == b"=?") {
        out.extend_from_slice(phrase);
    } else {
        append_maybe_quoted(out, phrase, true);
    }
}

/// RFC 5322 atext, and bytes of 8-bit text.
fn is_atext(b: u8) -> bool {
    b >= 0x80 || b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Dovecot's `str_append_maybe_escape`: quoted when a byte is not atext
/// (a dot counts only with `escape_dot`), with `"`, `\` and `'` escaped.
fn append_maybe_quoted(out: &mut Vec<u8>, text: &[u8], escape_dot: bool) {
    if text.iter().all(|&b| is_atext(b) || (!escape_dot && b == b'.')) {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &b in text {
        if matches!(b, b'"' | b'\\' | b'\'') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(value: &str) -> String {
        let mut out = String::new();
        decode_header_into(value.as_bytes(), &mut out);
        out
    }

    fn addresses(value: &str) -> String {
        decoded(&String::from_utf8_lossy(&write_addresses(
            parse_addresses(value.as_bytes()).as_deref().unwrap_or_default(),
        )))
    }

    #[test]
    fn encoded_words_decode_as_dovecot_decodes_them() {
        assert_eq!(decoded("=?utf-8?q?a?=   =?utf-8?q?b?="), "AB");
        assert_eq!(decoded("Hello =?ISO-8859-1?Q?Gr=FC=DFe?= x"), "HELLO GRU\u{308}ßE X");
        assert_eq!(decoded("=?x-unknown?q?abcxyz?="), "abcxyz");
        assert_eq!(decoded("=?utf-8?b?R3LDvMOfZQ==?="), "GRU\u{308}ßE");
        assert_eq!(decoded("a =?utf-8?z?x?= b"), "A =?UTF-8?Z?X?= B");
    }

    #[test]
    fn addresses_are_written_as_dovecot_writes_them() {
        assert_eq!(addresses("a@example.com"), "<A@EXAMPLE.COM>");
        assert_eq!(
            addresses("\"Alice Smith\" <alice@example.com>"),
            "\"ALICE SMITH\" <ALICE@EXAMPLE.COM>"
        );
        assert_eq!(addresses("Alice Smith <alice@example.com>"), "\"ALICE SMITH\" <ALICE@EXAMPLE.COM>");
        assert_eq!(addresses("a@b.c (The Name)"), "\"THE NAME\" <A@B.C>");
        assert_eq!(addresses("G: a@b, c@d;"), "G: <A@B>, <C@D>;");
        assert_eq!(addresses("undisclosed-recipients:;"), "UNDISCLOSED-RECIPIENTS:;");
        assert_eq!(addresses("John.Doe <jd@x>"), "\"JOHN.DOE\" <JD@X>");
        assert_eq!(addresses("=?utf-8?q?J=C3=B6rg?= <j@x>"), "JO\u{308}RG <J@X>");
        assert_eq!(addresses("foo"), "<FOO@MISSING_DOMAIN>");
    }

    #[test]
    fn base_subjects_as_dovecot_computes_them() {
        let base = |s: &str| base_subject(s.as_bytes());
        assert_eq!(base("Re[2]: x"), ("X".into(), true));
        assert_eq!(base("Re : x"), ("X".into(), true));
        assert_eq!(base("AW: x"), ("AW: X".into(), false));
        assert_eq!(base("[list]"), ("[LIST]".into(), false));
        assert_eq!(base("[list] Re: Fwd: hello (fwd)"), ("HELLO".into(), true));
        assert_eq!(base("[Fwd: Re: the  thing]"), ("THE THING".into(), true));
        assert_eq!(base("  plain   subject  "), ("PLAIN SUBJECT".into(), false));
    }

    #[test]
    fn order_keys_read_first_fields() {
        let view = MessageView::parse(
            b"From: \"\" <Aaron@x>\r\nTo: undisclosed-recipients:;\r\nCc: =?utf-8?q?J=C3=B6rg?= <j@x>\r\nSubject: Re: Hi\r\nMessage-ID: < a@b >\r\nIn-Reply-To: garbage <noat> <c@x>\r\nDate: 2 Jun 2020 01:30 +0200\r\n\r\nx\r\n",
        );
        let keys = view.search_text().order;
        assert_eq!(keys.display_from, "AARON@X");
        assert_eq!(keys.from, "AARON");
        assert_eq!(keys.to, "UNDISCLOSED-RECIPIENTS");
        assert_eq!(keys.display_to, "UNDISCLOSED-RECIPIENTS");
        assert_eq!(keys.cc, "J");
        assert_eq!(keys.base_subject.as_deref(), Some("HI"));
        assert_eq!(keys.message_id.as_deref(), Some("a@b"));
        assert_eq!(keys.references, ["c@x"]);
        assert_eq!(keys.date, days_from_civil(2020, 6, 1) * 86_400 + 23 * 3600 + 30 * 60);
    }

    #[test]
    fn dates_read_as_dovecot_reads_them() {
        let day = |y, m, d| days_from_civil(y, m, d) * 86_400;
        // The day is the one in the field's own zone.
        let late = sent_date(b"Mon, 1 Jun 2020 23:30 -0700");
        assert!(late >= day(2020, 6, 1) && late < day(2020, 6, 2));
        let early = sent_date(b"Tue, 2 Jun 2020 01:30:05 +0200");
        assert!(early >= day(2020, 6, 2) && early < day(2020, 6, 3));
        assert_eq!(sent_date(b"2 Jun 2020 01:30 GMT"), day(2020, 6, 2) + 5400);
        assert_eq!(sent_date(b"2 Jun 20 01.30 EDT"), day(2020, 6, 2) + 5400);
        for unreadable in [
            &b""[..],
            b"Tuesday, 2 Jun 2020 01:30",
            b"31 Feb 2020 10:00",
            b"2 Jun 1850 10:00",
            b"garbage",
        ] {
            assert_eq!(sent_date(unreadable), 0, "{}", String::from_utf8_lossy(unreadable));
        }
        // Before 1970: wraps, as Dovecot's 32-bit field does.
        assert!(sent_date(b"1 Jan 1967 00:00 +0000") > day(2100, 1, 1));
    }

    #[test]
    fn subject_white_space_is_compressed_before_decoding() {
        assert_eq!(compress_white_space(b"  hello \t  world  "), b"hello world ");
        let view = MessageView::parse(b"Subject:   Hello   World\r\nX-A: one\r\n\ttwo\r\n\r\nBody  text\r\n");
        let text = view.search_text();
        assert_eq!(text.subject, "HELLO WORLD");
        assert!(text.fields.contains("\nX-A:ONE TWO"));
        assert!(text.all_fields.contains("SUBJECT:   HELLO   WORLD\n") || text.all_fields.contains("SUBJECT: "));
        assert_eq!(text.body, "BODY  TEXT\n");
    }
}
