//! The search index's dictionary: every word its texts hold, each with a
//! number that names it in the posting lists. It is kept in the database
//! (`words`: the words a put added, numbered from the row's first number
//! on, one row per put, so that it is read back quickly) and, once read,
//! in memory, where a search finds the words that contain a string with
//! one scan of their concatenation.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use rustc_hash::FxHashMap;

/// A word's number in the dictionary.
pub(super) type WordId = u32;

/// The words, in the order they were numbered.
#[derive(Debug, Default)]
pub(super) struct Dictionary {
    /// `\n` + each word + `\n`: no word holds a line feed, so a search
    /// string found here lies inside one word.
    text: String,
    /// Where each word starts in `text`, ascending.
    starts: Vec<u32>,
    /// Each word's number, in the same order.
    ids: Vec<WordId>,
    /// A keyed hash of each word to its place, for the first word with
    /// that hash; words whose hash was taken are in `collided`. Built when
    /// a put first numbers words: a search needs neither, and building
    /// them would slow the first search after a start.
    places: Option<FxHashMap<u64, u32>>,
    collided: HashMap<Box<str>, u32>,
    hasher: RandomState,
    next_id: WordId,
}

impl Dictionary {
    /// A dictionary of stored rows: `(first number, words joined by line
    /// feeds)`, as [`Self::joined`] writes them.
    pub(super) fn from_rows(rows: impl IntoIterator<Item = (WordId, String)>) -> Dictionary {
        // Copied a row at a time, the words found by their line feeds:
        // this is what the first search after a start waits for.
        let mut dictionary = Dictionary {
            text: "\n".into(),
            ..Dictionary::default()
        };
        for (first, words) in rows {
            let from = dictionary.text.len();
            dictionary.text.push_str(&words);
            dictionary.text.push('\n');
            let mut start = from;
            let ends = memchr::memchr_iter(b'\n', &dictionary.text.as_bytes()[from..]);
            for (k, end) in ends.enumerate() {
                dictionary.starts.push(start as u32);
                dictionary.ids.push(first + k as WordId);
                start = from + end + 1;
            }
            dictionary.next_id = dictionary.next_id.max(dictionary.ids.last().map_or(0, |id| id + 1));
        }
        dictionary
    }

    /// New words (numbered consecutively, as [`Self::id`] numbers them)
    /// as one stored row.
    pub(super) fn joined(new: &[(WordId, String)]) -> Option<(WordId, String)> {
        let (first, _) = new.first()?;
        debug_assert!(new.iter().enumerate().all(|(k, (id, _))| *id == first + k as WordId));
        Some((*first, new.iter().map(|(_, w)| w.as_str()).collect::<Vec<_>>().join("\n")))
    }

    fn push(&mut self, id: WordId, word: &str) {
        let place = self.ids.len() as u32;
        self.starts.push(self.text.len() as u32);
        self.text.push_str(word);
        self.text.push('\n');
        self.ids.push(id);
        self.next_id = self.next_id.max(id + 1);
        if self.places.is_some() {
            self.place(word, place);
        }
    }

    /// Records where `word` is, in `places` (which exists).
    fn place(&mut self, word: &str, place: u32) {
        let hash = self.hasher.hash_one(word);
        match self.places.as_mut().expect("built").entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(place);
            }
            Entry::Occupied(_) => {
                self.collided.insert(word.into(), place);
            }
        }
    }

    fn word_at(&self, place: u32) -> &str {
        let place = place as usize;
        let start = self.starts[place] as usize;
        let end = self.starts.get(place + 1).map_or(self.text.len(), |&next| next as usize) - 1;
        &self.text[start..end]
    }

    /// The number of `word`, giving it the next one when it is new (then
    /// it is also added to `new`, for the caller to store).
    pub(super) fn id(&mut self, word: &str, new: &mut Vec<(WordId, String)>) -> WordId {
        if self.places.is_none() {
            let count = self.ids.len() as u32;
            let hashes: Vec<u64> = (0..count).map(|place| self.hasher.hash_one(self.word_at(place))).collect();
            let mut places = FxHashMap::with_capacity_and_hasher(hashes.len(), Default::default());
            for (place, hash) in (0..count).zip(hashes) {
                if let Entry::Vacant(slot) = places.entry(hash) {
                    slot.insert(place);
                } else {
                    self.collided.insert(self.word_at(place).into(), place);
                }
            }
            self.places = Some(places);
        }
        let hash = self.hasher.hash_one(word);
        let known = match self.places.as_ref().expect("built").get(&hash) {
            Some(&place) if self.word_at(place) == word => Some(place),
            Some(_) => self.collided.get(word).copied(),
            None => None,
        };
        if let Some(place) = known {
            return self.ids[place as usize];
        }
        let id = self.next_id;
        self.push(id, word);
        new.push((id, word.to_string()));
        id
    }

    /// The numbers of the words that contain `needle` (which holds no
    /// line feed); `None` when there are more than `at_most`.
    pub(super) fn containing(&self, needle: &str, at_most: usize) -> Option<Vec<WordId>> {
        let mut found: Vec<WordId> = Vec::new();
        let mut last_place = None;
        for at in memchr::memmem::find_iter(self.text.as_bytes(), needle.as_bytes()) {
            let place = self.starts.partition_point(|&s| s as usize <= at) - 1;
            if last_place == Some(place) {
                continue;
            }
            last_place = Some(place);
            found.push(self.ids[place]);
            if found.len() > at_most {
                return None;
            }
        }
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_words_once_and_finds_those_containing_a_string() {
        let mut dictionary = Dictionary::from_rows([(0, "MEETING".to_string()), (4, "MEETINGS".to_string())]);
        assert_eq!(dictionary.word_at(1), "MEETINGS");
        let mut new = Vec::new();
        assert_eq!(dictionary.id("MEETING", &mut new), 0);
        assert_eq!(dictionary.id("GREETING", &mut new), 5);
        assert_eq!(dictionary.id("GREETING", &mut new), 5);
        assert_eq!(dictionary.id("SEATING", &mut new), 6);
        assert_eq!(new, [(5, "GREETING".to_string()), (6, "SEATING".to_string())]);
        let stored = Dictionary::joined(&new).unwrap();
        assert_eq!(stored, (5, "GREETING\nSEATING".to_string()));
        let again = Dictionary::from_rows([(0, "MEETING".to_string()), (4, "MEETINGS".to_string()), stored]);
        assert_eq!(again.containing("EAT", 10), Some(vec![6]));
        assert_eq!(dictionary.containing("EETING", 10), Some(vec![0, 4, 5]));
        assert_eq!(dictionary.containing("MEETINGS", 10), Some(vec![4]));
        assert_eq!(dictionary.containing("GM", 10), Some(vec![]));
        assert_eq!(dictionary.containing("ETI", 2), None);
        // The start of one word and the end of another never make a match.
        assert_eq!(dictionary.containing("SGREE", 10), Some(vec![]));
    }
}
