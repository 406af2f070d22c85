//! The section of a `BODY[...]` or `BINARY[...]` FETCH item (RFC 9051
//! §6.4.5): which part of a message, and what of it, parsed from the bytes
//! between the brackets as Dovecot 2.3 reads them; and the `<origin.length>`
//! partial applied to a section's bytes.
//!
//! ```text
//! section-spec    = section-msgtext / (section-part ["." section-text])
//! section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
//! section-part    = nz-number *("." nz-number)
//! section-text    = section-msgtext / "MIME"
//! ```

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

#[cfg(test)]
mod tests {
    use super::*;

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

    proptest::proptest! {
        #[test]
        fn section_specs_never_panic(spec in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60)) {
            let _ = Section::parse(&spec);
        }
    }
}
