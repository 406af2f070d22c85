//! FETCH data items (RFC 9051 §6.4.5, BINARY of RFC 3516, PREVIEW of RFC
//! 8970), parsed once into a [`FetchItem`], on both sides: the items a
//! client asks for and the item names of the server's answers. Answers are
//! matched to requests by [`FetchItem::same_answer`], and the proxy answers
//! items about decrypted messages with an exhaustive `match` on the enum,
//! so that an item it models but does not answer cannot go unnoticed.
//!
//! The grammar:
//!
//! ```text
//! fetch-att   = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822" /
//!               "RFC822.HEADER" / "RFC822.TEXT" / "RFC822.SIZE" /
//!               "BODY" ["STRUCTURE"] / "UID" /
//!               "BODY" [".PEEK"] section [partial] /
//!               "BINARY" [".PEEK"] section-binary [partial] /
//!               "BINARY.SIZE" section-binary /
//!               "PREVIEW" [SP "(" "LAZY" ")"]
//! partial     = "<" number "." nz-number ">"    ; answers: "<" number ">"
//! ```
//!
//! Like Dovecot, `section-binary` may be any `section` (`BINARY[TEXT]`,
//! `BINARY[1.MIME]`), and a partial without a length is read too. Names
//! are case-insensitive. Anything else (the macros `ALL`, `FAST` and `FULL`
//! are expanded by the command parser) is [`FetchItem::Other`] and passes
//! through as written: `MODSEQ`, `X-GM-LABELS`, `EMAILID`, malformed items.

use super::section::{Section, SectionText};

/// `<origin.length>` of a `BODY[...]` or `BINARY[...]` item. Answers carry
/// only the origin (`BODY[]<0>`); requests carry both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// The first octet wanted.
    pub origin: u64,
    /// How many octets, at most.
    pub length: Option<u64>,
}

/// One FETCH data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    /// `UID`.
    Uid,
    /// `FLAGS`.
    Flags,
    /// `INTERNALDATE`.
    InternalDate,
    /// `RFC822`: the whole message.
    Rfc822,
    /// `RFC822.HEADER`.
    Rfc822Header,
    /// `RFC822.TEXT`.
    Rfc822Text,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `BODYSTRUCTURE`.
    BodyStructure,
    /// `BODY` without a section: the body structure without extension data.
    Body,
    /// `ENVELOPE`.
    Envelope,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    Section {
        /// Between the brackets.
        section: Section,
        /// The partial, if any.
        partial: Option<Partial>,
        /// `.PEEK`: the server leaves `\Seen` alone.
        peek: bool,
    },
    /// `BINARY[section]<partial>` or `BINARY.PEEK[...]`: the section with
    /// its Content-Transfer-Encoding undone.
    Binary {
        /// Between the brackets.
        section: Section,
        /// The partial, if any.
        partial: Option<Partial>,
        /// `.PEEK`.
        peek: bool,
    },
    /// `BINARY.SIZE[section]`: the size of what `BINARY[section]` returns.
    BinarySize {
        /// Between the brackets.
        section: Section,
    },
    /// `PREVIEW`, or `PREVIEW (LAZY)`: a short text from the message.
    Preview {
        /// The client accepts `NIL` when the preview is not at hand.
        lazy: bool,
    },
    /// Anything else, as written.
    Other(Vec<u8>),
}

impl FetchItem {
    /// Reads one item as a client writes it, or an item name as a server
    /// writes it in an answer. Never fails: what it does not recognise is
    /// [`FetchItem::Other`].
    pub fn parse(raw: &[u8]) -> FetchItem {
        parse_known(raw).unwrap_or_else(|| FetchItem::Other(raw.to_vec()))
    }

    /// True for the whole message as stored: `RFC822`, or `BODY[]` without
    /// a partial (with `or_header`, also its header alone).
    pub fn is_whole_message(&self, or_header: bool) -> bool {
        match self {
            FetchItem::Rfc822 => true,
            FetchItem::Rfc822Header => or_header,
            FetchItem::Section {
                section, partial: None, ..
            } => section.part.is_empty() && (section.text == SectionText::All || (or_header && section.text == SectionText::Header)),
            _ => false,
        }
    }

    /// True for items whose answer depends on the message content, which
    /// differs between the stored ciphertext and what the client is shown.
    /// An item that could not be parsed but is named like a content item
    /// (`BINARY.SIZE[1]<0.5>`, which Dovecot accepts) counts as one, so
    /// that no answer about the ciphertext slips through unrecognised.
    pub fn depends_on_content(&self) -> bool {
        match self {
            FetchItem::Uid | FetchItem::Flags | FetchItem::InternalDate => false,
            FetchItem::Rfc822
            | FetchItem::Rfc822Header
            | FetchItem::Rfc822Text
            | FetchItem::Rfc822Size
            | FetchItem::BodyStructure
            | FetchItem::Body
            | FetchItem::Envelope
            | FetchItem::Section { .. }
            | FetchItem::Binary { .. }
            | FetchItem::BinarySize { .. }
            | FetchItem::Preview { .. } => true,
            FetchItem::Other(raw) => {
                let named = |prefix: &[u8]| raw.len() >= prefix.len() && raw[..prefix.len()].eq_ignore_ascii_case(prefix);
                named(b"BODY") || named(b"BINARY") || named(b"RFC822")
            }
        }
    }

    /// True when an answer to `self` and an answer to `other` carry the
    /// same item name: `BODY.PEEK[1]<0.100>` and `BODY[1]<0>` do, as do
    /// `PREVIEW (LAZY)` and `PREVIEW`, and field names match in any case.
    pub fn same_answer(&self, other: &FetchItem) -> bool {
        self.answer_name() == other.answer_name()
    }

    /// The item as its answer names it: no `.PEEK`, no partial length, no
    /// `LAZY`, field names and unknown items upper-cased.
    fn answer_name(&self) -> FetchItem {
        let section = |s: &Section| {
            let mut s = s.clone();
            if let SectionText::HeaderFields { fields, .. } = &mut s.text {
                fields.iter_mut().for_each(|f| f.make_ascii_uppercase());
            }
            s
        };
        let partial = |p: &Option<Partial>| p.map(|p| Partial { length: None, ..p });
        match self {
            FetchItem::Section {
                section: s, partial: p, ..
            } => FetchItem::Section {
                section: section(s),
                partial: partial(p),
                peek: false,
            },
            FetchItem::Binary {
                section: s, partial: p, ..
            } => FetchItem::Binary {
                section: section(s),
                partial: partial(p),
                peek: false,
            },
            FetchItem::BinarySize { section: s } => FetchItem::BinarySize { section: section(s) },
            FetchItem::Preview { .. } => FetchItem::Preview { lazy: false },
            FetchItem::Other(raw) => FetchItem::Other(raw.to_ascii_uppercase()),
            simple => simple.clone(),
        }
    }
}

/// The item, when it is one of the known forms.
fn parse_known(raw: &[u8]) -> Option<FetchItem> {
    let upper = raw.to_ascii_uppercase();
    let simple = match upper.as_slice() {
        b"UID" => Some(FetchItem::Uid),
        b"FLAGS" => Some(FetchItem::Flags),
        b"INTERNALDATE" => Some(FetchItem::InternalDate),
        b"RFC822" => Some(FetchItem::Rfc822),
        b"RFC822.HEADER" => Some(FetchItem::Rfc822Header),
        b"RFC822.TEXT" => Some(FetchItem::Rfc822Text),
        b"RFC822.SIZE" => Some(FetchItem::Rfc822Size),
        b"BODYSTRUCTURE" => Some(FetchItem::BodyStructure),
        b"BODY" => Some(FetchItem::Body),
        b"ENVELOPE" => Some(FetchItem::Envelope),
        b"PREVIEW" => Some(FetchItem::Preview { lazy: false }),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    if let Some(modifiers) = upper.strip_prefix(b"PREVIEW ") {
        return preview_modifiers(modifiers).then_some(FetchItem::Preview { lazy: true });
    }
    let open = raw.iter().position(|&b| b == b'[')?;
    // The section ends at the last `]`: a quoted field name may hold one,
    // a partial cannot.
    let close = raw.iter().rposition(|&b| b == b']')?;
    let section = Section::parse(raw.get(open + 1..close)?)?;
    let after = &raw[close + 1..];
    match &upper[..open] {
        b"BINARY.SIZE" => after.is_empty().then_some(FetchItem::BinarySize { section }),
        name => {
            let partial = if after.is_empty() { None } else { Some(parse_partial(after)?) };
            match name {
                b"BODY" | b"BODY.PEEK" => Some(FetchItem::Section {
                    section,
                    partial,
                    peek: name.len() > 4,
                }),
                b"BINARY" | b"BINARY.PEEK" => Some(FetchItem::Binary {
                    section,
                    partial,
                    peek: name.len() > 6,
                }),
                _ => None,
            }
        }
    }
}

/// `(LAZY)`, the one modifier RFC 8970 defines. Anything else, `(LAZY
/// LAZY)` included (on which Dovecot 2.3 panics), is left to the server.
fn preview_modifiers(list: &[u8]) -> bool {
    list == b"(LAZY)"
}

/// `<origin>` or `<origin.length>`.
fn parse_partial(s: &[u8]) -> Option<Partial> {
    let inner = std::str::from_utf8(s.strip_prefix(b"<")?.strip_suffix(b">")?).ok()?;
    let number = |n: &str| (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse::<u64>().ok())?;
    let (origin, length) = match inner.split_once('.') {
        Some((origin, length)) => (number(origin)?, Some(number(length)?)),
        None => (number(inner)?, None),
    };
    Some(Partial { origin, length })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(spec: &str) -> Section {
        Section::parse(spec.as_bytes()).unwrap()
    }

    #[test]
    fn known_items() {
        let p = |s: &str| FetchItem::parse(s.as_bytes());
        assert_eq!(p("uid"), FetchItem::Uid);
        assert_eq!(p("RFC822.SIZE"), FetchItem::Rfc822Size);
        assert_eq!(p("BodyStructure"), FetchItem::BodyStructure);
        assert_eq!(
            p("body.peek[1.MIME]<10.20>"),
            FetchItem::Section {
                section: section("1.MIME"),
                partial: Some(Partial {
                    origin: 10,
                    length: Some(20)
                }),
                peek: true
            }
        );
        assert_eq!(
            p("BODY[]<0>"),
            FetchItem::Section {
                section: section(""),
                partial: Some(Partial { origin: 0, length: None }),
                peek: false
            }
        );
        assert_eq!(
            p("BINARY.PEEK[1.2]<0.100>"),
            FetchItem::Binary {
                section: section("1.2"),
                partial: Some(Partial {
                    origin: 0,
                    length: Some(100)
                }),
                peek: true
            }
        );
        assert_eq!(p("binary.size[3]"), FetchItem::BinarySize { section: section("3") });
        assert_eq!(p("PREVIEW"), FetchItem::Preview { lazy: false });
        assert_eq!(p("preview (lazy)"), FetchItem::Preview { lazy: true });
        let fields = p("BODY.PEEK[HEADER.FIELDS (From \"X-]\")]");
        let FetchItem::Section { section, .. } = &fields else {
            panic!("{fields:?}")
        };
        assert_eq!(
            section.text,
            SectionText::HeaderFields {
                not: false,
                fields: vec!["From".into(), "X-]".into()]
            }
        );
    }

    #[test]
    fn everything_else_is_kept_as_written() {
        for raw in [
            "MODSEQ",
            "X-GM-LABELS",
            "BODY[FOO]",
            "BODY[1]<x>",
            "BODY[1]<1.>",
            "BODY[1]junk",
            "BINARY.SIZE[1]<0.5>",
            "BODY.PEEK",
            "PREVIEW (FUZZY)",
            "PREVIEW ()",
            "FLAGS (X)",
            "(FLAGS)",
            "BODY[]<99999999999999999999>",
        ] {
            assert_eq!(FetchItem::parse(raw.as_bytes()), FetchItem::Other(raw.as_bytes().to_vec()), "{raw}");
        }
    }

    #[test]
    fn what_depends_on_content() {
        let d = |s: &str| FetchItem::parse(s.as_bytes()).depends_on_content();
        for item in [
            "BODY[]",
            "RFC822.SIZE",
            "ENVELOPE",
            "BINARY[1]",
            "BINARY.SIZE[1]",
            "PREVIEW",
            "PREVIEW (LAZY)",
            "BODY",
        ] {
            assert!(d(item), "{item}");
        }
        for item in ["UID", "FLAGS", "INTERNALDATE", "MODSEQ", "X-GM-MSGID", "EMAILID"] {
            assert!(!d(item), "{item}");
        }
        assert!(d("BINARY.SIZE[1]<0.5>"), "unparsed, but named like a content item");
    }

    #[test]
    fn answers_match_requests() {
        let p = |s: &str| FetchItem::parse(s.as_bytes());
        assert!(p("BODY.PEEK[1]<0.100>").same_answer(&p("BODY[1]<0>")));
        assert!(!p("BODY.PEEK[1]<5.100>").same_answer(&p("BODY[1]<0>")));
        assert!(!p("BODY.PEEK[1]").same_answer(&p("BINARY[1]")));
        assert!(p("BODY.PEEK[HEADER.FIELDS (From \"Subject\")]").same_answer(&p("BODY[HEADER.FIELDS (FROM SUBJECT)]")));
        assert!(p("PREVIEW (LAZY)").same_answer(&p("PREVIEW")));
        assert!(p("x-gm-labels").same_answer(&p("X-GM-LABELS")));
        assert!(p("BINARY.PEEK[2]").same_answer(&p("BINARY[2]")));
        assert!(!p("BINARY[2]").same_answer(&p("BINARY.SIZE[2]")));
    }
}
