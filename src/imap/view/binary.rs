//! `BINARY[section]` and `BINARY.SIZE[section]` (RFC 3516): a section with
//! its Content-Transfer-Encoding undone, as Dovecot 2.3 computes it
//! (`index-mail-binary.c`, `imap-msgpart.c`).
//!
//! `BINARY[]`, `BINARY[TEXT]`, `BINARY[n]` and `BINARY[n.TEXT]` walk the
//! part and every part inside it: a leaf body in base64 or
//! quoted-printable is decoded, and (when the header is part of the
//! answer) its Content-Transfer-Encoding fields give way to
//! `Content-Transfer-Encoding: binary` at the end of its header; boundaries,
//! preambles and bodies in 7bit, 8bit or binary stay as they are. When no
//! body needed decoding the answer is the section's bytes unchanged: a
//! container (multipart, message/rfc822) labelled base64 keeps its label.
//! So does Dovecot, meaning to serve the original bytes, but it cuts them
//! to the length the relabelled headers would have had (and drops the
//! connection when that is longer); here they are served whole.
//! `HEADER`, `HEADER.FIELDS`, `MIME` are not decoded: they answer as in
//! `BODY[...]`. A part that does not exist gives no bytes.
//!
//! The answer is sent as a `literal8` (`~{n}`) when a body was decoded or
//! the bytes read hold a NUL (in a header, or in a body left as it was);
//! otherwise as a literal with NULs sent as 0x80, as `BODY[]` sends them.
//!
//! Failures, as Dovecot's: a Content-Transfer-Encoding field anywhere in
//! the walk that names no known encoding (its value read one physical line
//! at a time, the last field winning, so a folded value is unknown) is
//! [`BinaryError::UnknownCte`] (`NO [UNKNOWN-CTE]`); otherwise a body whose
//! encoding is broken is [`BinaryError::InvalidData`] (`NO [PARSE]`).
//! Dovecot 2.3 drops the connection instead when base64 or
//! quoted-printable stops in the middle of a unit; here that is invalid
//! data too.
//!
//! `BINARY.SIZE` is the length of the `BINARY` answer, and fails, as
//! Dovecot's does, when any part of the message cannot be decoded. Dovecot
//! 2.3 computes the size separately and gets it wrong when a multipart or
//! message/rfc822 part itself is labelled base64 or quoted-printable (it
//! counts such a part as its header alone); here the two always agree.

use std::borrow::Cow;

use super::decode::{base64, quoted_printable, BadEscapes, Cte};
use super::header::read_line;
use super::part::FLAG_RFC822;
use super::MessageView;
use crate::imap::section::{Section, SectionText};

/// The field that names the encoding.
const CTE_FIELD: &str = "Content-Transfer-Encoding";

/// What a decoded header says instead of its Content-Transfer-Encoding.
const CTE_BINARY: &[u8] = b"Content-Transfer-Encoding: binary\r\n";

/// The answer to `BINARY[section]`, before any partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary<'a> {
    /// The section's content.
    pub bytes: Cow<'a, [u8]>,
    /// Send it as a `literal8` (`~{n}`): it may hold NULs.
    pub literal8: bool,
}

/// Why a `BINARY` section cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// A part names a Content-Transfer-Encoding the proxy does not know
    /// (RFC 3516 `UNKNOWN-CTE`).
    #[error("Unknown Content-Transfer-Encoding.")]
    UnknownCte,
    /// A part's base64 or quoted-printable body is broken.
    #[error("Invalid data in MIME part.")]
    InvalidData,
}

impl BinaryError {
    /// The IMAP response code that says so.
    pub fn code(&self) -> &'static str {
        match self {
            BinaryError::UnknownCte => "UNKNOWN-CTE",
            BinaryError::InvalidData => "PARSE",
        }
    }
}

/// What a `BINARY` section stands for.
enum Target {
    /// Part `idx` decoded, with its header when `header`.
    Decoded { idx: usize, header: bool },
    /// A header section, not decoded: as in `BODY[...]`.
    AsBody,
    /// A part that does not exist: no bytes.
    Missing,
}

impl MessageView<'_> {
    /// The content of `BINARY[section]`.
    pub fn binary(&self, section: &Section) -> Result<Binary<'_>, BinaryError> {
        let (idx, header) = match self.binary_target(section) {
            Target::Decoded { idx, header } => (idx, header),
            Target::AsBody => {
                return Ok(Binary {
                    bytes: self.section(section),
                    literal8: false,
                })
            }
            Target::Missing => {
                return Ok(Binary {
                    bytes: Cow::Borrowed(&[]),
                    literal8: false,
                })
            }
        };
        let mut walk = Walk {
            view: self,
            out: Vec::new(),
            decoded: false,
            nuls: false,
            broken: false,
        };
        walk.part(idx, header)?;
        // Dovecot finds broken data only when it reads what it put
        // together, after every part's encoding was known.
        if walk.broken {
            return Err(BinaryError::InvalidData);
        }
        let literal8 = walk.decoded || walk.nuls;
        let bytes = if walk.decoded {
            Cow::Owned(walk.out)
        } else {
            let part = &self.parts[idx];
            let start = if header { part.pos } else { part.pos + part.hdr_len };
            let end = (part.pos + part.hdr_len + part.body_len).min(self.bytes.len());
            Cow::Borrowed(&self.bytes[start.min(end)..end])
        };
        let bytes = match bytes {
            b if literal8 || !b.contains(&0) => b,
            b => Cow::Owned(b.iter().map(|&c| if c == 0 { 0x80 } else { c }).collect()),
        };
        Ok(Binary { bytes, literal8 })
    }

    /// `BINARY.SIZE[section]`: the length of [`MessageView::binary`]. Like
    /// Dovecot, which computes the sizes of all parts at once, it fails
    /// for a part that exists when any part of the message cannot be
    /// decoded.
    pub fn binary_size(&self, section: &Section) -> Result<usize, BinaryError> {
        match self.binary_target(section) {
            Target::Missing => Ok(0),
            Target::AsBody => Ok(self.section(section).len()),
            Target::Decoded { .. } => {
                self.binary(&Section::all())?;
                Ok(self.binary(section)?.bytes.len())
            }
        }
    }

    /// Dovecot's reading of a section for `BINARY` (`imap_msgpart_open`).
    fn binary_target(&self, section: &Section) -> Target {
        let nested = !section.part.is_empty();
        let found = match &section.text {
            SectionText::All if !nested => Some((0, true)),
            SectionText::All => self.find_part(&section.part).map(|idx| (idx, false)),
            SectionText::Text if !nested => Some((0, false)),
            SectionText::Text => self
                .find_part(&section.part)
                .filter(|&idx| self.parts[idx].has(FLAG_RFC822))
                .and_then(|idx| self.parts[idx].children.first().copied())
                .map(|idx| (idx, false)),
            SectionText::Header | SectionText::HeaderFields { .. } | SectionText::Mime => return Target::AsBody,
        };
        match found {
            Some((idx, header)) => Target::Decoded { idx, header },
            None => Target::Missing,
        }
    }

    /// The encoding named by the header at `start` and whether that header
    /// holds a NUL, read as Dovecot's binary code reads them: up to the
    /// blank line, one physical line at a time, the last field winning;
    /// a continuation line of the field names nothing, so a folded value
    /// is unknown.
    fn binary_cte(&self, start: usize) -> (Cte, bool) {
        let buf: &[u8] = &self.bytes;
        let mut cte = Cte::Identity;
        let mut nuls = false;
        let (mut pos, mut continued, mut in_field) = (start, false, false);
        while let Some(line) = read_line(buf, pos, continued, false) {
            nuls |= buf[line.start..line.end].contains(&0);
            if line.eoh {
                break;
            }
            if continued {
                if in_field {
                    cte = Cte::Unknown;
                }
            } else {
                in_field = buf[line.name.0..line.name.1].eq_ignore_ascii_case(CTE_FIELD.as_bytes());
                if in_field {
                    cte = Cte::parse(&buf[line.value_start.min(line.content_end)..line.content_end]);
                }
            }
            pos = line.end;
            continued = line.continues;
        }
        (cte, nuls)
    }
}

/// One `BINARY` answer being put together.
struct Walk<'v, 'a> {
    view: &'v MessageView<'a>,
    out: Vec<u8>,
    /// A body was decoded.
    decoded: bool,
    /// A NUL was seen in a header or in a body left as it was.
    nuls: bool,
    /// A body could not be decoded.
    broken: bool,
}

impl Walk<'_, '_> {
    /// Appends part `idx` (with its header when `header`) and every part
    /// inside it.
    fn part(&mut self, idx: usize, header: bool) -> Result<(), BinaryError> {
        let view = self.view;
        let bytes: &[u8] = &view.bytes;
        let part = &view.parts[idx];
        let (cte, nuls) = view.binary_cte(part.pos);
        self.nuls |= nuls;
        if cte == Cte::Unknown {
            return Err(BinaryError::UnknownCte);
        }
        let body_start = part.pos + part.hdr_len;
        let end = body_start + part.body_len;
        if header {
            if cte == Cte::Identity {
                self.copy(part.pos, body_start);
            } else {
                let filtered = view.header_filter(part.pos, &[CTE_FIELD], true, false, CTE_BINARY);
                self.out.extend_from_slice(&filtered);
            }
        }
        if !part.children.is_empty() {
            let mut at = body_start;
            for &child in &part.children {
                let c = &view.parts[child];
                self.copy(at, c.pos);
                self.part(child, true)?;
                at = c.pos + c.hdr_len + c.body_len;
            }
            self.copy(at, end);
            return Ok(());
        }
        let body = bytes.get(body_start..end.min(bytes.len())).unwrap_or_default();
        if body.is_empty() {
            return Ok(());
        }
        self.decoded |= matches!(cte, Cte::QuotedPrintable | Cte::Base64);
        match cte {
            Cte::Identity | Cte::Unknown => {
                self.nuls |= body.contains(&0);
                self.out.extend_from_slice(body);
            }
            Cte::QuotedPrintable => match quoted_printable(body, BadEscapes::Refuse) {
                Ok(decoded) => self.out.extend_from_slice(&decoded),
                Err(_) => self.broken = true,
            },
            Cte::Base64 => {
                let (decoded, complete) = base64(body);
                self.out.extend_from_slice(&decoded);
                self.broken |= complete.is_err();
            }
        }
        Ok(())
    }

    /// Appends the message's bytes from `from` to `to`, unchanged.
    fn copy(&mut self, from: usize, to: usize) {
        let bytes: &[u8] = &self.view.bytes;
        let to = to.min(bytes.len());
        self.out.extend_from_slice(&bytes[from.min(to)..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(message: &[u8], spec: &str) -> Result<(String, bool), BinaryError> {
        let view = MessageView::parse(message);
        let b = view.binary(&Section::parse(spec.as_bytes()).unwrap())?;
        if view.binary(&Section::all()).is_ok() {
            assert_eq!(view.binary_size(&Section::parse(spec.as_bytes()).unwrap()), Ok(b.bytes.len()));
        }
        Ok((String::from_utf8_lossy(&b.bytes).into_owned(), b.literal8))
    }

    const NESTED: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\npre\r\n--a\r\nContent-Type: text/plain\r\n\r\none\r\n--a\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain\r\n\r\nx=3Dy\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n\r\n--a--\r\nepi\r\n";

    #[test]
    fn decodes_every_part_and_relabels_it() {
        let inner = "Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nx=y\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\0\u{1}\u{2}\r\n--b--\r\n";
        assert_eq!(binary(NESTED, "2"), Ok((inner.to_string(), true)));
        assert_eq!(binary(NESTED, "2.1"), Ok(("x=y".to_string(), true)));
        assert_eq!(binary(NESTED, "1"), Ok(("one".to_string(), false)));
        assert_eq!(binary(NESTED, "2.TEXT").unwrap().0, inner[inner.find("--b").unwrap()..]);
        let (all, literal8) = binary(NESTED, "").unwrap();
        assert!(literal8 && all.ends_with("\r\n--b--\r\n\r\n--a--\r\nepi\r\n") && all.contains("\r\n\r\npre\r\n--a\r\n"));
        assert_eq!(
            binary(NESTED, "1.MIME"),
            Ok(("Content-Type: text/plain\r\n\r\n".to_string(), false))
        );
        assert_eq!(binary(NESTED, "4"), Ok((String::new(), false)));
        assert_eq!(binary(NESTED, "1.TEXT"), Ok((String::new(), false)));
    }

    #[test]
    fn undecoded_sections_keep_their_bytes() {
        let msg = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\nContent-Transfer-Encoding: base64\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\none\r\n--a--\r\n";
        assert_eq!(binary(msg, ""), Ok((String::from_utf8_lossy(msg).into_owned(), false)));
        let nul = b"Subject: x\r\n\r\na\0b\r\n";
        assert_eq!(binary(nul, "1"), Ok(("a\0b\r\n".to_string(), true)), "NUL: a literal8, as it is");
        let preamble_nul = MessageView::parse(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n\0\r\n--a\r\n\r\nx\r\n--a--\r\n");
        let text = preamble_nul.binary(&Section::text()).unwrap();
        assert_eq!(
            (&*text.bytes, text.literal8),
            (&b"\x80\r\n--a\r\n\r\nx\r\n--a--\r\n"[..], false),
            "NUL outside any body: as BODY[] sends it"
        );
    }

    #[test]
    fn relabelled_headers_lose_every_encoding_field() {
        let msg = b"Content-Transfer-Encoding: bogus value\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n";
        assert_eq!(
            binary(msg, ""),
            Ok((
                "MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\nhello".to_string(),
                true
            ))
        );
    }

    #[test]
    fn failures() {
        let leaf = |cte: &str, body: &str| format!("MIME-Version: 1.0\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}").into_bytes();
        assert_eq!(binary(&leaf("x-uue", "x"), "1"), Err(BinaryError::UnknownCte));
        assert_eq!(binary(&leaf("8bit garbage", "x"), "TEXT"), Err(BinaryError::UnknownCte));
        assert_eq!(
            binary(&leaf("\r\n base64", "aGVsbG8="), "1"),
            Err(BinaryError::UnknownCte),
            "folded"
        );
        assert_eq!(binary(&leaf("base64", "Some text."), "1"), Err(BinaryError::InvalidData));
        assert_eq!(binary(&leaf("base64", "aGVsbG8"), "1"), Err(BinaryError::InvalidData));
        assert_eq!(binary(&leaf("quoted-printable", "a=ZZ"), ""), Err(BinaryError::InvalidData));
        assert_eq!(
            binary(&leaf("x-uue", "x"), "HEADER").map(|b| b.1),
            Ok(false),
            "headers are not decoded"
        );
        let bad_child = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\none\r\n--a\r\nContent-Transfer-Encoding: x-uue\r\n\r\ntwo\r\n--a--\r\n";
        assert_eq!(binary(bad_child, "1"), Ok(("one".to_string(), false)));
        assert_eq!(binary(bad_child, ""), Err(BinaryError::UnknownCte));
        let view = MessageView::parse(bad_child);
        assert_eq!(
            view.binary_size(&Section::parse(b"1").unwrap()),
            Err(BinaryError::UnknownCte),
            "sizes are of the whole"
        );
    }
}
