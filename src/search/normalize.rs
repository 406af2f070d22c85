//! Search normalisation: the form in which both the text of a message and
//! a search string are compared, so that a match is a plain substring
//! test. It is the i;unicode-casemap-style mapping Dovecot 2.3 applies to
//! SEARCH (its `uni_utf8_to_decomposed_titlecase`), so that Sealpost finds
//! exactly what the server would find if the message were stored in
//! plaintext:
//!
//! - each invalid UTF-8 sequence becomes U+FFFD, and U+FFFD never follows
//!   itself;
//! - each character is mapped to its simple titlecase (Unicode 9.0);
//! - a Hangul syllable becomes its jamo; otherwise a character with a
//!   single-character decomposition becomes that character, and a BMP
//!   character with a longer one becomes that sequence as it stands
//!   (neither is mapped again).
//!
//! So `café` is `CAFE\u{301}`: "cafe" finds "café", "é" does not find
//! "e", and `ß` is not `ss`.

use super::unicode_tables::{DECOMPOSE_MANY, DECOMPOSE_ONE, TITLECASE};

const REPLACEMENT: char = '\u{FFFD}';
const HANGUL_FIRST: u32 = 0xAC00;
const HANGUL_LAST: u32 = 0xD7A3;

/// `bytes` (UTF-8, possibly invalid) in search form.
pub fn normalize(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
    normalize_into(bytes, &mut out);
    out
}

/// Appends `bytes` in search form to `out`.
pub fn normalize_into(bytes: &[u8], out: &mut String) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(c, out);
        }
        if !chunk.invalid().is_empty() && !out.ends_with(REPLACEMENT) {
            out.push(REPLACEMENT);
        }
    }
}

fn push_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_uppercase());
        return;
    }
    if c == REPLACEMENT {
        if !out.ends_with(REPLACEMENT) {
            out.push(REPLACEMENT);
        }
        return;
    }
    let code = lookup(TITLECASE, c as u32).unwrap_or(c as u32);
    if (HANGUL_FIRST..=HANGUL_LAST).contains(&code) {
        let index = code - HANGUL_FIRST;
        push_code(0x1100 + index / (21 * 28), out);
        push_code(0x1161 + (index % (21 * 28)) / 28, out);
        if !index.is_multiple_of(28) {
            push_code(0x11A7 + index % 28, out);
        }
    } else if let Some(one) = lookup(DECOMPOSE_ONE, code) {
        push_code(one, out);
    } else if let Ok(i) = DECOMPOSE_MANY.binary_search_by_key(&code, |&(k, _)| k) {
        DECOMPOSE_MANY[i].1.iter().for_each(|&v| push_code(v, out));
    } else {
        push_code(code, out);
    }
}

fn push_code(code: u32, out: &mut String) {
    out.push(char::from_u32(code).unwrap_or(REPLACEMENT));
}

fn lookup(table: &[(u32, u32)], code: u32) -> Option<u32> {
    table.binary_search_by_key(&code, |&(k, _)| k).ok().map(|i| table[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(TITLECASE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(DECOMPOSE_ONE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(DECOMPOSE_MANY.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// The cases Dovecot 2.3.19's own normaliser was seen to give.
    #[test]
    fn matches_dovecot() {
        let n = |s: &str| normalize(s.as_bytes());
        assert_eq!(n("café"), "CAFE\u{301}");
        assert_eq!(n("ß"), "ß");
        assert_eq!(n("ẞ"), "ẞ");
        assert_eq!(n("ﬁsh"), "fiSH");
        assert_eq!(n("ǰ"), "j\u{30C}");
        assert_eq!(n("ª"), "a");
        assert_eq!(n("a\u{A0}b\u{2002}c\u{3000}d"), "A B C D");
        assert_eq!(n("™…"), "TM...");
        assert_eq!(n("\u{212A}"), "K");
        assert_eq!(n("ı"), "I");
        assert_eq!(n("İ"), "I\u{307}");
        assert_eq!(n("ςσ"), "ΣΣ");
        assert_eq!(n("ǆǄǅ"), "ǅǅǅ");
        assert_eq!(n("ḉ"), "Ç\u{301}");
        assert_eq!(n("Привет"), "ПРИВЕТ");
        assert_eq!(n("한"), "\u{1112}\u{1161}\u{11AB}");
        assert_eq!(n("日本語"), "日本語");
    }

    #[test]
    fn invalid_bytes_become_one_replacement_character() {
        assert_eq!(normalize(b"a\xff\xfeb"), "A\u{FFFD}B");
        assert_eq!(normalize(b"a\xff\xef\xbf\xbdb"), "A\u{FFFD}B");
        assert_eq!(normalize(b"\xc3"), "\u{FFFD}");
    }
}
