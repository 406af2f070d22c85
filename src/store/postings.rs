//! Posting lists as bytes: which messages hold a gram, and in which of
//! their texts. The search index ([`super::index`]) stores them in
//! segments of chunks; this module only encodes, decodes and merges, and
//! knows nothing of SQL or of what the texts are.
//!
//! # Format
//!
//! A segment is a run of chunks, each at most [`CHUNK_BYTES`] long and
//! named by the first gram it holds. A chunk is a run of entries in
//! ascending gram order: `varint(gram - previous gram)` (the chunk's
//! first gram for the first entry), `varint(count)`, then `count`
//! postings in ascending message order, each `varint(doc delta << 1 |
//! same columns)` followed by the columns byte when they differ from the
//! previous posting's. A posting list too long for one chunk continues in
//! the next ones, each starting with an entry for the same gram; every
//! entry starts its deltas afresh.

use crate::search::grams::Gram;

/// A message in the index: the `messages` table's row id, never reused,
/// so a message indexed later always has a larger one.
pub(super) type DocId = u64;

/// Which texts of a message hold a gram, one bit each.
pub(super) type Columns = u8;

/// The most bytes of postings a chunk holds: small enough that looking
/// up a gram decodes little, large enough that a chunk's row costs little
/// beside it.
pub(super) const CHUNK_BYTES: usize = 3_900;

/// The most bytes an entry's gram and count take (two varints).
const ENTRY_HEAD: usize = 9 + 5;

/// One message that holds a gram, and in which texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Posting {
    /// The message.
    pub(super) doc: DocId,
    /// The texts.
    pub(super) columns: Columns,
}

/// A finished chunk: its first gram and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Chunk {
    /// The first gram it holds.
    pub(super) first: Gram,
    /// The encoded entries.
    pub(super) data: Vec<u8>,
}

/// A chunk that cannot be read: the database is damaged (SQLCipher's MAC
/// makes anything else unlikely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a posting chunk is damaged")]
pub(super) struct Damaged;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Damaged> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(Damaged)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Damaged)
}

/// Writes entries (ascending grams, each gram's postings ascending) into
/// chunks of at most [`CHUNK_BYTES`].
#[derive(Debug, Default)]
pub(super) struct SegmentWriter {
    current: Option<Chunk>,
    previous_gram: Gram,
    finished: Vec<Chunk>,
}

impl SegmentWriter {
    /// Adds the postings of `gram`, which is not below any gram added
    /// before. An empty list adds nothing.
    pub(super) fn push(&mut self, gram: Gram, postings: &[Posting]) {
        let mut rest = postings;
        while !rest.is_empty() {
            let mut entry = Vec::with_capacity(8 + rest.len() * 2);
            let mut taken = 0;
            let (mut doc, mut columns) = (0, 0);
            let mut body = Vec::with_capacity(rest.len() * 2);
            let room = self.room();
            for posting in rest {
                let before = body.len();
                let same = posting.columns == columns;
                put_varint(&mut body, ((posting.doc - doc) << 1) | u64::from(same));
                if !same {
                    body.push(posting.columns);
                }
                if taken > 0 && body.len() + ENTRY_HEAD > room {
                    body.truncate(before);
                    break;
                }
                (doc, columns) = (posting.doc, posting.columns);
                taken += 1;
            }
            let chunk = self.current.get_or_insert_with(|| Chunk {
                first: gram,
                data: Vec::new(),
            });
            let base = if chunk.data.is_empty() { chunk.first } else { self.previous_gram };
            put_varint(&mut entry, gram - base);
            put_varint(&mut entry, taken as u64);
            entry.extend_from_slice(&body);
            chunk.data.extend_from_slice(&entry);
            self.previous_gram = gram;
            rest = &rest[taken..];
            if !rest.is_empty() || chunk.data.len() + 16 > CHUNK_BYTES {
                self.finished.extend(self.current.take());
            }
        }
    }

    /// Bytes the next entry may take: what is left of the current chunk
    /// when it still has a useful amount, else a new chunk's.
    fn room(&mut self) -> usize {
        match &self.current {
            Some(chunk) if CHUNK_BYTES - chunk.data.len() >= 64 => CHUNK_BYTES - chunk.data.len(),
            Some(_) => {
                self.finished.extend(self.current.take());
                CHUNK_BYTES
            }
            None => CHUNK_BYTES,
        }
    }

    /// The chunks completed so far, for writing out as the segment grows.
    pub(super) fn take_finished(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.finished)
    }

    /// Every chunk not taken yet, the last one included.
    pub(super) fn finish(mut self) -> Vec<Chunk> {
        self.finished.extend(self.current.take());
        self.finished
    }
}

/// The entries of one chunk, in order: `(gram, postings)`.
pub(super) fn entries(chunk_first: Gram, data: &[u8]) -> Result<Vec<(Gram, Vec<Posting>)>, Damaged> {
    let mut out = Vec::new();
    let (mut at, mut gram) = (0, chunk_first);
    while at < data.len() {
        gram = gram.checked_add(varint(data, &mut at)?).ok_or(Damaged)?;
        let count = varint(data, &mut at)?;
        let mut postings = Vec::with_capacity(count.min(data.len() as u64) as usize);
        let (mut doc, mut columns) = (0u64, 0u8);
        for _ in 0..count {
            let value = varint(data, &mut at)?;
            doc = doc.checked_add(value >> 1).ok_or(Damaged)?;
            if value & 1 == 0 {
                columns = *data.get(at).ok_or(Damaged)?;
                at += 1;
            }
            postings.push(Posting { doc, columns });
        }
        out.push((gram, postings));
    }
    Ok(out)
}

/// The postings for `gram` in a run of consecutive chunks of one segment
/// (the last chunk starting below `gram`, then those starting at it).
pub(super) fn lookup<'c>(chunks: impl IntoIterator<Item = &'c Chunk>, gram: Gram) -> Result<Vec<Posting>, Damaged> {
    let mut out = Vec::new();
    for chunk in chunks {
        for (g, postings) in entries(chunk.first, &chunk.data)? {
            if g == gram {
                out.extend(postings);
            }
        }
    }
    Ok(out)
}

/// Merges segments given as entry streams, oldest first (each holds only
/// messages newer than the one before, so a gram's postings are the
/// concatenation), keeping only postings whose message `alive` says is
/// still indexed.
pub(super) fn merge<E>(
    mut inputs: Vec<impl Iterator<Item = Result<(Gram, Vec<Posting>), E>>>,
    alive: impl Fn(DocId) -> bool,
    out: &mut SegmentWriter,
    mut flush: impl FnMut(&mut SegmentWriter) -> Result<(), E>,
) -> Result<(), E> {
    let mut heads: Vec<Option<(Gram, Vec<Posting>)>> = inputs.iter_mut().map(|i| i.next().transpose()).collect::<Result<_, _>>()?;
    loop {
        let Some(gram) = heads.iter().flatten().map(|(g, _)| *g).min() else {
            return Ok(());
        };
        let mut postings = Vec::new();
        for (head, input) in heads.iter_mut().zip(inputs.iter_mut()) {
            while let Some((g, list)) = head.take_if(|(g, _)| *g == gram) {
                debug_assert_eq!(g, gram);
                postings.extend(list.into_iter().filter(|p| alive(p.doc)));
                *head = input.next().transpose()?;
            }
        }
        out.push(gram, &postings);
        flush(out)?;
    }
}

/// The messages of a posting list that hold the gram in one of
/// `columns`.
pub(super) fn docs_in(postings: &[Posting], columns: Columns) -> Vec<DocId> {
    postings.iter().filter(|p| p.columns & columns != 0).map(|p| p.doc).collect()
}

/// The members of both ascending lists.
pub(super) fn intersect(a: &[DocId], b: &[DocId]) -> Vec<DocId> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn write(index: &BTreeMap<Gram, Vec<Posting>>) -> Vec<Chunk> {
        let mut writer = SegmentWriter::default();
        let mut chunks = Vec::new();
        for (gram, postings) in index {
            writer.push(*gram, postings);
            chunks.extend(writer.take_finished());
        }
        chunks.extend(writer.finish());
        chunks
    }

    fn read(chunks: &[Chunk], gram: Gram) -> Vec<Posting> {
        // What the index reads: the last chunk starting below the gram and
        // those starting at it.
        let below = chunks.iter().rposition(|c| c.first < gram);
        let selected = below
            .into_iter()
            .map(|i| &chunks[i])
            .chain(chunks.iter().filter(|c| c.first == gram));
        lookup(selected, gram).unwrap()
    }

    fn index_strategy() -> impl Strategy<Value = BTreeMap<Gram, Vec<Posting>>> {
        let postings = proptest::collection::btree_map(0u64..5_000_000, 1u8..=255, 1..400)
            .prop_map(|m| m.into_iter().map(|(doc, columns)| Posting { doc, columns }).collect::<Vec<_>>());
        proptest::collection::btree_map(0u64..(1 << 63), postings, 0..60)
    }

    proptest! {
        #[test]
        fn what_is_written_is_read_back(index in index_strategy()) {
            let chunks = write(&index);
            for chunk in &chunks {
                prop_assert!(chunk.data.len() <= CHUNK_BYTES);
            }
            for (gram, postings) in &index {
                prop_assert_eq!(&read(&chunks, *gram), postings);
            }
            if let Some((last, _)) = index.last_key_value() {
                prop_assert_eq!(read(&chunks, last + 1), Vec::new());
            }
        }
    }

    #[test]
    fn a_long_list_spans_chunks_and_merging_concatenates_and_drops_the_dead() {
        let long: Vec<Posting> = (1..=5_000)
            .map(|doc| Posting {
                doc: doc * 3,
                columns: 1 + (doc % 3) as u8,
            })
            .collect();
        let old = BTreeMap::from([(7, long.clone()), (9, vec![Posting { doc: 4, columns: 2 }])]);
        let new = BTreeMap::from([
            (5, vec![Posting { doc: 20_000, columns: 1 }]),
            (7, vec![Posting { doc: 20_001, columns: 4 }]),
        ]);
        let old_chunks = write(&old);
        assert!(old_chunks.len() >= 3);
        assert_eq!(read(&old_chunks, 7), long);
        assert_eq!(read(&old_chunks, 8), []);
        let stream = |chunks: Vec<Chunk>| {
            chunks
                .into_iter()
                .flat_map(|c| entries(c.first, &c.data).unwrap())
                .map(Ok::<_, Damaged>)
        };
        let mut writer = SegmentWriter::default();
        let mut merged = Vec::new();
        merge(
            vec![stream(old_chunks), stream(write(&new))],
            |doc| doc != 4 && doc != 30,
            &mut writer,
            |w| {
                merged.extend(w.take_finished());
                Ok(())
            },
        )
        .unwrap();
        merged.extend(writer.finish());
        let mut expected: Vec<Posting> = long.iter().copied().filter(|p| p.doc != 30).collect();
        expected.push(Posting { doc: 20_001, columns: 4 });
        assert_eq!(read(&merged, 7), expected);
        assert_eq!(read(&merged, 5), [Posting { doc: 20_000, columns: 1 }]);
        assert_eq!(read(&merged, 9), []);
        assert_eq!(docs_in(&read(&merged, 7)[..3], 2), [3, 6]);
        assert_eq!(intersect(&[1, 3, 5, 9], &[2, 3, 9, 10]), [3, 9]);
    }
}
