//! Character n-grams, what the search index is keyed on.
//!
//! A text's grams are its runs of one, two and three characters inside a
//! line (texts in a [`Document`](super::Document) keep separate values on
//! separate lines, and no search string spans two). So a string of one to
//! three characters is in a text exactly when its gram is among the
//! text's grams, and a longer one can only be where all of its trigrams
//! are: those texts are candidates, to be checked.
//!
//! A gram is a `u64`: three 21-bit fields (every Unicode scalar value fits
//! in 21 bits), with [`ABSENT`] filling the leading fields of a shorter
//! gram. Distinct grams are distinct numbers, and sorting them sorts by
//! length first (trigrams, then bigrams, then single characters).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

/// One gram; see the module documentation.
pub type Gram = u64;

/// Fills the fields of a gram shorter than three characters: no Unicode
/// scalar value is this large.
const ABSENT: u64 = 0x1F_FFFF;

/// A set of grams with a fast hash (grams are not attacker-chosen keys of
/// a long-lived table: each set lives for one text).
pub type GramSet = HashSet<Gram, BuildHasherDefault<rustc_hash::FxHasher>>;

fn pack(a: u64, b: u64, c: u64) -> Gram {
    (a << 42) | (b << 21) | c
}

/// The gram of a string of one to three characters; `None` for any
/// other length.
pub fn gram_of(s: &str) -> Option<Gram> {
    let mut chars = s.chars().map(u64::from);
    let gram = match (chars.next(), chars.next(), chars.next()) {
        (Some(a), None, None) => pack(ABSENT, ABSENT, a),
        (Some(a), Some(b), None) => pack(ABSENT, a, b),
        (Some(a), Some(b), Some(c)) => pack(a, b, c),
        _ => return None,
    };
    chars.next().is_none().then_some(gram)
}

/// The distinct trigrams of a string of three characters or more: a text
/// holding the string holds all of them.
pub fn trigrams_of(s: &str) -> Vec<Gram> {
    let chars: Vec<u64> = s.chars().map(u64::from).collect();
    let mut grams: Vec<Gram> = chars.windows(3).map(|w| pack(w[0], w[1], w[2])).collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

/// Adds every gram of `text` to `out`.
///
/// Each position adds its trigram; the bigrams and single characters are
/// then taken from the trigrams' prefixes, plus the ends of each line
/// that no trigram starts at. That is one set insertion per character
/// instead of three.
pub fn add_grams(text: &str, out: &mut GramSet) {
    let mut trigrams = Vec::new();
    for line in text.split('\n') {
        let (mut second_last, mut last) = (None, None);
        for c in line.chars().map(u64::from) {
            if let (Some(a), Some(b)) = (second_last, last) {
                let gram = pack(a, b, c);
                if out.insert(gram) {
                    trigrams.push(gram);
                }
            }
            (second_last, last) = (last, Some(c));
        }
        match (second_last, last) {
            (Some(a), Some(b)) => {
                out.extend([pack(ABSENT, a, b), pack(ABSENT, ABSENT, a), pack(ABSENT, ABSENT, b)]);
            }
            (None, Some(a)) => {
                out.insert(pack(ABSENT, ABSENT, a));
            }
            _ => {}
        }
    }
    for gram in trigrams {
        let (a, b) = (gram >> 42, (gram >> 21) & ABSENT);
        out.insert(pack(ABSENT, a, b));
        out.insert(pack(ABSENT, ABSENT, a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grams(text: &str) -> GramSet {
        let mut set = GramSet::default();
        add_grams(text, &mut set);
        set
    }

    /// Every substring of one to three characters of every line, the
    /// slow way.
    fn expected(text: &str) -> GramSet {
        let mut set = GramSet::default();
        for line in text.split('\n') {
            let chars: Vec<char> = line.chars().collect();
            for n in 1..=3 {
                for w in chars.windows(n) {
                    set.insert(gram_of(&w.iter().collect::<String>()).unwrap());
                }
            }
        }
        set
    }

    #[test]
    fn short_strings_and_lines() {
        assert_eq!(grams(""), GramSet::default());
        assert_eq!(grams("A"), expected("A"));
        assert_eq!(grams("AB"), expected("AB"));
        assert_eq!(grams("ABC\nD\n\nEF"), expected("ABC\nD\n\nEF"));
        assert!(!grams("AB\nC").contains(&gram_of("BC").unwrap()));
        assert_eq!(gram_of(""), None);
        assert_eq!(gram_of("ABCD"), None);
        assert_eq!(trigrams_of("ABCABC"), {
            let mut v = vec![gram_of("ABC").unwrap(), gram_of("BCA").unwrap(), gram_of("CAB").unwrap()];
            v.sort_unstable();
            v
        });
    }

    proptest! {
        #[test]
        fn the_grams_are_exactly_the_short_substrings(text in "[ab\n\u{e9}\u{10437}]{0,24}") {
            prop_assert_eq!(grams(&text), expected(&text));
        }

        #[test]
        fn a_short_string_is_in_a_line_exactly_when_its_gram_is(text in "[abc\n]{0,16}", needle in "[abc]{1,3}") {
            let found = text.split('\n').any(|line| line.contains(&needle));
            prop_assert_eq!(grams(&text).contains(&gram_of(&needle).unwrap()), found);
        }
    }
}
