//! Words: the maximal runs of word characters in a text, what the search
//! index's dictionary holds.
//!
//! A word character is an ASCII letter or digit, or any character beyond
//! ASCII but white space. Which characters count matters only in that
//! texts and search strings are split alike: a string made of word
//! characters alone lies, wherever it occurs, inside one word of the
//! text. So the texts holding it are exactly those holding a word that
//! contains it, which the index answers without reading a text.

/// True for a character that words are made of.
pub fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_whitespace())
}

/// True when `s` is made of word characters alone (and is not empty).
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_word_char)
}

/// The words of `text`, in order, repeats included.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_on_ascii_punctuation_and_white_space() {
        let found: Vec<&str> = words("DAVE@EXAMPLE.COM, CAFE\u{301}\nRE: 2024-05").collect();
        assert_eq!(found, ["DAVE", "EXAMPLE", "COM", "CAFE\u{301}", "RE", "2024", "05"]);
        assert!(is_word("CAFE\u{301}"));
        assert!(!is_word("A B"));
        assert!(!is_word(""));
    }

    proptest! {
        /// The promise the index relies on.
        #[test]
        fn a_word_string_is_in_a_text_exactly_when_in_one_of_its_words(
            text in "[ab.\u{e9} \n]{0,30}",
            needle in "[ab\u{e9}]{1,4}",
        ) {
            prop_assert_eq!(text.contains(&needle), words(&text).any(|w| w.contains(&needle)));
        }
    }
}
