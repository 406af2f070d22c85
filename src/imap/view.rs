//! Answers to IMAP FETCH items computed from a message's bytes, exactly as
//! the provider's IMAP server (Dovecot 2.3, the reference) would answer
//! them: `BODYSTRUCTURE`, `BODY`, `ENVELOPE`, `RFC822.SIZE` and
//! `BODY[section]<partial>` (RFC 9051 §6.4.5, §7.5.2; RFC 3501 §7.4.2).
//!
//! The IMAP proxy serves decrypted messages in place of the ciphertext the
//! provider stores, so every value it computes about a message must be
//! byte-identical to what the server would have computed had it stored the
//! clear text: a client caches BODYSTRUCTURE and section sizes and would
//! be confused by any difference. Where the RFCs leave a choice (quoting,
//! defaults, broken input), this module makes Dovecot's choice; the
//! integration test `tests/imap_view.rs` compares it with a real Dovecot.
//!
//! [`MessageView::parse`] walks the message once, the way Dovecot's
//! `message-parser.c` does (boundary prefixes, truncated multiparts,
//! header lines cut short by a boundary, at most 100 nested parts), and
//! keeps a flat tree of parts with byte ranges into the message. Nothing is
//! decoded: header values are reported raw, as IMAP wants them.
//!
//! This module owns pure rendering. It never touches sockets, state or
//! cryptography, and it never panics, whatever the bytes: messages come
//! from the network and are attacker-controlled.

use std::borrow::Cow;

use super::emit;

/// Dovecot's `MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS`: a part nested
/// this deep (the message itself being depth 0, counting one level for
/// each multipart or message/rfc822 container) cannot contain further parts;
/// a deeper multipart or message/rfc822 is treated as an opaque body.
const MAX_NESTED_PARTS: usize = 100;
/// Dovecot's `MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS`: once a message
/// has this many parts (itself included), the part that reached the limit
/// takes the rest of the message as its body, boundaries and all.
const MAX_TOTAL_PARTS: usize = 10_000;
/// Dovecot's `BOUNDARY_STRING_MAX_LEN`: longer boundaries are truncated.
const BOUNDARY_MAX_LEN: usize = 80;
/// How many parameters (broken ones included) Dovecot reads from one
/// Content-Type or Content-Disposition field.
const MAX_PARAM_ATTEMPTS: usize = 128;
/// What Dovecot puts in place of a NUL in header values (U+FFFD in UTF-8).
const NUL_REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

/// The part inside the brackets of `BODY[...]` / `BODY.PEEK[...]`
/// (RFC 9051 §6.4.5): a part number (empty for the whole message) and what
/// to take from that part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The part number, e.g. `[1, 2]` for `1.2`; empty for the message
    /// itself. Like Dovecot, components may be `0` or have leading zeros,
    /// and overflowing numbers wrap around.
    pub part: Vec<u32>,
    /// What to take from the part.
    pub text: SectionText,
}

/// What a [`Section`] takes from its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// No suffix: the whole message (`BODY[]`) or, with a part number, the
    /// part's body (`BODY[1.2]`).
    All,
    /// `HEADER`: the header, including the blank line that ends it.
    Header,
    /// `HEADER.FIELDS (...)` or, with `not`, `HEADER.FIELDS.NOT (...)`:
    /// the matching (or all other) header fields in message order,
    /// followed by the blank line.
    HeaderFields {
        /// True for `HEADER.FIELDS.NOT`.
        not: bool,
        /// The field names, as given (matched case-insensitively).
        fields: Vec<String>,
    },
    /// `TEXT`: the body.
    Text,
    /// `MIME`: the MIME header of a part (requires a part number).
    Mime,
}

impl Section {
    /// `HEADER` of the message (what `RFC822.HEADER` returns).
    pub fn header() -> Section {
        Section {
            part: Vec::new(),
            text: SectionText::Header,
        }
    }

    /// `TEXT` of the message (what `RFC822.TEXT` returns).
    pub fn text() -> Section {
        Section {
            part: Vec::new(),
            text: SectionText::Text,
        }
    }

    /// The whole message (`BODY[]`, what `RFC822` returns).
    pub fn all() -> Section {
        Section {
            part: Vec::new(),
            text: SectionText::All,
        }
    }

    /// Parses the bytes between `[` and `]`, e.g. `b""`, `b"1.2"`,
    /// `b"HEADER.FIELDS (From To)"`, `b"1.MIME"`, `b"2.HEADER"`
    /// (keywords case-insensitive; field names may be atoms or quoted
    /// strings). `None` for anything Dovecot answers with BAD: a trailing
    /// or doubled dot, an unknown keyword, an empty field list, `MIME`
    /// without a part number.
    pub fn parse(spec: &[u8]) -> Option<Section> {
        // The part number: digits separated by single dots.
        let mut i = 0;
        let mut need_digit = true;
        while i < spec.len() {
            if spec[i].is_ascii_digit() {
                need_digit = false;
            } else if !need_digit && spec[i] == b'.' {
                need_digit = true;
            } else {
                break;
            }
            i += 1;
        }
        let (number, rest) = if i == 0 {
            (&spec[..0], spec)
        } else if i == spec.len() {
            if spec[i - 1] == b'.' {
                return None;
            }
            (spec, &spec[i..])
        } else {
            if spec[i - 1] != b'.' {
                return None;
            }
            (&spec[..i - 1], &spec[i..])
        };
        let part: Vec<u32> = if number.is_empty() {
            Vec::new()
        } else {
            number
                .split(|&b| b == b'.')
                .map(|n| {
                    n.iter()
                        .fold(0u32, |acc, &d| acc.wrapping_mul(10).wrapping_add(u32::from(d - b'0')))
                })
                .collect()
        };
        let upper = rest.to_ascii_uppercase();
        let text = if upper.is_empty() {
            SectionText::All
        } else if upper == b"MIME" {
            if part.is_empty() {
                return None;
            }
            SectionText::Mime
        } else if upper == b"TEXT" {
            SectionText::Text
        } else if upper == b"HEADER" {
            SectionText::Header
        } else if let Some(list) = upper.strip_prefix(b"HEADER.FIELDS") {
            let (not, list) = match list.strip_prefix(b".NOT") {
                Some(l) => (true, l),
                None => (false, list),
            };
            // Keep the original case of the names.
            let offset = rest.len() - list.len();
            let fields = parse_field_list(&rest[offset..])?;
            SectionText::HeaderFields { not, fields }
        } else {
            return None;
        };
        Some(Section { part, text })
    }
}

/// Parses ` (name "name" ...)`: at least one space, a non-empty
/// parenthesised list of atoms or quoted strings, nothing after it.
fn parse_field_list(s: &[u8]) -> Option<Vec<String>> {
    let mut i = 0;
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    if i == 0 || s.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        match s.get(i)? {
            b')' => {
                i += 1;
                break;
            }
            b'"' => {
                i += 1;
                let mut name = Vec::new();
                loop {
                    match *s.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            i += 1;
                            name.push(*s.get(i)?);
                        }
                        b'\r' | b'\n' => return None,
                        c => name.push(c),
                    }
                    i += 1;
                }
                i += 1;
                fields.push(String::from_utf8(name).ok()?);
            }
            _ => {
                let start = i;
                while i < s.len() && is_astring_char(s[i]) {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                fields.push(String::from_utf8(s[start..i].to_vec()).ok()?);
            }
        }
        if !matches!(s.get(i), Some(b' ' | b')')) {
            return None;
        }
    }
    if i != s.len() || fields.is_empty() {
        return None;
    }
    Some(fields)
}

/// ASTRING-CHAR of RFC 9051 minus `]` (which cannot appear inside the
/// brackets of a section).
fn is_astring_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// The `<origin.length>` partial of a section's bytes, as Dovecot computes
/// it: an origin at or beyond the end gives nothing, a length reaching
/// beyond the end is cut at the end.
pub fn partial(bytes: &[u8], origin: u64, length: Option<u64>) -> &[u8] {
    let len = bytes.len() as u64;
    if origin >= len {
        return &[];
    }
    let end = match length {
        Some(l) => origin.saturating_add(l).min(len),
        None => len,
    };
    // Both fit in usize: they are at most bytes.len().
    &bytes[origin as usize..end as usize]
}

// ---------------------------------------------------------------------------
// The message tree
// ---------------------------------------------------------------------------

const FLAG_MULTIPART: u8 = 1;
const FLAG_RFC822: u8 = 2;
const FLAG_TEXT: u8 = 4;
const FLAG_DIGEST: u8 = 8;
const FLAG_IS_MIME: u8 = 16;

/// A `name value` parameter of Content-Type or Content-Disposition.
type Param = (Vec<u8>, Vec<u8>);

/// What the Content-* fields of a part say (Dovecot's `message_part_data`).
#[derive(Debug, Default, Clone)]
struct PartData {
    content_type: Option<Vec<u8>>,
    content_subtype: Option<Vec<u8>>,
    type_params: Vec<Param>,
    transfer_encoding: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    disposition: Option<Vec<u8>>,
    disposition_params: Vec<Param>,
    language: Option<Vec<Vec<u8>>>,
    location: Option<Vec<u8>>,
}

/// One address of an ENVELOPE address list. A group is a start entry
/// (only `mailbox`, the group name) and an end entry (all `None`).
#[derive(Debug, Default, Clone)]
struct Address {
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    domain: Option<Vec<u8>>,
    invalid: bool,
}

/// The ENVELOPE fields of a header, raw. Of a repeated string field
/// Dovecot keeps the last occurrence; repeated address fields add up.
#[derive(Debug, Default, Clone)]
struct Envelope {
    date: Option<Vec<u8>>,
    subject: Option<Vec<u8>>,
    from: Option<Vec<Address>>,
    sender: Option<Vec<Address>>,
    reply_to: Option<Vec<Address>>,
    to: Option<Vec<Address>>,
    cc: Option<Vec<Address>>,
    bcc: Option<Vec<Address>>,
    in_reply_to: Option<Vec<u8>>,
    message_id: Option<Vec<u8>>,
}

/// One MIME part: where its header and body are, and what they say.
#[derive(Debug, Clone)]
struct Part {
    /// Offset of the header.
    pos: usize,
    /// Header length, including the blank line when there is one.
    hdr_len: usize,
    hdr_lines: u32,
    /// Body length: everything up to the newline before the boundary that
    /// ends the part (or up to the end of the message).
    body_len: usize,
    body_lines: u32,
    flags: u8,
    depth: usize,
    parent: Option<usize>,
    children: Vec<usize>,
    data: PartData,
    /// For the message itself and for the message inside a message/rfc822
    /// part: its envelope.
    envelope: Option<Envelope>,
}

impl Part {
    fn new(pos: usize, parent: Option<usize>, depth: usize) -> Part {
        Part {
            pos,
            hdr_len: 0,
            hdr_lines: 0,
            body_len: 0,
            body_lines: 0,
            flags: 0,
            depth,
            parent,
            children: Vec::new(),
            data: PartData::default(),
            envelope: None,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A message, parsed once, ready to answer FETCH items. Borrows the
/// message bytes, which should have CRLF line endings; other line endings
/// are first converted as Dovecot would store them (see
/// [`MessageView::bytes`]), in which case the view owns a converted copy.
#[derive(Debug, Clone)]
pub struct MessageView<'a> {
    bytes: Cow<'a, [u8]>,
    parts: Vec<Part>,
}

impl<'a> MessageView<'a> {
    /// Parses `message` (never fails: any bytes make some message).
    pub fn parse(message: &'a [u8]) -> MessageView<'a> {
        let bytes = stored_form(message);
        let parts = Parser::run(&bytes);
        MessageView { bytes, parts }
    }

    /// The message as Dovecot would serve it had it stored these bytes,
    /// which is what every answer of the view is computed from, and what
    /// `RFC822` and `BODY[]` return: CRLF line endings, where a bare LF
    /// gains a CR, a run of CRs before an LF loses one, and a CR at the very
    /// end is dropped (Dovecot stores LF line endings and adds the CRs back
    /// when reading). For CRLF text without stray CRs these are the bytes
    /// given to [`MessageView::parse`], borrowed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `RFC822.SIZE`: the size of the message in octets.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Appends the value of `BODYSTRUCTURE` (with extension data), including
    /// its outer parentheses.
    pub fn bodystructure(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        self.write_structure(out, 0, true);
        out.push(b')');
    }

    /// Appends the value of `BODY` (the body structure without extension
    /// data), including its outer parentheses.
    pub fn body(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        self.write_structure(out, 0, false);
        out.push(b')');
    }

    /// Appends the value of `ENVELOPE`, including its outer parentheses.
    pub fn envelope(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        write_envelope(out, self.parts[0].envelope.as_ref());
        out.push(b')');
    }

    /// True if the section names a part that exists (and, for `HEADER`,
    /// `HEADER.FIELDS` and `TEXT` with a part number, a message/rfc822
    /// part). Dovecot answers a missing part with an empty literal, which
    /// is what [`MessageView::section`] returns for it; this tells the two
    /// empty cases apart.
    pub fn has_section(&self, section: &Section) -> bool {
        self.section_target(section).is_some()
    }

    /// The bytes of `BODY[section]`, before any partial: the contents of
    /// the literal Dovecot would send. A part that does not exist gives no
    /// bytes, because Dovecot answers it with an empty literal (`{0}`),
    /// never with NIL; [`MessageView::has_section`] tells the two empty
    /// cases apart. Dovecot always sends section data as a literal, even
    /// when it is short ([`emit::literal`]), and sends NULs as 0x80; so
    /// does this.
    pub fn section(&self, section: &Section) -> Cow<'_, [u8]> {
        let out: Cow<'_, [u8]> = match self.section_target(section) {
            None => Cow::Borrowed(&[]),
            Some(Target::Range(start, end)) => {
                // The parser accounts every byte exactly once, so ranges
                // are always inside the message; clamp anyway rather than
                // panic on a bug.
                let end = end.min(self.bytes.len());
                Cow::Borrowed(&self.bytes[start.min(end)..end])
            }
            Some(Target::Fields {
                start,
                fields,
                not,
                add_missing_eoh,
            }) => Cow::Owned(self.header_filter(start, fields, not, add_missing_eoh)),
        };
        if out.contains(&0) {
            Cow::Owned(out.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect())
        } else {
            out
        }
    }

    /// Where the bytes of a section come from (`None`: nowhere, an empty
    /// literal), following Dovecot's `imap-msgpart.c`.
    fn section_target<'s>(&self, section: &'s Section) -> Option<Target<'s>> {
        let header = |p: &Part| Target::Range(p.pos, p.pos + p.hdr_len);
        let body = |p: &Part| {
            let start = p.pos + p.hdr_len;
            Target::Range(start, start + p.body_len)
        };
        let nested = !section.part.is_empty();
        let part = if nested {
            &self.parts[self.find_part(&section.part)?]
        } else {
            &self.parts[0]
        };
        // HEADER and TEXT are those of the message itself, or of the
        // message inside a message/rfc822 part.
        let message = || {
            if !nested {
                Some(part)
            } else if part.has(FLAG_RFC822) {
                part.children.first().map(|&c| &self.parts[c])
            } else {
                None
            }
        };
        match &section.text {
            SectionText::All if nested => Some(body(part)),
            SectionText::All => Some(Target::Range(0, self.bytes.len())),
            SectionText::Mime if nested => Some(header(part)),
            SectionText::Mime => None,
            SectionText::Header => Some(header(message()?)),
            SectionText::Text => Some(body(message()?)),
            SectionText::HeaderFields { not, fields } => Some(Target::Fields {
                start: message()?.pos,
                fields,
                not: *not,
                // Dovecot answers HEADER.FIELDS of the message itself from
                // its header cache code, which adds a missing blank line;
                // .NOT and nested messages go through a plain filter.
                add_missing_eoh: !nested && !*not,
            }),
        }
    }

    /// Dovecot's `imap_msgpart_find`.
    fn find_part(&self, numbers: &[u32]) -> Option<usize> {
        let mut part = 0usize;
        let mut i = 0;
        while i < numbers.len() {
            let num = numbers[i];
            i += 1;
            let more = i < numbers.len();
            let p = &self.parts[part];
            if p.has(FLAG_MULTIPART) {
                let index = num.max(1) as usize - 1;
                part = *p.children.get(index)?;
            } else if num != 1 || (more && !p.has(FLAG_RFC822)) {
                return None;
            }
            let p = &self.parts[part];
            if more && p.has(FLAG_RFC822) {
                part = *p.children.first()?;
            }
        }
        Some(part)
    }

    /// Dovecot's header filter stream (`istream-header-filter.c`) over the
    /// header starting at `start`: the lines of the matching fields (or,
    /// with `exclude`, of all others), then the blank line if there was
    /// one, or, with `add_missing_eoh`, a blank line anyway.
    fn header_filter(&self, start: usize, fields: &[String], exclude: bool, add_missing_eoh: bool) -> Vec<u8> {
        let buf: &[u8] = &self.bytes;
        let mut out = Vec::new();
        let mut pos = start;
        let mut continued = false;
        let mut prev_matched = false;
        let mut seen_eoh = false;
        while let Some(line) = read_line(buf, pos, continued, false) {
            pos = line.end;
            if line.eoh {
                seen_eoh = true;
                out.extend_from_slice(b"\r\n");
                break;
            }
            let matched = if continued {
                prev_matched
            } else {
                let name = &buf[line.name.0..line.name.1];
                fields.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(name))
            };
            prev_matched = matched;
            if matched != exclude {
                out.extend_from_slice(&buf[line.start..line.content_end]);
                if !line.no_newline {
                    out.extend_from_slice(b"\r\n");
                }
            }
            continued = line.continues;
        }
        if !seen_eoh && add_missing_eoh {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Dovecot's `part_is_truncated`: a part whose Content-Type says
    /// multipart or message/rfc822 (or that defaults to message/rfc822 in
    /// a digest) but that was not parsed as one.
    fn is_truncated(&self, idx: usize) -> bool {
        let part = &self.parts[idx];
        match &part.data.content_type {
            Some(ct) => {
                let sub = part.data.content_subtype.as_deref().unwrap_or(b"");
                (ct.eq_ignore_ascii_case(b"message") && sub.eq_ignore_ascii_case(b"rfc822")) || ct.eq_ignore_ascii_case(b"multipart")
            }
            None => part.parent.is_some_and(|p| self.parts[p].has(FLAG_DIGEST)),
        }
    }

    fn write_structure(&self, out: &mut Vec<u8>, idx: usize, extended: bool) {
        let part = &self.parts[idx];
        let data = &part.data;
        if part.has(FLAG_MULTIPART) {
            if part.children.is_empty() {
                // Dovecot's stand-in for a multipart without parts.
                out.extend_from_slice(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
                if extended {
                    out.extend_from_slice(b" NIL NIL NIL NIL");
                }
                out.push(b')');
            }
            for &child in &part.children {
                out.push(b'(');
                self.write_structure(out, child, extended);
                out.push(b')');
            }
            out.push(b' ');
            emit::string(out, data.content_subtype.as_deref().unwrap_or(b""));
            if extended {
                out.push(b' ');
                write_params(out, &data.type_params, false);
                write_extension_common(out, data);
            }
            return;
        }
        let text;
        if part.has(FLAG_RFC822) {
            out.extend_from_slice(b"\"message\" \"rfc822\"");
            text = false;
        } else if self.is_truncated(idx) {
            // A container Dovecot did not descend into (too deep, too
            // many parts): it calls it application/octet-stream.
            out.extend_from_slice(b"\"application\" \"octet-stream\"");
            text = false;
        } else if let Some(ct) = &data.content_type {
            text = ct.eq_ignore_ascii_case(b"text");
            emit::string(out, ct);
            out.push(b' ');
            emit::string(out, data.content_subtype.as_deref().unwrap_or(b""));
        } else {
            out.extend_from_slice(b"\"text\" \"plain\"");
            text = true;
        }
        out.push(b' ');
        write_params(out, &data.type_params, text);
        out.push(b' ');
        emit::nstring_unfolded(out, data.id.as_deref());
        out.push(b' ');
        emit::nstring_unfolded(out, data.description.as_deref());
        out.push(b' ');
        match &data.transfer_encoding {
            Some(te) => emit::string(out, te),
            None => out.extend_from_slice(b"\"7bit\""),
        }
        out.push(b' ');
        emit::number(out, part.body_len as u64);
        if text {
            out.push(b' ');
            emit::number(out, u64::from(part.body_lines));
        } else if part.has(FLAG_RFC822) {
            if let Some(&child) = part.children.first() {
                out.extend_from_slice(b" (");
                write_envelope(out, self.parts[child].envelope.as_ref());
                out.extend_from_slice(b") (");
                self.write_structure(out, child, extended);
                out.push(b')');
            }
            out.push(b' ');
            emit::number(out, u64::from(part.body_lines));
        }
        if extended {
            out.push(b' ');
            emit::nstring_unfolded(out, data.md5.as_deref());
            write_extension_common(out, data);
        }
    }
}

/// What Dovecot makes of a message it stores and then reads back: CRLF
/// becomes LF on the way in (a CR at the very end, waiting for an LF that
/// never comes, is lost), and every LF not already preceded by a CR gets
/// one on the way out.
fn stored_form(message: &[u8]) -> Cow<'_, [u8]> {
    let unchanged = message.last() != Some(&b'\r')
        && message
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && message[i - 1] == b'\r' && (i < 2 || message[i - 2] != b'\r')));
    if unchanged {
        return Cow::Borrowed(message);
    }
    let mut lf = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            lf.push(b'\n');
            i += 2;
        } else {
            lf.push(message[i]);
            i += 1;
        }
    }
    if lf.last() == Some(&b'\r') {
        lf.pop();
    }
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 16);
    for (j, &b) in lf.iter().enumerate() {
        if b == b'\n' && (j == 0 || lf[j - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Cow::Owned(out)
}

/// Where a section's bytes come from.
enum Target<'s> {
    Range(usize, usize),
    Fields {
        start: usize,
        fields: &'s [String],
        not: bool,
        add_missing_eoh: bool,
    },
}

/// Parameters as `("name" "value" ...)`, `NIL` when there are none; text
/// parts get Dovecot's default `"charset" "us-ascii"` when they have no
/// charset parameter.
fn write_params(out: &mut Vec<u8>, params: &[Param], default_charset: bool) {
    if !default_charset && params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if default_charset && name.eq_ignore_ascii_case(b"charset") {
            seen_charset = true;
        }
        emit::string(out, name);
        out.push(b' ');
        emit::string(out, value);
    }
    if default_charset && !seen_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

/// Disposition, language and location, each preceded by a space.
fn write_extension_common(out: &mut Vec<u8>, data: &PartData) {
    out.push(b' ');
    match &data.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            emit::string(out, d);
            out.push(b' ');
            write_params(out, &data.disposition_params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &data.language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => emit::list(out, langs, |o, l| emit::string(o, l)),
    }
    out.push(b' ');
    emit::nstring_unfolded(out, data.location.as_deref());
}

/// The ten envelope fields, without the outer parentheses.
fn write_envelope(out: &mut Vec<u8>, env: Option<&Envelope>) {
    let Some(env) = env else {
        out.extend_from_slice(b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL");
        return;
    };
    emit::nstring_unfolded(out, env.date.as_deref());
    out.push(b' ');
    match &env.subject {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => emit::string_for_humans(out, s),
    }
    let from = env.from.as_deref();
    for list in [
        from,
        env.sender.as_deref().or(from),
        env.reply_to.as_deref().or(from),
        env.to.as_deref(),
        env.cc.as_deref(),
        env.bcc.as_deref(),
    ] {
        out.push(b' ');
        write_addresses(out, list);
    }
    out.push(b' ');
    emit::nstring_unfolded(out, env.in_reply_to.as_deref());
    out.push(b' ');
    emit::nstring_unfolded(out, env.message_id.as_deref());
}

fn write_addresses(out: &mut Vec<u8>, list: Option<&[Address]>) {
    let Some(list) = list else {
        out.extend_from_slice(b"NIL");
        return;
    };
    out.push(b'(');
    for a in list {
        out.push(b'(');
        match &a.name {
            None => out.extend_from_slice(b"NIL"),
            Some(n) => emit::string_for_humans(out, n),
        }
        out.push(b' ');
        emit::nstring(out, a.route.as_deref());
        out.push(b' ');
        emit::nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        emit::nstring(out, a.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

// ---------------------------------------------------------------------------
// Header lines (Dovecot's message-header-parser.c)
// ---------------------------------------------------------------------------

/// One physical header line.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// End of the line's text: before the newline (and before a CR that
    /// directly precedes the LF).
    content_end: usize,
    /// After the newline.
    end: usize,
    /// The field name (empty for a continuation line or a line without
    /// a colon).
    name: (usize, usize),
    /// Start of this line's share of the value (up to `content_end`).
    value_start: usize,
    eoh: bool,
    no_newline: bool,
    has_lf: bool,
    /// The next line starts with white space and continues this field.
    continues: bool,
}

fn is_lwsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Reads the header line at `pos` (`None` at the end of the input).
/// `continued` says the previous line announced a continuation.
fn read_line(buf: &[u8], pos: usize, continued: bool, skip_initial_lwsp: bool) -> Option<Line> {
    if pos >= buf.len() {
        return None;
    }
    let (content_end, end, no_newline, has_lf, continues) = match buf[pos..].iter().position(|&b| b == b'\n') {
        Some(off) => {
            let lf = pos + off;
            let content_end = if lf > pos && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            let continues = buf.get(lf + 1).is_some_and(|&b| is_lwsp(b));
            (content_end, lf + 1, false, true, continues)
        }
        None => (buf.len(), buf.len(), true, false, false),
    };
    let mut line = Line {
        start: pos,
        content_end,
        end,
        name: (pos, pos),
        value_start: pos,
        eoh: false,
        no_newline,
        has_lf,
        continues,
    };
    if continued {
        return Some(line);
    }
    if content_end == pos {
        line.eoh = true;
        line.continues = false;
        return Some(line);
    }
    let text = &buf[pos..content_end];
    match text.iter().position(|&b| b == b':') {
        None => {
            // Without a colon the whole line is value: the field has an
            // empty name, which nothing matches.
            line.name = (pos, pos);
            line.value_start = pos;
        }
        Some(colon) => {
            let mut name_end = colon;
            while name_end > 0 && is_lwsp(text[name_end - 1]) {
                name_end -= 1;
            }
            line.name = (pos, pos + name_end);
            let value = &text[colon + 1..];
            let mut skip = if skip_initial_lwsp {
                value.iter().take_while(|&&b| is_lwsp(b)).count()
            } else {
                usize::from(value.first().is_some_and(|&b| is_lwsp(b)))
            };
            if skip == value.len() && skip > 0 {
                skip = 1;
            }
            line.value_start = pos + colon + 1 + skip;
        }
    }
    Some(line)
}

// ---------------------------------------------------------------------------
// The MIME parser (Dovecot's message-parser.c, with the whole message in
// memory)
// ---------------------------------------------------------------------------

struct Boundary {
    part: usize,
    text: Vec<u8>,
}

enum State {
    Header,
    BodyToBoundary,
    BodyToEof,
    SkipBoundaryLine,
    MimeHeaderInit,
    Rfc822Init,
    Done,
}

struct Parser<'b> {
    buf: &'b [u8],
    pos: usize,
    parts: Vec<Part>,
    cur: usize,
    boundaries: Vec<Boundary>,
    last_boundary: Option<Vec<u8>>,
    multipart: bool,
    last_chr: u8,
}

impl<'b> Parser<'b> {
    fn run(buf: &'b [u8]) -> Vec<Part> {
        let mut p = Parser {
            buf,
            pos: 0,
            parts: vec![Part::new(0, None, 0)],
            cur: 0,
            boundaries: Vec::new(),
            last_boundary: None,
            multipart: false,
            last_chr: b'\n',
        };
        let mut state = State::Header;
        loop {
            state = match state {
                State::Header => p.parse_header(),
                State::BodyToBoundary => p.body_to_boundary(),
                State::BodyToEof => {
                    p.add_block(p.pos, p.buf.len());
                    p.pos = p.buf.len();
                    State::Done
                }
                State::SkipBoundaryLine => p.skip_boundary_line(),
                State::MimeHeaderInit => {
                    p.append_part(true);
                    State::Header
                }
                State::Rfc822Init => {
                    p.append_part(false);
                    State::Header
                }
                State::Done => break,
            };
        }
        while p.parts[p.cur].parent.is_some() {
            p.finish_part();
        }
        p.parts
    }

    fn append_part(&mut self, is_mime: bool) {
        let parent = &self.parts[self.cur];
        let pos = parent.pos + parent.hdr_len + parent.body_len;
        let mut part = Part::new(pos, Some(self.cur), parent.depth + 1);
        if is_mime {
            part.flags |= FLAG_IS_MIME;
        }
        let idx = self.parts.len();
        self.parts.push(part);
        self.parts[self.cur].children.push(idx);
        self.cur = idx;
    }

    /// Ends the current part: its header and body become part of its
    /// parent's body.
    fn finish_part(&mut self) {
        let part = &self.parts[self.cur];
        let (len, lines) = (part.hdr_len + part.body_len, part.hdr_lines + part.body_lines);
        let Some(parent) = part.parent else { return };
        let p = &mut self.parts[parent];
        p.body_len += len;
        p.body_lines = p.body_lines.wrapping_add(lines);
        self.cur = parent;
    }

    fn add_block(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let block = &self.buf[start..end];
        let lines = block.iter().filter(|&&b| b == b'\n').count() as u32;
        let part = &mut self.parts[self.cur];
        part.body_len += block.len();
        part.body_lines = part.body_lines.wrapping_add(lines);
        self.last_chr = block[block.len() - 1];
    }

    fn too_many_nested(&self) -> bool {
        self.parts[self.cur].depth + 1 >= MAX_NESTED_PARTS || self.parts.len() >= MAX_TOTAL_PARTS
    }

    /// The boundary a line starting at `at` begins with, and whether it is
    /// the closing one (`--boundary--`).
    fn boundary_at(&self, at: usize) -> Option<(usize, bool)> {
        if self.boundaries.is_empty() {
            return None;
        }
        let rest = self.buf.get(at..)?;
        if rest.len() < 2 || rest[0] != b'-' || rest[1] != b'-' {
            return None;
        }
        let data = &rest[2..];
        let find_len = match data.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let mut n = lf;
                if n > 0 && data[n - 1] == b'\r' {
                    n -= 1;
                }
                if n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-' {
                    n -= 2;
                }
                n
            }
            None => data.len().min(BOUNDARY_MAX_LEN + 4),
        };
        let line = &data[..find_len];
        let mut best: Option<usize> = None;
        for (i, b) in self.boundaries.iter().enumerate().rev() {
            if b.text.len() <= line.len() && line.starts_with(&b.text) && best.is_none_or(|j| self.boundaries[j].text.len() < b.text.len())
            {
                best = Some(i);
                if b.text.len() == line.len() {
                    break;
                }
            }
        }
        let i = best?;
        let len = self.boundaries[i].text.len();
        let closing = data.len() >= len + 2 && &data[len..len + 2] == b"--";
        Some((i, closing))
    }

    fn parse_header(&mut self) -> State {
        let part_idx = self.cur;
        let mut prev_newline = 0usize;
        let mut continued = false;
        let mut seen_eoh = false;
        let mut seen_content_type = false;
        let mut name = (0usize, 0usize);
        let mut full_value: Vec<u8> = Vec::new();
        loop {
            let at_eoh = self.buf.get(self.pos) == Some(&b'\n')
                || (self.buf.get(self.pos) == Some(&b'\r') && self.buf.get(self.pos + 1) == Some(&b'\n'));
            if at_eoh && self.last_boundary.is_some() && self.parts[part_idx].has(FLAG_IS_MIME) {
                if self.too_many_nested() {
                    self.parts[part_idx].flags &= !FLAG_MULTIPART;
                } else if let Some(text) = self.last_boundary.take() {
                    self.boundaries.push(Boundary { part: part_idx, text });
                    self.multipart = true;
                }
            }
            if let Some((b, _)) = self.boundary_at(self.pos) {
                if self.boundaries[b].part != part_idx {
                    // A boundary cuts the header short; the newline before
                    // it belongs to the boundary, i.e. to the parent's body.
                    if prev_newline > 0 {
                        let part = &mut self.parts[part_idx];
                        part.hdr_len -= prev_newline;
                        part.hdr_lines = part.hdr_lines.saturating_sub(1);
                        if let Some(parent) = part.parent {
                            let parent = &mut self.parts[parent];
                            parent.body_len += prev_newline;
                            parent.body_lines = parent.body_lines.wrapping_add(1);
                        }
                    }
                    break;
                }
            }
            if seen_eoh {
                break;
            }
            let Some(line) = read_line(self.buf, self.pos, continued, true) else {
                break;
            };
            {
                let part = &mut self.parts[part_idx];
                part.hdr_len += line.end - line.start;
                if line.has_lf {
                    part.hdr_lines = part.hdr_lines.wrapping_add(1);
                }
            }
            self.pos = line.end;
            prev_newline = if line.no_newline { 0 } else { line.end - line.content_end };
            if line.eoh {
                seen_eoh = true;
                continue;
            }
            let value = &self.buf[line.value_start.min(line.content_end)..line.content_end];
            if continued {
                full_value.push(b'\n');
                full_value.extend_from_slice(value);
            } else {
                name = line.name;
                full_value.clear();
                full_value.extend_from_slice(value);
            }
            continued = line.continues;
            if !line.continues {
                let field = &self.buf[name.0..name.1];
                self.header_field(part_idx, field, &full_value, &mut seen_content_type);
            }
        }
        self.end_of_header(part_idx, seen_content_type)
    }

    /// One complete (unfolded) header field of the part being parsed.
    fn header_field(&mut self, idx: usize, name: &[u8], value: &[u8], seen_content_type: &mut bool) {
        if name.eq_ignore_ascii_case(b"Mime-Version") {
            self.parts[idx].flags |= FLAG_IS_MIME;
        } else if name.eq_ignore_ascii_case(b"Content-Type") {
            self.parts[idx].flags |= FLAG_IS_MIME;
            if !*seen_content_type {
                *seen_content_type = true;
                self.content_type_flags(idx, value);
            }
        }
        let parent_rfc822 = self.parts[idx].parent.is_some_and(|p| self.parts[p].has(FLAG_RFC822));
        let part = &mut self.parts[idx];
        if name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"Content-") {
            parse_content_field(&mut part.data, &name[8..], value);
        }
        if parent_rfc822 || idx == 0 {
            parse_envelope_field(part.envelope.get_or_insert_with(Envelope::default), name, value);
        }
    }

    /// The message parser's own reading of Content-Type: the part's kind
    /// and, for a multipart, its boundary.
    fn content_type_flags(&mut self, idx: usize, value: &[u8]) {
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut ct = Vec::new();
        let ret = p.parse_content_type(&mut ct);
        let part = &mut self.parts[idx];
        if ct.eq_ignore_ascii_case(b"message/rfc822") {
            part.flags |= FLAG_RFC822;
        } else if ct.len() >= 4 && ct[..4].eq_ignore_ascii_case(b"text") && (ct.len() == 4 || ct[4] == b'/') {
            part.flags |= FLAG_TEXT;
        } else if ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/") {
            part.flags |= FLAG_MULTIPART;
            if ct[10..].eq_ignore_ascii_case(b"digest") {
                part.flags |= FLAG_DIGEST;
            }
        }
        if ret < 0 || !part.has(FLAG_MULTIPART) || self.last_boundary.is_some() {
            return;
        }
        for (name, value) in rfc2231_parse(&mut p) {
            if name.eq_ignore_ascii_case(b"boundary") {
                let mut b = value;
                b.truncate(BOUNDARY_MAX_LEN);
                self.last_boundary = Some(b);
                break;
            }
        }
    }

    fn end_of_header(&mut self, idx: usize, seen_content_type: bool) -> State {
        let parent_digest = self.parts[idx].parent.is_some_and(|p| self.parts[p].has(FLAG_DIGEST));
        {
            let part = &mut self.parts[idx];
            if !part.has(FLAG_IS_MIME) {
                // Not MIME: Content-* fields mean nothing.
                part.flags = 0;
                part.data = PartData::default();
            }
            if !seen_content_type || !part.has(FLAG_IS_MIME) {
                part.flags |= if parent_digest { FLAG_RFC822 } else { FLAG_TEXT };
            }
        }
        self.last_boundary = None;
        self.last_chr = b'\n';
        if self.parts.len() >= MAX_TOTAL_PARTS {
            // The last part Dovecot makes: it takes the rest of the message.
            self.parts[idx].flags &= !(FLAG_RFC822 | FLAG_MULTIPART);
            self.boundaries.clear();
            self.multipart = false;
            return State::BodyToEof;
        }
        if self.multipart {
            self.multipart = false;
            return State::BodyToBoundary;
        }
        if self.parts[idx].has(FLAG_RFC822) && !self.too_many_nested() {
            return State::Rfc822Init;
        }
        self.parts[idx].flags &= !FLAG_RFC822;
        if self.boundaries.is_empty() {
            State::BodyToEof
        } else {
            State::BodyToBoundary
        }
    }

    fn body_to_boundary(&mut self) -> State {
        if self.pos >= self.buf.len() {
            return State::Done;
        }
        if self.last_chr == b'\n' {
            if let Some(found) = self.boundary_at(self.pos) {
                return self.part_finish(found, true);
            }
        }
        let start = self.pos;
        let mut cur = start;
        while let Some(off) = self.buf[cur..].iter().position(|&b| b == b'\n') {
            let lf = cur + off;
            let boundary_start = if lf > start && self.buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            cur = lf + 1;
            if let Some(found) = self.boundary_at(cur) {
                self.add_block(start, boundary_start);
                self.pos = boundary_start;
                return self.part_finish(found, false);
            }
        }
        self.add_block(start, self.buf.len());
        self.pos = self.buf.len();
        State::Done
    }

    /// A boundary line was found at `self.pos` (after the newline that
    /// precedes it unless `first_line`): close the parts inside the
    /// boundary's multipart and account the boundary to it.
    fn part_finish(&mut self, (b, closing): (usize, bool), first_line: bool) -> State {
        let owner = self.boundaries[b].part;
        while self.cur != owner && self.parts[self.cur].parent.is_some() {
            self.finish_part();
        }
        let len = self.boundaries[b].text.len();
        if closing {
            self.boundaries.truncate(b);
        } else {
            self.boundaries.truncate(b + 1);
        }
        let mut line = 2 + len + if closing { 2 } else { 0 };
        if !first_line {
            line += if self.buf.get(self.pos) == Some(&b'\r') { 2 } else { 1 };
        }
        let end = (self.pos + line).min(self.buf.len());
        self.add_block(self.pos, end);
        self.pos = end;
        State::SkipBoundaryLine
    }

    fn skip_boundary_line(&mut self) -> State {
        match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            None => {
                self.add_block(self.pos, self.buf.len());
                self.pos = self.buf.len();
                State::Done
            }
            Some(off) => {
                let end = self.pos + off + 1;
                self.add_block(self.pos, end);
                self.pos = end;
                match self.boundaries.last() {
                    Some(top) if top.part == self.cur => State::MimeHeaderInit,
                    Some(_) => State::BodyToBoundary,
                    None => State::BodyToEof,
                }
            }
        }
    }
}

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
fn parse_content_field(data: &mut PartData, name: &[u8], value: &[u8]) {
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

fn parse_envelope_field(env: &mut Envelope, name: &[u8], value: &[u8]) {
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

// ---------------------------------------------------------------------------
// RFC 822 tokens (Dovecot's rfc822-parser.c)
// ---------------------------------------------------------------------------

/// Dovecot's `rfc822_atext_chars`: 1 = atext, 2 = atext (alphanumeric and
/// 8-bit), 4 = atext but a MIME tspecial (`/`, `=`, `?`).
const ATEXT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphanumeric() || b >= 0x80 {
            2
        } else if matches!(b, b'/' | b'=' | b'?') {
            4
        } else if matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'^' | b'_' | b'`' | b'{' | b'|' | b'}' | b'~'
        ) {
            1
        } else {
            0
        };
        c += 1;
    }
    t
};

fn is_atext(b: u8) -> bool {
    ATEXT[b as usize] != 0
}

fn is_token_char(b: u8) -> bool {
    ATEXT[b as usize] & 3 != 0 || b == b'.'
}

/// A cursor over a header value, returning Dovecot's conventions: `-1`
/// for a syntax error, `0` for the end of the input, `1` for more input.
/// NULs in quoted strings, comments and domain literals become U+FFFD,
/// as in Dovecot.
struct Rfc822<'v> {
    data: &'v [u8],
    pos: usize,
    /// The text of the last comment skipped, when wanted.
    last_comment: Option<Vec<u8>>,
}

impl<'v> Rfc822<'v> {
    fn new(data: &'v [u8]) -> Rfc822<'v> {
        Rfc822 {
            data,
            pos: 0,
            last_comment: None,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The byte at the cursor (0 past the end, like C's terminating NUL).
    fn peek(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    fn more(&self) -> i32 {
        i32::from(!self.at_end())
    }

    fn skip_comment(&mut self) -> i32 {
        if let Some(c) = &mut self.last_comment {
            c.clear();
        }
        self.pos += 1;
        let mut start = self.pos;
        let mut level = 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    if let Some(c) = &mut self.last_comment {
                        c.extend_from_slice(&self.data[start..self.pos]);
                        c.extend_from_slice(NUL_REPLACEMENT);
                        start = self.pos + 1;
                    }
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if let Some(c) = &mut self.last_comment {
                            c.extend_from_slice(&self.data[start..self.pos]);
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\n' => {
                    if let Some(c) = &mut self.last_comment {
                        let mut end = self.pos;
                        if end > start && self.data[end - 1] == b'\r' {
                            end -= 1;
                        }
                        c.extend_from_slice(&self.data[start..end]);
                        start = self.pos + 1;
                    }
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        if let Some(c) = &mut self.last_comment {
                            c.extend_from_slice(&self.data[start..self.pos - 1]);
                        }
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn skip_lwsp(&mut self) -> i32 {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    fn parse_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.peek()) {
            return -1;
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if !is_atext(self.data[self.pos]) {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..]);
        0
    }

    fn parse_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.peek()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            if start == self.pos {
                return -1;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.data[self.pos] != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            if self.skip_lwsp() <= 0 {
                return -1;
            }
            start = self.pos;
        }
        out.extend_from_slice(&self.data[start..]);
        0
    }

    /// A local part that may start or end with dots or have several in a
    /// row (not RFC 5322, but common in Japan; Dovecot accepts it).
    fn parse_nonstrict_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        let mut ret = -1;
        loop {
            while self.peek() == b'.' && !self.at_end() {
                out.push(b'.');
                self.pos += 1;
                if self.at_end() {
                    // @domain is missing, but the local part is fine
                    return 0;
                }
                ret = 1;
            }
            if self.peek() == b'@' {
                break;
            }
            ret = self.parse_atom(out);
            if !(ret > 0 && self.peek() == b'.') {
                break;
            }
        }
        ret
    }

    fn parse_mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            if !is_token_char(self.data[self.pos]) {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start.min(self.data.len())..]);
        0
    }

    fn parse_quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(&self.data[start..self.pos - 1]);
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn parse_atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            if !is_atext(b) && b != b'.' {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start.min(self.data.len())..]);
        0
    }

    fn parse_phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.peek() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.peek() == b'"' {
                self.parse_quoted_string(out)
            } else {
                self.parse_atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let b = self.peek();
            if !is_atext(b) && b != b'"' && b != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    fn parse_domain_literal(&mut self, out: &mut Vec<u8>) -> i32 {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return -1,
                b']' => {
                    out.extend_from_slice(&self.data[start..=self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        out.extend_from_slice(&self.data[start..self.pos]);
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn parse_domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1; // '@'
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.peek() == b'[' {
            self.parse_domain_literal(out)
        } else {
            self.parse_dot_atom(out)
        }
    }

    fn parse_content_type(&mut self, out: &mut Vec<u8>) -> i32 {
        let start_len = out.len();
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(out) <= 0 || out.len() == start_len {
            return -1;
        }
        if self.peek() != b'/' {
            out.truncate(start_len);
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            out.truncate(start_len);
            return -1;
        }
        out.push(b'/');
        let sub_start = out.len();
        let ret = self.parse_mime_token(out);
        if ret < 0 || out.len() == sub_start || (!self.at_end() && self.peek() != b';') {
            out.truncate(start_len);
            return -1;
        }
        ret
    }

    /// One `; name=value` parameter: `0` at the end, `-1` when broken.
    fn parse_content_param(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> i32 {
        key.clear();
        value.clear();
        if self.at_end() {
            return 0;
        }
        if self.peek() != b';' {
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(key) <= 0 {
            return -1;
        }
        if self.peek() != b'=' {
            return -1;
        }
        self.pos += 1;
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // broken or no value
        } else if self.peek() == b'"' {
            ret = self.parse_quoted_string(value);
        } else if self.peek() == b'=' {
            // Broken input like name==?utf-8?b?...?= is taken as it is.
            while self.pos < self.data.len() && !matches!(self.data[self.pos], b';' | b' ' | b'\t' | b'\r' | b'\n') {
                value.push(self.data[self.pos]);
                self.pos += 1;
            }
        } else {
            ret = self.parse_mime_token(value);
        }
        if ret < 0 {
            -1
        } else {
            1
        }
    }
}

/// Dovecot's `rfc2231_parse`: the parameters after a MIME type, with
/// `name*0`, `name*1`... continuations merged (left encoded). Broken
/// parameters are skipped.
fn rfc2231_parse(p: &mut Rfc822<'_>) -> Vec<Param> {
    struct Cont {
        key: Vec<u8>,
        value: Vec<u8>,
        idx: u32,
        extended: bool,
    }
    let mut result: Vec<Param> = Vec::new();
    let mut conts: Vec<Cont> = Vec::new();
    // Dovecot does not reset the index between parameters: `name*=` keeps
    // the index of the previous continuation.
    let mut idx: u32 = 0;
    let mut key = Vec::new();
    let mut value = Vec::new();
    // Dovecot gives up after this many attempts, broken ones included.
    for _ in 0..MAX_PARAM_ATTEMPTS {
        let ret = p.parse_content_param(&mut key, &mut value);
        if ret == 0 {
            break;
        }
        if ret < 0 {
            if p.at_end() {
                break;
            }
            p.pos += 1;
            continue;
        }
        let key = key.clone();
        let value = value.clone();
        let mut plain = true;
        if let Some(star) = key.iter().position(|&b| b == b'*') {
            let mut q = star;
            if q + 1 < key.len() {
                q += 1;
                idx = 0;
                while q < key.len() && key[q].is_ascii_digit() {
                    idx = idx.wrapping_mul(10).wrapping_add(u32::from(key[q] - b'0'));
                    q += 1;
                }
            }
            let extended = key.get(q) == Some(&b'*');
            if extended {
                q += 1;
            }
            if q >= key.len() {
                conts.push(Cont {
                    key: key[..star].to_vec(),
                    value: value.clone(),
                    idx,
                    extended,
                });
                plain = false;
            }
        }
        if plain {
            result.push((key, value));
        }
    }
    if conts.is_empty() {
        return result;
    }
    conts.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < conts.len() {
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        let mut j = i;
        while j < conts.len() && conts[i].key.eq_ignore_ascii_case(&conts[j].key) {
            if conts[j].idx != next_idx {
                ok = false;
            }
            if conts[j].extended {
                have_extended = true;
            }
            next_idx = next_idx.wrapping_add(1);
            j += 1;
        }
        if !ok {
            for c in &conts[i..j] {
                let mut k = c.key.clone();
                k.push(b'*');
                k.extend_from_slice(c.idx.to_string().as_bytes());
                if c.extended {
                    k.push(b'*');
                }
                result.push((k, c.value.clone()));
            }
        } else {
            let mut v = Vec::new();
            if !conts[i].extended && have_extended {
                v.extend_from_slice(b"''");
            }
            for c in &conts[i..j] {
                if !c.extended && have_extended {
                    for &b in &c.value {
                        if b == b'%' {
                            v.extend_from_slice(b"%25");
                        } else {
                            v.push(b);
                        }
                    }
                } else {
                    v.extend_from_slice(&c.value);
                }
            }
            let mut k = conts[i].key.clone();
            if have_extended {
                k.push(b'*');
            }
            result.push((k, v));
        }
        i = j;
    }
    result
}

// ---------------------------------------------------------------------------
// Address lists (Dovecot's message-address.c, filling in missing parts)
// ---------------------------------------------------------------------------

/// Parses an address-list header value into ENVELOPE addresses; `None`
/// when there is nothing but white space and comments.
fn parse_addresses(value: &[u8]) -> Option<Vec<Address>> {
    let mut p = Rfc822::new(value);
    p.last_comment = Some(Vec::new());
    let mut ctx = AddressParser {
        p,
        list: Vec::new(),
        addr: Address::default(),
        s: Vec::new(),
    };
    if ctx.p.skip_lwsp() <= 0 {
        return None;
    }
    ctx.parse_address_list();
    if ctx.list.is_empty() {
        None
    } else {
        Some(ctx.list)
    }
}

struct AddressParser<'v> {
    p: Rfc822<'v>,
    list: Vec<Address>,
    addr: Address,
    s: Vec<u8>,
}

impl AddressParser<'_> {
    fn add_address(&mut self) {
        self.list.push(std::mem::take(&mut self.addr));
    }

    fn add_fixed_address(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
            self.addr.invalid = true;
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
            self.addr.invalid = true;
        }
        self.add_address();
    }

    fn parse_local_part(&mut self) -> i32 {
        self.s.clear();
        let ret = if self.p.peek() == b'"' {
            self.p.parse_quoted_string(&mut self.s)
        } else {
            self.p.parse_nonstrict_dot_atom(&mut self.s)
        };
        if ret < 0 {
            return -1;
        }
        self.addr.mailbox = Some(self.s.clone());
        ret
    }

    fn parse_domain(&mut self) -> i32 {
        self.s.clear();
        let ret = self.p.parse_domain(&mut self.s);
        if ret < 0 {
            return -1;
        }
        self.addr.domain = Some(self.s.clone());
        ret
    }

    fn parse_domain_list(&mut self) -> i32 {
        self.s.clear();
        loop {
            if self.p.at_end() {
                return 0;
            }
            if self.p.peek() != b'@' {
                break;
            }
            if !self.s.is_empty() {
                self.s.push(b',');
            }
            self.s.push(b'@');
            let ret = self.p.parse_domain(&mut self.s);
            if ret <= 0 {
                return ret;
            }
            while self.p.skip_lwsp() > 0 && self.p.peek() == b',' {
                self.p.pos += 1;
            }
        }
        self.addr.route = Some(self.s.clone());
        1
    }

    fn parse_angle_addr(&mut self) -> i32 {
        self.p.pos += 1; // '<'
        if self.p.skip_lwsp() <= 0 {
            return -1;
        }
        if self.p.peek() == b'@' {
            if self.parse_domain_list() > 0 && self.p.peek() == b':' {
                self.p.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.p.at_end() {
                    return -1;
                }
            }
            if self.p.skip_lwsp() <= 0 {
                return -1;
            }
        }
        if self.p.peek() != b'>' {
            if self.parse_local_part() <= 0 {
                return -1;
            }
            if self.p.peek() == b'@' && self.parse_domain() <= 0 {
                return -1;
            }
        }
        if self.p.peek() != b'>' || self.p.at_end() {
            return -1;
        }
        self.p.pos += 1;
        self.p.skip_lwsp()
    }

    fn parse_name_addr(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.peek() != b'<' {
            return -1;
        }
        self.addr.name = if self.s.is_empty() { None } else { Some(self.s.clone()) };
        if self.parse_angle_addr() < 0 {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.addr.invalid = true;
        }
        self.p.more()
    }

    fn parse_addr_spec(&mut self) -> i32 {
        if let Some(c) = &mut self.p.last_comment {
            c.clear();
        }
        let quoted_string = self.p.peek() == b'"';
        let mut ret = self.parse_local_part();
        if ret <= 0 {
            self.addr.invalid = true;
        }
        let mut ret2 = -2;
        if ret != 0 && !self.p.at_end() && self.p.peek() == b'@' {
            ret2 = self.parse_domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        let comment = self.p.last_comment.clone().unwrap_or_default();
        if !comment.is_empty() {
            self.addr.name = Some(comment);
        } else if ret2 == -2 {
            // A lone word is a mailbox without a domain; anything after it
            // makes it a display name.
            self.s.push(b' ');
            let before = self.s.len();
            self.p.parse_phrase(&mut self.s);
            if self.s.len() != before {
                self.addr.mailbox = None;
                self.addr.name = Some(self.s.clone());
            } else if !quoted_string {
                self.addr.domain = Some(Vec::new());
            }
            self.addr.invalid = true;
            ret = -1;
        }
        ret
    }

    fn parse_mailbox(&mut self) -> i32 {
        let start = self.p.pos;
        let mut ret = self.parse_name_addr();
        if ret < 0 {
            self.p.pos = start;
            ret = self.parse_addr_spec();
            if self.addr.invalid && self.addr.name.is_none() && self.addr.mailbox.is_some() && self.addr.domain.is_none() {
                self.addr.name = self.addr.mailbox.take();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_fixed_address();
        ret
    }

    fn parse_group(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.peek() != b':' {
            return -1;
        }
        self.p.pos += 1;
        let mut ret = self.p.skip_lwsp();
        if ret <= 0 {
            self.addr.invalid = true;
        }
        self.addr.mailbox = Some(self.s.clone());
        self.add_address();
        if ret > 0 && self.p.peek() != b';' {
            loop {
                self.parse_mailbox();
                if self.p.at_end() || self.p.peek() != b',' {
                    break;
                }
                self.p.pos += 1;
                if self.p.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.p.at_end() || self.p.peek() != b';' {
                ret = -1;
            } else {
                self.p.pos += 1;
                ret = self.p.skip_lwsp();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_address();
        i32::from(ret != 0)
    }

    fn parse_address(&mut self) -> i32 {
        let start = self.p.pos;
        let ret = self.parse_group();
        if ret < 0 {
            self.p.pos = start;
            return self.parse_mailbox();
        }
        ret
    }

    fn parse_address_list(&mut self) {
        loop {
            if self.parse_address() == 0 {
                break;
            }
            if self.p.at_end() || self.p.peek() != b',' {
                break;
            }
            self.p.pos += 1;
            let ret = self.p.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    // ends with some garbage
                    self.add_fixed_address();
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn addresses(value: &str) -> String {
        render(|o| write_addresses(o, parse_addresses(value.as_bytes()).as_deref()))
    }

    fn sec(spec: &str) -> Option<Section> {
        Section::parse(spec.as_bytes())
    }

    #[test]
    fn section_parsing() {
        assert_eq!(
            sec(""),
            Some(Section {
                part: vec![],
                text: SectionText::All
            })
        );
        assert_eq!(
            sec("1.2"),
            Some(Section {
                part: vec![1, 2],
                text: SectionText::All
            })
        );
        assert_eq!(
            sec("1.mime"),
            Some(Section {
                part: vec![1],
                text: SectionText::Mime
            })
        );
        assert_eq!(
            sec("2.HEADER"),
            Some(Section {
                part: vec![2],
                text: SectionText::Header
            })
        );
        assert_eq!(
            sec("text"),
            Some(Section {
                part: vec![],
                text: SectionText::Text
            })
        );
        assert_eq!(
            sec("01"),
            Some(Section {
                part: vec![1],
                text: SectionText::All
            })
        );
        assert_eq!(
            sec("4294967297"),
            Some(Section {
                part: vec![1],
                text: SectionText::All
            }),
            "wraps like Dovecot"
        );
        assert_eq!(
            sec("HEADER.FIELDS (From \"To\" x-a)"),
            Some(Section {
                part: vec![],
                text: SectionText::HeaderFields {
                    not: false,
                    fields: vec!["From".into(), "To".into(), "x-a".into()]
                }
            })
        );
        assert_eq!(
            sec("3.header.fields.not (Subject)"),
            Some(Section {
                part: vec![3],
                text: SectionText::HeaderFields {
                    not: true,
                    fields: vec!["Subject".into()]
                }
            })
        );
        for bad in [
            "1.",
            ".1",
            "1..2",
            "1HEADER",
            "MIME",
            "HEADER ",
            "HEADER.FIELDS",
            "HEADER.FIELDS ()",
            "HEADER.FIELDS (a",
            "HEADER.FIELDS (a) x",
            "FOO",
            "1.2.FOO",
            "HEADER.FIELDS(a)",
        ] {
            assert_eq!(sec(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"0123456789", 5, Some(100)), b"56789");
        assert_eq!(partial(b"0123456789", 2, Some(3)), b"234");
        assert_eq!(partial(b"0123456789", 10, None), b"");
        assert_eq!(partial(b"0123456789", u64::MAX, Some(u64::MAX)), b"");
        assert_eq!(partial(b"0123456789", 0, None), b"0123456789");
    }

    #[test]
    fn address_lists() {
        assert_eq!(addresses("a@b.c"), r#"((NIL NIL "a" "b.c"))"#);
        assert_eq!(addresses("  "), "NIL");
        assert_eq!(
            addresses(r#""Joe \"Q\" Public" <joe@x.org>"#),
            "(({14}\r\nJoe \"Q\" Public NIL \"joe\" \"x.org\"))"
        );
        assert_eq!(
            addresses("group: a@b, \"c\" <c@d>;, empty:;"),
            r#"((NIL NIL "group" NIL)(NIL NIL "a" "b")("c" NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "empty" NIL)(NIL NIL NIL NIL))"#
        );
        assert_eq!(addresses("(comment) x@y (Name Here)"), r#"(("Name Here" NIL "x" "y"))"#);
        assert_eq!(addresses("<@r1,@r2:u@h>"), r#"((NIL "@r1,@r2" "u" "h"))"#);
        assert_eq!(addresses("bare"), r#"((NIL NIL "bare" "MISSING_DOMAIN"))"#);
        assert_eq!(addresses("=?utf-8?q?J=C3=B6?= <j@x>"), r#"(("=?utf-8?q?J=C3=B6?=" NIL "j" "x"))"#);
        assert_eq!(
            addresses("a@, @b, <>, \"\"@x"),
            r#"((NIL NIL "a" "MISSING_DOMAIN")(NIL NIL "MISSING_MAILBOX" "b")(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "" "x"))"#
        );
        assert_eq!(
            addresses("undisclosed-recipients:;"),
            r#"((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))"#
        );
    }

    #[test]
    fn rfc2231_continuations_keep_dovecots_quirks() {
        let mut p = Rfc822::new(b"; name*0=\"a\"; name*1=\"b\"; title*=us-ascii'en'x%20y; z*=\"q\"");
        let params = rfc2231_parse(&mut p);
        let text: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
            .collect();
        assert_eq!(text, ["name=ab", "title*1*=us-ascii'en'x%20y", "z*1*=q"]);
    }

    #[test]
    fn simple_message() {
        let v = MessageView::parse(b"Subject: hi\r\nFrom: a@b.c\r\n\r\nbody\r\n");
        assert_eq!(v.size(), 34);
        assert_eq!(
            render(|o| v.bodystructure(o)),
            r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)"#
        );
        assert_eq!(
            render(|o| v.body(o)),
            r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)"#
        );
        assert_eq!(
            render(|o| v.envelope(o)),
            r#"(NIL "hi" ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) NIL NIL NIL NIL NIL)"#
        );
        let s = |spec: &str| String::from_utf8_lossy(&v.section(&sec(spec).unwrap())).into_owned();
        assert_eq!(s("1.MIME"), "Subject: hi\r\nFrom: a@b.c\r\n\r\n");
        assert_eq!(s("1"), "body\r\n");
        assert_eq!(s("2"), "");
        assert_eq!(s("1.HEADER"), "");
        assert_eq!(s("HEADER.FIELDS (X-Nope)"), "\r\n");
        assert!(!v.has_section(&sec("2").unwrap()));
    }

    #[test]
    fn multipart_sections() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepi\r\n";
        let v = MessageView::parse(msg);
        let s = |spec: &str| String::from_utf8_lossy(&v.section(&sec(spec).unwrap())).into_owned();
        assert_eq!(s("1"), "one");
        assert_eq!(s("0"), "one");
        assert_eq!(s("2"), "two");
        assert_eq!(s("2.MIME"), "\r\n");
        assert_eq!(s("1.MIME"), "Content-Type: text/plain\r\n\r\n");
        assert_eq!(s("TEXT").len(), 67);
        assert_eq!(
            render(|o| v.bodystructure(o)),
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)"#
        );
    }

    #[test]
    fn line_endings_as_dovecot_stores_them() {
        assert!(matches!(stored_form(b"a\r\nb\rc\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*stored_form(b"a\nb"), b"a\r\nb");
        assert_eq!(&*stored_form(b"x\r\r\ny\r\r\r\nz\r"), b"x\r\ny\r\r\nz");
        assert_eq!(&*stored_form(b"\n\r"), b"\r\n");
        let v = MessageView::parse(b"Subject: x\r\r\n\r\nbody\r");
        assert_eq!(v.size(), 18);
        assert_eq!(v.bytes(), b"Subject: x\r\n\r\nbody");
    }

    #[test]
    fn header_fields_without_blank_line() {
        let v = MessageView::parse(b"X: y\r\nSubject: z");
        let s = |spec: &str| String::from_utf8_lossy(&v.section(&sec(spec).unwrap())).into_owned();
        assert_eq!(s("HEADER.FIELDS (Subject)"), "Subject: z\r\n");
        assert_eq!(s("HEADER.FIELDS.NOT (Subject)"), "X: y\r\n");
        assert_eq!(s("HEADER"), "X: y\r\nSubject: z");
    }

    /// Every method on every section of a message, checking the byte
    /// accounting on the way.
    fn exercise(bytes: &[u8], specs: &[Vec<u8>], origin: u64, length: u64) {
        let v = MessageView::parse(bytes);
        let root = &v.parts[0];
        assert_eq!(
            root.pos + root.hdr_len + root.body_len,
            v.size(),
            "every byte belongs to the message"
        );
        for p in &v.parts {
            assert!(p.pos + p.hdr_len + p.body_len <= v.size());
            assert!(p.depth < MAX_NESTED_PARTS);
        }
        let mut out = Vec::new();
        v.bodystructure(&mut out);
        v.body(&mut out);
        v.envelope(&mut out);
        for spec in specs {
            if let Some(section) = Section::parse(spec) {
                let bytes = v.section(&section);
                let _ = v.has_section(&section);
                let cut = partial(&bytes, origin, Some(length));
                assert!(cut.len() as u64 <= length);
            }
        }
    }

    fn probe_specs() -> Vec<Vec<u8>> {
        [
            "",
            "HEADER",
            "TEXT",
            "1",
            "2",
            "0",
            "1.1",
            "1.2.3",
            "2.MIME",
            "1.HEADER",
            "1.TEXT",
            "1.1.HEADER.FIELDS (A B)",
            "HEADER.FIELDS (Subject From)",
            "HEADER.FIELDS.NOT (Subject)",
            "3.1.MIME",
            "4294967295",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn corpus() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    }

    /// Lines that drive the parser through its states.
    const FRAGMENTS: &[&str] = &[
        "Content-Type: multipart/mixed; boundary=b\r\n",
        "Content-Type: multipart/digest; boundary=bb\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: text/plain; charset*0=a; charset*1*=b\r\n",
        "MIME-Version: 1.0\r\n",
        "From: \"a\\\" (b\" <c@d>, g: e@f;\r\n",
        "Subject: =?x?q?y?=\r\n",
        " folded\r\n",
        "\r\n",
        "\r\n",
        "--b\r\n",
        "--b--\r\n",
        "--bb\r\n",
        "--bb--",
        "body text\r\n",
        "\0\u{80}\r",
        "no colon\r\n",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            // PROPTEST_CASES runs more of them.
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            spec in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            origin in 0u64..5000,
            length in 0u64..5000,
        ) {
            let mut specs = probe_specs();
            specs.push(spec);
            exercise(&bytes, &specs, origin, length);
        }

        #[test]
        fn mime_shaped_input_never_panics(
            picks in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..80),
            origin in 0u64..3000,
            length in 0u64..3000,
        ) {
            let bytes: Vec<u8> = picks.iter().flat_map(|&i| FRAGMENTS[i].bytes()).collect();
            exercise(&bytes, &probe_specs(), origin, length);
        }

        #[test]
        fn mutated_corpus_never_panics(
            file in 0usize..64,
            edits in proptest::collection::vec((0usize..100_000, 0usize..4, proptest::prelude::any::<u8>()), 1..12),
            origin in 0u64..100_000,
            length in 0u64..100_000,
        ) {
            let corpus = corpus();
            proptest::prop_assume!(!corpus.is_empty());
            let mut bytes = corpus[file % corpus.len()].clone();
            for (at, kind, b) in edits {
                let at = if bytes.is_empty() { 0 } else { at % (bytes.len() + 1) };
                match kind {
                    0 => bytes.insert(at, b),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    2 if at < bytes.len() => bytes[at] = b,
                    _ => bytes.truncate(at),
                }
            }
            exercise(&bytes, &probe_specs(), origin, length);
        }

        #[test]
        fn section_specs_never_panic(spec in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60)) {
            let _ = Section::parse(&spec);
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut msg = Vec::new();
        for i in 0..300 {
            msg.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes());
        }
        msg.extend_from_slice(b"\r\nleaf\r\n");
        let v = MessageView::parse(&msg);
        let mut out = Vec::new();
        v.bodystructure(&mut out);
        assert!(v.parts.iter().all(|p| p.depth < MAX_NESTED_PARTS));
    }
}
