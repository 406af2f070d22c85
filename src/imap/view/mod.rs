//! Answers to IMAP FETCH items computed from a message's bytes, exactly as
//! the provider's IMAP server (Dovecot 2.3, the reference) would answer
//! them: `BODYSTRUCTURE`, `BODY`, `ENVELOPE`, `RFC822.SIZE`,
//! `BODY[section]<partial>` (RFC 9051 §6.4.5, §7.5.2; RFC 3501 §7.4.2),
//! `BINARY[section]` and `BINARY.SIZE[section]` (RFC 3516) and `PREVIEW`
//! (RFC 8970).
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
//! `message-parser.c` does ([`parser`], reading header lines with
//! [`header`] and header fields with [`fields`], [`rfc822`] and
//! [`address`]), and keeps a flat tree of [`part::Part`]s with byte ranges
//! into the message. Header values are reported raw, as IMAP wants them,
//! by [`write`]. Only `BINARY[...]` ([`binary`]) and `PREVIEW`
//! ([`preview`]) decode bodies ([`decode`]).
//!
//! This module owns pure rendering. It never touches sockets, state or
//! cryptography, and it never panics, whatever the bytes: messages come
//! from the network and are attacker-controlled.

mod address;
mod binary;
mod decode;
mod fields;
mod header;
mod parser;
mod part;
mod preview;
mod rfc822;
mod search;
mod write;

use std::borrow::Cow;

pub use binary::{Binary, BinaryError};
pub use preview::from_charset;

use super::section::{Section, SectionText};
use header::read_line;
use parser::Parser;
use part::{Part, FLAG_MULTIPART, FLAG_RFC822};

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
        write::structure(self, out, 0, true);
        out.push(b')');
    }

    /// Appends the value of `BODY` (the body structure without extension
    /// data), including its outer parentheses.
    pub fn body(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        write::structure(self, out, 0, false);
        out.push(b')');
    }

    /// Appends the value of `ENVELOPE`, including its outer parentheses.
    pub fn envelope(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        write::write_envelope(out, self.parts[0].envelope.as_ref());
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
            }) => Cow::Owned(self.header_filter(start, fields, not, add_missing_eoh, b"")),
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
    /// with `exclude`, of all others), then `before_eoh` and the blank line
    /// if there was one, or, with `add_missing_eoh`, a blank line anyway.
    /// Like Dovecot's, it reads up to a blank line, wherever that is.
    fn header_filter<S: AsRef<str>>(&self, start: usize, fields: &[S], exclude: bool, add_missing_eoh: bool, before_eoh: &[u8]) -> Vec<u8> {
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
                out.extend_from_slice(before_eoh);
                out.extend_from_slice(b"\r\n");
                break;
            }
            let matched = if continued {
                prev_matched
            } else {
                let name = &buf[line.name.0..line.name.1];
                fields.iter().any(|f| f.as_ref().as_bytes().eq_ignore_ascii_case(name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::emit::rendered as render;
    use crate::imap::section::partial;
    use parser::MAX_NESTED_PARTS;

    fn sec(spec: &str) -> Option<Section> {
        Section::parse(spec.as_bytes())
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
        assert!(v.preview().chars().count() <= 200);
        for spec in specs {
            if let Some(section) = Section::parse(spec) {
                let bytes = v.section(&section);
                let _ = v.has_section(&section);
                let cut = partial(&bytes, origin, Some(length));
                assert!(cut.len() as u64 <= length);
                if let (Ok(binary), Ok(size)) = (v.binary(&section), v.binary_size(&section)) {
                    assert_eq!(binary.bytes.len(), size);
                    assert!(binary.literal8 || !binary.bytes.contains(&0), "NULs only in a literal8");
                }
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
