//! [`SearchIndex`]: one account's search index, a SQLCipher database
//! (SQLite with every page encrypted) in its own directory under
//! `data_dir/index`.
//!
//! # Keys
//!
//! The database key is derived from a master key kept like the message
//! cache's (`index-key.pgp`, encrypted to the account's own certificate
//! and signed by it), so only the unlocked account key opens the index.
//! It is handed to SQLCipher as a raw key (no passphrase derivation) and
//! never written anywhere. Temporary tables and sorts stay in memory, so
//! no plaintext temporary file is ever written.
//!
//! # Layout
//!
//! - `mailboxes`: name (as the server spells it) and UIDVALIDITY; a new
//!   UIDVALIDITY drops what was indexed under the old one.
//! - `messages`: mailbox, UID, size and sent date of each indexed message;
//!   its row id is the message's [`DocId`].
//! - `texts` (the short ones), `fields`, `all_fields` and `bodies`: the
//!   text columns of [`Document`], already in search form, the long ones
//!   LZ4-compressed, each in a table of its own so that checking many
//!   candidates reads only the column it needs. Candidates are checked
//!   against them.
//! - `segments` and `chunks`: an inverted index from every gram (run of
//!   one to three characters, [`crate::search::grams`]) and every word
//!   ([`crate::search::words`], numbered in `words`, see
//!   [`super::dictionary`]) to the messages and columns holding it
//!   ([`super::postings`]). A string of up to three characters is
//!   answered by its gram's posting list alone, exactly; a longer one made
//!   of word characters, in the columns whose words the dictionary holds
//!   ([`WORD_COLUMNS`]: not the header texts), by the lists of the
//!   dictionary's words that contain it, exactly too (when there are at
//!   most [`WORDS_AT_MOST`]); any other by the messages holding all of its
//!   trigrams, each then checked against its text.
//!
//! Each put adds one segment (its messages are newer than any indexed
//! before, so segments cover ascending, disjoint ranges of messages). When
//! the newest [`FANOUT`] segments have the same level they are merged into
//! one of the next level, dropping postings of messages no longer indexed,
//! up to [`TOP_LEVEL`]: a search reads a gram from a few dozen segments at
//! most, and an indexed message is rewritten a few times. Postings of a
//! message that is gone stay until then, and are ignored: every posting is
//! looked up in `messages`.
//!
//! Nothing is kept about a message but what SEARCH, SORT and THREAD need,
//! derived from mail that stays on the server: the directory can be
//! deleted at any time and is rebuilt.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::dictionary::{Dictionary, WordId};
use super::masterkey::{KeyFile, MasterKey};
use super::postings::{self, Chunk, Columns, Damaged, DocId, Posting, SegmentWriter};
use super::{io_error, StoreError};
use crate::pgp::UnlockedKey;
use crate::search::grams::{self, Gram, GramSet};
use crate::search::words;
use crate::search::{fields_named, Coverage, Criterion, Document, Field, OrderKeys, OrderRow};

/// The index's master key.
const INDEX_KEY: KeyFile = KeyFile {
    name: "index-key.pgp",
    magic: b"sealpost search index key v1\n",
    store: "search index",
};
/// Derives the database key from the master key.
const DATABASE_LABEL: &[u8] = b"sealpost search index v1: database";
const DATABASE_FILE: &str = "search.db";
/// Databases of earlier layouts (SQLite FTS5), deleted when found: they
/// are large and this version cannot read them.
const FORMER_FILES: [&str; 1] = ["index.db"];
/// SQLCipher's settings, before the first read. Larger pages than the
/// default 4 KB (fewer IVs and MACs, candidates checked in fewer page
/// reads) and HMAC-SHA256 instead of SHA512 (hardware SHA-256 where the
/// CPU has it) made checking candidates about twice as fast in the
/// benchmark.
const CIPHER: &str = "PRAGMA cipher_page_size = 16384; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;";
/// The layout's version (`PRAGMA user_version`); an index of another
/// version is emptied and rebuilt, except one [`MIGRATIONS`] brings up.
const SCHEMA_VERSION: i64 = 8;
/// How an index of an earlier version becomes the current one without
/// being rebuilt: (version, statements).
const MIGRATIONS: [(i64, &str); 1] = [(
    7,
    "ALTER TABLE mailboxes ADD COLUMN modseq INTEGER;
     ALTER TABLE messages ADD COLUMN coverage INTEGER NOT NULL DEFAULT 0;",
)];
/// The tables of every layout so far, dropped when the version changes.
const TABLES: [&str; 9] = [
    "words",
    "chunks",
    "segments",
    "bodies",
    "all_fields",
    "fields",
    "texts",
    "messages",
    "mailboxes",
];
/// The tables with a row per message, by its id.
const MESSAGE_TABLES: [&str; 4] = ["texts", "fields", "all_fields", "bodies"];

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA temp_store = MEMORY;
    PRAGMA foreign_keys = ON;
    PRAGMA busy_timeout = 10000;
    PRAGMA cache_size = -16384;
    CREATE TABLE IF NOT EXISTS mailboxes (
        id INTEGER PRIMARY KEY,
        name BLOB NOT NULL UNIQUE,
        uidvalidity INTEGER NOT NULL,
        on_server INTEGER,
        checked INTEGER,
        modseq INTEGER
    );
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sent INTEGER NOT NULL,
        arrival INTEGER,
        order_keys BLOB NOT NULL,
        coverage INTEGER NOT NULL DEFAULT 0,
        UNIQUE (mailbox, uid)
    );
    CREATE TABLE IF NOT EXISTS texts (
        id INTEGER PRIMARY KEY,
        subject TEXT NOT NULL,
        from_addr TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        cc_addr TEXT NOT NULL,
        bcc_addr TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS fields (id INTEGER PRIMARY KEY, text BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS all_fields (id INTEGER PRIMARY KEY, text BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, text BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS segments (
        id INTEGER PRIMARY KEY,
        level INTEGER NOT NULL,
        first_chunk INTEGER NOT NULL,
        last_chunk INTEGER NOT NULL,
        first_doc INTEGER NOT NULL,
        last_doc INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY,
        segment INTEGER NOT NULL,
        first INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chunks_by_gram ON chunks (segment, first);
    CREATE TABLE IF NOT EXISTS words (
        first_id INTEGER PRIMARY KEY,
        words TEXT NOT NULL
    );
";

/// The posting key of word number `id` is `WORD_KEY | id`; grams are all
/// below it.
const WORD_KEY: u64 = 1 << 63;
/// A search string of word characters is answered from the words that
/// contain it when there are at most this many (else from its trigrams).
const WORDS_AT_MOST: usize = 256;

/// How many segments of one level are merged into one of the next.
const FANOUT: usize = 16;
/// Segments of this level are not merged any more (one holds about
/// `FANOUT^TOP_LEVEL` puts, 12,800 messages in the indexer's batches),
/// so no put rewrites more than that, a message's postings are rewritten
/// twice at most, and a search reads a gram from about one segment per
/// 12,800 messages plus up to 30 smaller ones.
const TOP_LEVEL: i64 = 2;
/// Above this many candidates a search reads the mailbox's messages at
/// once rather than looking each one up.
const LOOKUPS_AT_MOST: usize = 2_000;

/// The text columns of a [`Document`], one bit each in a posting.
const SUBJECT: Columns = 1;
const FROM: Columns = 1 << 1;
const TO: Columns = 1 << 2;
const CC: Columns = 1 << 3;
const BCC: Columns = 1 << 4;
const FIELDS: Columns = 1 << 5;
const ALL_FIELDS: Columns = 1 << 6;
const BODY: Columns = 1 << 7;
/// The columns whose words are in the dictionary. The header texts are
/// left out: their message ids, dates and signatures would each add new
/// words (more than 20 a message in the benchmark's mail, most of the
/// dictionary), and are searched by trigrams instead.
const WORD_COLUMNS: Columns = SUBJECT | FROM | TO | CC | BCC | BODY;

/// A mailbox known to the index (under one UIDVALIDITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxId(i64);

/// How much of one mailbox is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStats {
    /// The mailbox name as the server spells it.
    pub name: Vec<u8>,
    /// Messages indexed.
    pub messages: u64,
    /// Of those, messages indexed by their header only because they are
    /// over `imap.max_message_size`.
    pub over_limit: u64,
    /// Of those, plaintext messages indexed by their header only, whose
    /// bodies the server searches (`imap.search = "hybrid"`).
    pub plaintext_headers: u64,
    /// Messages the server held when last asked (`None`: not asked yet).
    pub on_server: Option<u64>,
    /// When that was (seconds since the epoch).
    pub checked: Option<i64>,
}

/// Something went wrong inside the index database.
#[derive(Debug, thiserror::Error)]
#[error("search index {}: {source}; if this persists, stop Sealpost and delete the directory (it is rebuilt from the server)", dir.display())]
pub struct IndexError {
    dir: PathBuf,
    #[source]
    source: Failure,
}

/// What failed inside the index.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The database.
    #[error(transparent)]
    Database(#[from] rusqlite::Error),
    /// What the database holds cannot be read.
    #[error(transparent)]
    Damaged(#[from] Damaged),
}

/// One account's search index; see the module documentation.
///
/// Every method is synchronous and takes the connection's lock for its
/// duration: call them through `tokio::task::spawn_blocking`.
pub struct SearchIndex {
    dir: PathBuf,
    db: Mutex<Connection>,
    /// The dictionary as read from `words`, once needed. Locked only by
    /// a holder of `db`'s lock (so the two cannot deadlock); dropped when
    /// a put fails, to be read again.
    dictionary: Mutex<Option<Dictionary>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir` for the account whose
    /// unlocked key is `key`. A database left without its key file cannot
    /// be read and is replaced.
    pub fn open(dir: &Path, key: &UnlockedKey) -> Result<SearchIndex, StoreError> {
        crate::files::create_private_dir(dir).map_err(io_error(dir, "create the directory"))?;
        let (master, fresh) = MasterKey::open_or_create(dir, &INDEX_KEY, key)?;
        let path = dir.join(DATABASE_FILE);
        let stale = FORMER_FILES.iter().chain(fresh.then_some(&DATABASE_FILE));
        for name in stale {
            for suffix in ["", "-wal", "-shm"] {
                let file = dir.join(format!("{name}{suffix}"));
                match std::fs::remove_file(&file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&file, "remove")(e)),
                    _ => {}
                }
            }
        }
        let unreadable = |e: rusqlite::Error| StoreError::KeyUnreadable {
            store: INDEX_KEY.store,
            dir: dir.to_path_buf(),
            fingerprint: key.cert.fingerprint().to_hex(),
            reason: format!("{DATABASE_FILE}: {e}"),
        };
        let db = Connection::open(&path).map_err(unreadable)?;
        let raw_key = master.derive(DATABASE_LABEL);
        let hex: String = raw_key.iter().map(|b| format!("{b:02x}")).collect();
        let pragma = sequoia_openpgp::crypto::mem::Protected::from(format!("PRAGMA key = \"x'{hex}'\";").into_bytes());
        drop(hex);
        db.execute_batch(std::str::from_utf8(&pragma).expect("ASCII")).map_err(unreadable)?;
        db.execute_batch(CIPHER).map_err(unreadable)?;
        // The first read proves the key (SQLCipher reports "file is not a
        // database" otherwise).
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unreadable)?;
        if let Some((_, migration)) = MIGRATIONS.iter().find(|(from, _)| *from == version) {
            db.execute_batch(&format!("BEGIN; {migration} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .map_err(unreadable)?;
        } else if version != SCHEMA_VERSION {
            let drops: String = TABLES.iter().map(|t| format!("DROP TABLE IF EXISTS {t}; ")).collect();
            db.execute_batch(&format!("{drops} PRAGMA user_version = {SCHEMA_VERSION};"))
                .map_err(unreadable)?;
        }
        db.execute_batch(SCHEMA).map_err(unreadable)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_error(&path, "restrict the permissions of"))?;
        }
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            db: Mutex::new(db),
            dictionary: Mutex::new(None),
        })
    }

    /// Where the index of the account `login` lives under `data_dir`.
    pub fn dir_for(data_dir: &Path, login: &str) -> PathBuf {
        data_dir.join("index").join(super::account_dir_name(login))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error<E: Into<Failure>>(&self) -> impl Fn(E) -> IndexError + '_ {
        |source| IndexError {
            dir: self.dir.clone(),
            source: source.into(),
        }
    }

    /// The index's id for `name` under `uidvalidity`. A mailbox indexed
    /// under another UIDVALIDITY loses its messages first (the server
    /// numbers them afresh).
    pub fn mailbox(&self, name: &[u8], uidvalidity: u32) -> Result<MailboxId, IndexError> {
        let db = self.lock();
        let known: Option<(i64, u32)> = db
            .query_row("SELECT id, uidvalidity FROM mailboxes WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.error())?;
        match known {
            Some((id, v)) if v == uidvalidity => Ok(MailboxId(id)),
            Some((id, _)) => {
                for table in MESSAGE_TABLES {
                    db.execute(
                        &format!("DELETE FROM {table} WHERE id IN (SELECT id FROM messages WHERE mailbox = ?1)"),
                        [id],
                    )
                    .map_err(self.error())?;
                }
                db.execute("DELETE FROM messages WHERE mailbox = ?1", [id]).map_err(self.error())?;
                db.execute(
                    "UPDATE mailboxes SET uidvalidity = ?2, modseq = NULL WHERE id = ?1",
                    params![id, uidvalidity],
                )
                .map_err(self.error())?;
                Ok(MailboxId(id))
            }
            None => {
                db.execute(
                    "INSERT INTO mailboxes (name, uidvalidity) VALUES (?1, ?2)",
                    params![name, uidvalidity],
                )
                .map_err(self.error())?;
                Ok(MailboxId(db.last_insert_rowid()))
            }
        }
    }

    /// The UIDs indexed in `mailbox`, ascending.
    pub fn uids(&self, mailbox: MailboxId) -> Result<Vec<u32>, IndexError> {
        self.uids_where(mailbox, "1")
    }

    /// The UIDs of `mailbox`'s messages that `condition` (SQL over the
    /// `messages` table) selects, ascending.
    fn uids_where(&self, mailbox: MailboxId, condition: &str) -> Result<Vec<u32>, IndexError> {
        let db = self.lock();
        let mut statement = db
            .prepare_cached(&format!("SELECT uid FROM messages WHERE mailbox = ?1 AND {condition} ORDER BY uid"))
            .map_err(self.error())?;
        let uids = statement
            .query_map([mailbox.0], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<u32>, _>>())
            .map_err(self.error())?;
        Ok(uids)
    }

    /// The messages of `mailbox` indexed with `coverage`, ascending.
    pub fn covered(&self, mailbox: MailboxId, coverage: Coverage) -> Result<Vec<u32>, IndexError> {
        self.uids_where(mailbox, &format!("coverage = {}", coverage as i64))
    }

    /// Forgets every message indexed by its plaintext header (so that
    /// it is indexed whole again), in every mailbox; how many.
    pub fn forget_plaintext_headers(&self) -> Result<usize, IndexError> {
        let mut db = self.lock();
        let tx = db.transaction().map_err(self.error())?;
        let ids: Vec<i64> = tx
            .prepare(&format!(
                "SELECT id FROM messages WHERE coverage = {}",
                Coverage::PlaintextHeader as i64
            ))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(self.error())?;
        for &id in &ids {
            forget(&tx, id).map_err(self.error())?;
        }
        // Their mailboxes are no longer complete as of a mod-sequence.
        if !ids.is_empty() {
            tx.execute("UPDATE mailboxes SET modseq = NULL", []).map_err(self.error())?;
        }
        tx.commit().map_err(self.error())?;
        Ok(ids.len())
    }

    /// The UIDVALIDITY the mailbox `name` is indexed under, and the
    /// server's HIGHESTMODSEQ when the index last held every message
    /// (CONDSTORE, RFC 7162; `None` when not known).
    pub fn synced(&self, name: &[u8]) -> Result<Option<(u32, Option<u64>)>, IndexError> {
        self.lock()
            .query_row("SELECT uidvalidity, modseq FROM mailboxes WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.map(|m| m as u64)))
            })
            .optional()
            .map_err(self.error())
    }

    /// Records that the index holds every message `mailbox` held at the
    /// server when its HIGHESTMODSEQ was `modseq`.
    pub fn set_synced(&self, mailbox: MailboxId, modseq: u64) -> Result<(), IndexError> {
        self.lock()
            .execute("UPDATE mailboxes SET modseq = ?2 WHERE id = ?1", params![mailbox.0, modseq as i64])
            .map(drop)
            .map_err(self.error())
    }

    /// Stores (or replaces) what message `uid` of `mailbox`, which
    /// arrived at `arrival` (its INTERNALDATE, seconds since the epoch;
    /// `None` when not known yet, see [`Self::set_arrivals`]), offers to
    /// SEARCH, SORT and THREAD.
    pub fn put(&self, mailbox: MailboxId, uid: u32, arrival: Option<i64>, document: &Document) -> Result<(), IndexError> {
        self.put_all(mailbox, &[(uid, arrival, document)])
    }

    /// [`Self::put`] for several messages in one transaction, which also
    /// holds their postings in one new segment (and merges segments when
    /// due).
    pub fn put_all(&self, mailbox: MailboxId, messages: &[(u32, Option<i64>, &Document)]) -> Result<(), IndexError> {
        if messages.is_empty() {
            return Ok(());
        }
        // The work that needs no database is done before taking the lock.
        let batch = Batch::prepare(messages);
        let mut db = self.lock();
        let tx = db.transaction().map_err(self.error())?;
        let mut docs = Vec::with_capacity(messages.len());
        for (&(uid, arrival, document), texts) in messages.iter().zip(&batch.texts) {
            let old: Option<i64> = tx
                .query_row(
                    "SELECT id FROM messages WHERE mailbox = ?1 AND uid = ?2",
                    params![mailbox.0, uid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.error())?;
            if let Some(old) = old {
                forget(&tx, old).map_err(self.error())?;
            }
            tx.prepare_cached(
                "INSERT INTO messages (mailbox, uid, size, sent, arrival, order_keys, coverage)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    mailbox.0,
                    uid,
                    document.size as i64,
                    document.sent,
                    arrival,
                    encode_order_keys(&document.order),
                    document.coverage as i64
                ])
            })
            .map_err(self.error())?;
            let id = tx.last_insert_rowid();
            tx.prepare_cached("INSERT INTO texts (id, subject, from_addr, to_addr, cc_addr, bcc_addr) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .and_then(|mut s| s.execute(params![id, document.subject, document.from, document.to, document.cc, document.bcc]))
                .map_err(self.error())?;
            for (table, text) in [
                ("fields", &texts.fields),
                ("all_fields", &texts.all_fields),
                ("bodies", &texts.body),
            ] {
                tx.prepare_cached(&format!("INSERT INTO {table} (id, text) VALUES (?1, ?2)"))
                    .and_then(|mut s| s.execute(params![id, text]))
                    .map_err(self.error())?;
            }
            docs.push(id as DocId);
        }
        // Words get their numbers now, under the lock, and new ones are
        // stored in this transaction; if it fails, the dictionary in
        // memory may name words the database does not, so it is dropped.
        let mut dictionary = self.dictionary(&tx)?;
        let mut new_words = Vec::new();
        let words = batch.word_postings(dictionary.as_mut().expect("loaded"), &mut new_words);
        let written = self.write_batch(&tx, &docs, &batch, &words, &new_words);
        if written.is_err() {
            *dictionary = None;
        }
        written?;
        drop(dictionary);
        tx.commit().map_err(self.error())
    }

    /// The dictionary, read from the database the first time.
    fn dictionary<'s>(&'s self, db: &Connection) -> Result<MutexGuard<'s, Option<Dictionary>>, IndexError> {
        let mut dictionary = self.dictionary.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if dictionary.is_none() {
            let rows: Vec<(WordId, String)> = db
                .prepare("SELECT first_id, words FROM words ORDER BY first_id")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(self.error())?;
            *dictionary = Some(Dictionary::from_rows(rows));
        }
        Ok(dictionary)
    }

    /// The new words and the batch's postings, in a new segment; then
    /// merges if due.
    fn write_batch(
        &self,
        tx: &Transaction<'_>,
        docs: &[DocId],
        batch: &Batch<'_>,
        words: &[u128],
        new_words: &[(WordId, String)],
    ) -> Result<(), IndexError> {
        if let Some((first, joined)) = Dictionary::joined(new_words) {
            tx.execute("INSERT INTO words (first_id, words) VALUES (?1, ?2)", params![first, joined])
                .map_err(self.error())?;
        }
        let mut writer = SegmentWriter::default();
        let mut run: Vec<Posting> = Vec::new();
        let mut current = None;
        let segment = Segment::begin(tx, 0, docs[0], docs[docs.len() - 1]).map_err(self.error())?;
        // Grams sort below word keys: the two sorted lists, one after the
        // other, are in key order.
        for &entry in batch.postings.iter().chain(words) {
            let (gram, index, columns) = Batch::unpack(entry);
            if current != Some(gram) {
                if let Some(previous) = current {
                    writer.push(previous, &run);
                    segment.write(tx, writer.take_finished()).map_err(self.error())?;
                }
                run.clear();
                current = Some(gram);
            }
            run.push(Posting { doc: docs[index], columns });
        }
        if let Some(last) = current {
            writer.push(last, &run);
        }
        segment.write(tx, writer.finish()).map_err(self.error())?;
        segment.end(tx).map_err(self.error())?;
        self.merge_due(tx)
    }

    /// Merges the newest segments while [`FANOUT`] of them share a level
    /// below [`TOP_LEVEL`].
    fn merge_due(&self, tx: &Transaction<'_>) -> Result<(), IndexError> {
        loop {
            let segments = Segment::all(tx).map_err(self.error())?;
            let Some(last) = segments.last() else { return Ok(()) };
            let run = segments.iter().rev().take_while(|s| s.level == last.level).count();
            if run < FANOUT || last.level >= TOP_LEVEL {
                return Ok(());
            }
            let inputs = &segments[segments.len() - run..];
            let (first_doc, last_doc) = (inputs[0].first_doc, inputs[run - 1].last_doc);
            let alive: Vec<DocId> = tx
                .prepare_cached("SELECT id FROM messages WHERE id BETWEEN ?1 AND ?2 ORDER BY id")
                .and_then(|mut s| {
                    s.query_map(params![first_doc as i64, last_doc as i64], |r| r.get::<_, i64>(0))?
                        .collect::<rusqlite::Result<Vec<i64>>>()
                })
                .map_err(self.error())?
                .into_iter()
                .map(|id| id as DocId)
                .collect();
            let merged = Segment::begin(tx, last.level + 1, first_doc, last_doc).map_err(self.error())?;
            let streams = inputs.iter().map(|s| s.entries(tx)).collect();
            let mut writer = SegmentWriter::default();
            postings::merge(
                streams,
                |doc| alive.binary_search(&doc).is_ok(),
                &mut writer,
                |w| merged.write(tx, w.take_finished()).map_err(Failure::from),
            )
            .map_err(self.error())?;
            merged.write(tx, writer.finish()).map_err(self.error())?;
            merged.end(tx).map_err(self.error())?;
            for input in inputs {
                input.drop_from(tx).map_err(self.error())?;
            }
        }
    }

    /// Takes `on_server` (ascending) as every UID `mailbox` holds at the
    /// server now: forgets the messages not in it (expunged), records
    /// the count for `index status`, and returns the UIDs not indexed yet.
    pub fn sync(&self, mailbox: MailboxId, on_server: &[u32]) -> Result<Vec<u32>, IndexError> {
        let indexed = self.uids(mailbox)?;
        let gone: Vec<u32> = indexed.iter().copied().filter(|u| on_server.binary_search(u).is_err()).collect();
        let missing = on_server.iter().copied().filter(|u| indexed.binary_search(u).is_err()).collect();
        self.forget_gone(mailbox, &gone, on_server.len())?;
        Ok(missing)
    }

    /// What QRESYNC (RFC 7162) reported since the index last held every
    /// message of `mailbox`: the UIDs `vanished`, the UIDs `changed` (new
    /// ones among them), and the `exists` the mailbox holds now. Forgets
    /// the vanished and returns the UIDs not indexed yet; `None` when the
    /// counts disagree (a message the index missed before), so that the
    /// caller asks for every UID instead.
    pub fn apply_changes(
        &self,
        mailbox: MailboxId,
        vanished: &[u32],
        changed: &[u32],
        exists: usize,
    ) -> Result<Option<Vec<u32>>, IndexError> {
        let indexed = self.uids(mailbox)?;
        let gone: Vec<u32> = vanished.iter().copied().filter(|u| indexed.binary_search(u).is_ok()).collect();
        let mut missing: Vec<u32> = changed.iter().copied().filter(|u| indexed.binary_search(u).is_err()).collect();
        missing.sort_unstable();
        missing.dedup();
        if indexed.len() - gone.len() + missing.len() != exists {
            return Ok(None);
        }
        self.forget_gone(mailbox, &gone, exists)?;
        Ok(Some(missing))
    }

    /// Forgets the indexed messages `gone` (expunged) of `mailbox`, which
    /// holds `on_server` messages at the server now (for `index status`).
    fn forget_gone(&self, mailbox: MailboxId, gone: &[u32], on_server: usize) -> Result<(), IndexError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut db = self.lock();
        // A search of an unchanged mailbox writes nothing (the count for
        // `index status` is refreshed at most once a minute).
        let (known, checked): (Option<i64>, Option<i64>) = db
            .query_row("SELECT on_server, checked FROM mailboxes WHERE id = ?1", [mailbox.0], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.error())?;
        let fresh = known == Some(on_server as i64) && checked.is_some_and(|t| now - t < 60);
        if gone.is_empty() && fresh {
            return Ok(());
        }
        let tx = db.transaction().map_err(self.error())?;
        tx.execute(
            "UPDATE mailboxes SET on_server = ?2, checked = ?3 WHERE id = ?1",
            params![mailbox.0, on_server as i64, now],
        )
        .map_err(self.error())?;
        for uid in gone {
            let id: i64 = tx
                .query_row(
                    "SELECT id FROM messages WHERE mailbox = ?1 AND uid = ?2",
                    params![mailbox.0, uid],
                    |r| r.get(0),
                )
                .map_err(self.error())?;
            forget(&tx, id).map_err(self.error())?;
        }
        tx.commit().map_err(self.error())
    }

    /// The UIDs of `mailbox`'s indexed messages that `criterion` selects,
    /// ascending. Exact: a string longer than a gram only finds
    /// candidates in the gram index, and each is checked against its text.
    pub fn matching(&self, mailbox: MailboxId, criterion: &Criterion) -> Result<Vec<u32>, IndexError> {
        let db = self.lock();
        let segments = Segment::all(&db).map_err(self.error())?;
        let search = Search {
            index: self,
            db: &db,
            mailbox,
            segments: &segments,
        };
        let by_number = |condition: &str, value: i64| -> Result<Vec<u32>, Failure> {
            let sql = format!("SELECT uid FROM messages WHERE mailbox = ?1 AND {condition} ORDER BY uid");
            let mut statement = db.prepare_cached(&sql)?;
            let rows = statement.query_map(params![mailbox.0, value], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let found = match criterion {
            Criterion::Field(field, needle) if needle.is_empty() => search.has_field(field.header_name()),
            Criterion::Field(field, needle) => search.containing(column(*field), needle),
            Criterion::Header(name, needle) if needle.is_empty() => search.has_field(name),
            Criterion::Header(name, needle) => {
                // Candidates hold the string in some field; keep those
                // where a field of that name holds it.
                search.checked(FIELDS, needle, |fields| {
                    fields_named(fields, name).any(|value| value.contains(needle.as_str()))
                })
            }
            Criterion::Body(needle) | Criterion::Text(needle) if needle.is_empty() => by_number("1 = ?2", 1),
            Criterion::Body(needle) => search.containing(BODY, needle),
            Criterion::Text(needle) => search.containing(ALL_FIELDS | BODY, needle),
            Criterion::Larger(n) => by_number("size > ?2", clamp(*n)),
            Criterion::Smaller(n) => by_number("size < ?2", clamp(*n)),
            Criterion::SentBefore(day) => by_number("sent < ?2", *day),
            Criterion::SentOn(day) => by_number("sent >= ?2 AND sent - 86400 < ?2", *day),
            Criterion::SentSince(day) => by_number("sent >= ?2", *day),
        };
        found.map_err(self.error())
    }

    /// True when message `uid` of `mailbox` is indexed.
    pub fn contains(&self, mailbox: MailboxId, uid: u32) -> Result<bool, IndexError> {
        self.lock()
            .prepare_cached("SELECT 1 FROM messages WHERE mailbox = ?1 AND uid = ?2")
            .and_then(|mut s| s.exists(params![mailbox.0, uid]))
            .map_err(self.error())
    }

    /// The indexed messages of `mailbox` whose arrival is not known yet.
    pub fn without_arrival(&self, mailbox: MailboxId) -> Result<Vec<u32>, IndexError> {
        self.uids_where(mailbox, "arrival IS NULL")
    }

    /// Records when messages of `mailbox` arrived: `(uid, INTERNALDATE)`.
    pub fn set_arrivals(&self, mailbox: MailboxId, arrivals: &[(u32, i64)]) -> Result<(), IndexError> {
        let mut db = self.lock();
        let tx = db.transaction().map_err(self.error())?;
        for (uid, arrival) in arrivals {
            tx.execute(
                "UPDATE messages SET arrival = ?3 WHERE mailbox = ?1 AND uid = ?2",
                params![mailbox.0, uid, arrival],
            )
            .map_err(self.error())?;
        }
        tx.commit().map_err(self.error())
    }

    /// The size, arrival and order keys of each indexed message of
    /// `mailbox`, by UID (ascending); an arrival not known counts as 0.
    pub fn order_rows(&self, mailbox: MailboxId) -> Result<Vec<OrderRow>, IndexError> {
        let db = self.lock();
        let mut statement = db
            .prepare_cached("SELECT uid, size, arrival, order_keys FROM messages WHERE mailbox = ?1 ORDER BY uid")
            .map_err(self.error())?;
        let rows = statement.query_map([mailbox.0], |r| {
            Ok(OrderRow {
                uid: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                arrival: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                keys: decode_order_keys(&r.get::<_, Vec<u8>>(3)?),
            })
        });
        rows.and_then(|rows| rows.collect()).map_err(self.error())
    }

    /// Every mailbox with its number of indexed messages and what the
    /// server held when last asked.
    pub fn stats(&self) -> Result<Vec<MailboxStats>, IndexError> {
        let db = self.lock();
        let mut statement = db
            .prepare(
                "SELECT b.name, count(m.id), b.on_server, b.checked,
                 count(CASE WHEN m.coverage = 1 THEN 1 END), count(CASE WHEN m.coverage = 2 THEN 1 END) FROM mailboxes b
                 LEFT JOIN messages m ON m.mailbox = b.id GROUP BY b.id ORDER BY b.name",
            )
            .map_err(self.error())?;
        let rows = statement.query_map([], |r| {
            Ok(MailboxStats {
                name: r.get(0)?,
                messages: r.get::<_, i64>(1)? as u64,
                on_server: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                checked: r.get(3)?,
                over_limit: r.get::<_, i64>(4)? as u64,
                plaintext_headers: r.get::<_, i64>(5)? as u64,
            })
        });
        rows.and_then(|rows| rows.collect()).map_err(self.error())
    }

    /// Forgets everything: the index is rebuilt from the server as
    /// clients search and by the background indexer.
    pub fn clear(&self) -> Result<(), IndexError> {
        let deletes: String = TABLES.iter().map(|t| format!("DELETE FROM {t}; ")).collect();
        let db = self.lock();
        *self.dictionary.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        db.execute_batch(&deletes).map_err(self.error())
    }

    /// Bytes the index takes on disk (database and journal).
    pub fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(DATABASE_FILE))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Order keys as one value: strings each followed by a NUL (which search
/// form never holds), `None` as a lone `\x01`, then the numbers.
fn encode_order_keys(keys: &OrderKeys) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = |s: Option<&str>| {
        match s {
            Some(s) => out.extend_from_slice(s.as_bytes()),
            None => out.push(1),
        }
        out.push(0);
    };
    text(keys.base_subject.as_deref());
    text(Some(&keys.from));
    text(Some(&keys.to));
    text(Some(&keys.cc));
    text(Some(&keys.display_from));
    text(Some(&keys.display_to));
    text(keys.message_id.as_deref());
    text(Some(&keys.references.join(" ")));
    out.push(u8::from(keys.reply_or_forward));
    out.extend_from_slice(&keys.date.to_le_bytes());
    out
}

fn decode_order_keys(bytes: &[u8]) -> OrderKeys {
    let mut fields = bytes.splitn(9, |&b| b == 0);
    let mut text = || -> Option<String> {
        let field = fields.next().unwrap_or_default();
        (field != [1]).then(|| String::from_utf8_lossy(field).into_owned())
    };
    let base_subject = text();
    let (from, to, cc) = (text().unwrap_or_default(), text().unwrap_or_default(), text().unwrap_or_default());
    let (display_from, display_to) = (text().unwrap_or_default(), text().unwrap_or_default());
    let message_id = text();
    let references = text()
        .unwrap_or_default()
        .split(' ')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let tail = fields.next().unwrap_or_default();
    let date = tail.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes);
    OrderKeys {
        base_subject,
        reply_or_forward: tail.first() == Some(&1),
        from,
        to,
        cc,
        display_from,
        display_to,
        date,
        message_id,
        references,
    }
}

fn column(field: Field) -> Columns {
    match field {
        Field::Subject => SUBJECT,
        Field::From => FROM,
        Field::To => TO,
        Field::Cc => CC,
        Field::Bcc => BCC,
    }
}

/// Deletes what the index holds of message `id` but its postings (see
/// the module documentation).
fn forget(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    for table in MESSAGE_TABLES.iter().chain(&["messages"]) {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?.execute([id])?;
    }
    Ok(())
}

/// What a put computes of its messages before it takes the lock.
struct Batch<'d> {
    /// Each message's long texts, compressed: fields, all_fields, body.
    texts: Vec<StoredTexts>,
    /// Every (gram, message, columns) of the batch, packed by
    /// [`Batch::pack`] and sorted: by gram, then message.
    postings: Vec<u128>,
    /// Every (word, message, columns), each word once per message.
    words: Vec<(&'d str, usize, Columns)>,
}

struct StoredTexts {
    fields: Vec<u8>,
    all_fields: Vec<u8>,
    body: Vec<u8>,
}

impl<'d> Batch<'d> {
    fn prepare(messages: &[(u32, Option<i64>, &'d Document)]) -> Batch<'d> {
        let mut grams = GramSet::default();
        let mut columns: rustc_hash::FxHashMap<Gram, Columns> = Default::default();
        let mut word_columns: rustc_hash::FxHashMap<&'d str, Columns> = Default::default();
        let mut postings = Vec::new();
        let mut words = Vec::new();
        let mut texts = Vec::with_capacity(messages.len());
        for (index, &(_, _, document)) in messages.iter().enumerate() {
            columns.clear();
            word_columns.clear();
            for (text, bit) in [
                (&document.subject, SUBJECT),
                (&document.from, FROM),
                (&document.to, TO),
                (&document.cc, CC),
                (&document.bcc, BCC),
                (&document.fields, FIELDS),
                (&document.all_fields, ALL_FIELDS),
                (&document.body, BODY),
            ] {
                grams.clear();
                grams::add_grams(text, &mut grams);
                for &gram in &grams {
                    *columns.entry(gram).or_default() |= bit;
                }
                if bit & WORD_COLUMNS != 0 {
                    for word in words::words(text) {
                        *word_columns.entry(word).or_default() |= bit;
                    }
                }
            }
            postings.extend(columns.iter().map(|(&gram, &bits)| Batch::pack(gram, index, bits)));
            words.extend(word_columns.iter().map(|(&word, &bits)| (word, index, bits)));
            texts.push(StoredTexts {
                fields: compress(&document.fields),
                all_fields: compress(&document.all_fields),
                body: compress(&document.body),
            });
        }
        postings.sort_unstable();
        Batch { texts, postings, words }
    }

    /// The batch's word postings, packed and sorted like
    /// [`Self::postings`], with their words numbered by `dictionary`
    /// (new ones added to `new_words`).
    fn word_postings(&self, dictionary: &mut Dictionary, new_words: &mut Vec<(WordId, String)>) -> Vec<u128> {
        let mut numbered: rustc_hash::FxHashMap<&str, WordId> = Default::default();
        let mut out: Vec<u128> = self
            .words
            .iter()
            .map(|&(word, index, columns)| {
                let id = *numbered.entry(word).or_insert_with(|| dictionary.id(word, new_words));
                Batch::pack(WORD_KEY | u64::from(id), index, columns)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// A gram (63 bits), the message's place in the batch and the
    /// columns, in an order that sorts by gram, then message.
    fn pack(gram: Gram, index: usize, columns: Columns) -> u128 {
        (u128::from(gram) << 40) | ((index as u128) << 8) | u128::from(columns)
    }

    fn unpack(packed: u128) -> (Gram, usize, Columns) {
        ((packed >> 40) as Gram, ((packed >> 8) & 0xffff_ffff) as usize, packed as Columns)
    }
}

/// One segment of postings (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Segment {
    id: i64,
    level: i64,
    first_doc: DocId,
    last_doc: DocId,
    /// Its chunks' ids (consecutive), once written.
    first_chunk: i64,
    last_chunk: i64,
}

impl Segment {
    /// Starts a segment of the messages `first_doc..=last_doc`; its
    /// chunks follow with [`Self::write`], then [`Self::end`].
    fn begin(tx: &Transaction<'_>, level: i64, first_doc: DocId, last_doc: DocId) -> rusqlite::Result<Segment> {
        tx.execute(
            "INSERT INTO segments (level, first_chunk, last_chunk, first_doc, last_doc) VALUES (?1, 0, -1, ?2, ?3)",
            params![level, first_doc as i64, last_doc as i64],
        )?;
        Ok(Segment {
            id: tx.last_insert_rowid(),
            level,
            first_doc,
            last_doc,
            first_chunk: 0,
            last_chunk: -1,
        })
    }

    /// Appends chunks. Nothing else is inserted into `chunks` while a
    /// segment is written, so its chunks have consecutive ids.
    fn write(&self, tx: &Transaction<'_>, chunks: Vec<Chunk>) -> rusqlite::Result<()> {
        let mut insert = tx.prepare_cached("INSERT INTO chunks (segment, first, data) VALUES (?1, ?2, ?3)")?;
        for chunk in chunks {
            insert.execute(params![self.id, stored_key(chunk.first), chunk.data])?;
        }
        Ok(())
    }

    /// Records which chunks the segment has.
    fn end(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE segments SET first_chunk = (SELECT ifnull(min(id), 0) FROM chunks WHERE segment = ?1),
                                 last_chunk = (SELECT ifnull(max(id), -1) FROM chunks WHERE segment = ?1)
             WHERE id = ?1",
            [self.id],
        )?;
        Ok(())
    }

    /// Every segment, oldest (and lowest messages) first.
    fn all(db: &Connection) -> rusqlite::Result<Vec<Segment>> {
        let mut statement =
            db.prepare_cached("SELECT id, level, first_doc, last_doc, first_chunk, last_chunk FROM segments ORDER BY id")?;
        let rows = statement.query_map([], |r| {
            Ok(Segment {
                id: r.get(0)?,
                level: r.get(1)?,
                first_doc: r.get::<_, i64>(2)? as DocId,
                last_doc: r.get::<_, i64>(3)? as DocId,
                first_chunk: r.get(4)?,
                last_chunk: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    /// The segment's entries in gram order, read a chunk at a time.
    fn entries<'t>(&self, tx: &'t Transaction<'_>) -> impl Iterator<Item = Result<(Gram, Vec<Posting>), Failure>> + 't {
        let read = move |id: i64| -> Result<Vec<(Gram, Vec<Posting>)>, Failure> {
            let chunk = tx
                .prepare_cached("SELECT first, data FROM chunks WHERE id = ?1")?
                .query_row([id], chunk_from_row)?;
            Ok(postings::entries(chunk.first, &chunk.data)?)
        };
        (self.first_chunk..=self.last_chunk).flat_map(move |id| match read(id) {
            Ok(entries) => entries.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }

    fn drop_from(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        tx.execute("DELETE FROM chunks WHERE segment = ?1", [self.id])?;
        tx.execute("DELETE FROM segments WHERE id = ?1", [self.id])?;
        Ok(())
    }

    /// The postings of `gram` in this segment: from the last chunk that
    /// starts below it and the chunks that start at it.
    fn postings(&self, db: &Connection, gram: Gram) -> Result<Vec<Posting>, Failure> {
        let read = chunk_from_row;
        let mut chunks: Vec<Chunk> = db
            .prepare_cached("SELECT first, data FROM chunks WHERE segment = ?1 AND first < ?2 ORDER BY first DESC, id DESC LIMIT 1")?
            .query_map(params![self.id, stored_key(gram)], read)?
            .collect::<Result<_, _>>()?;
        let mut at = db.prepare_cached("SELECT first, data FROM chunks WHERE segment = ?1 AND first = ?2 ORDER BY id")?;
        for chunk in at.query_map(params![self.id, stored_key(gram)], read)? {
            chunks.push(chunk?);
        }
        Ok(postings::lookup(&chunks, gram)?)
    }
}

/// A posting key as SQLite's signed integer, in the same order (word keys
/// have the top bit set).
fn stored_key(key: Gram) -> i64 {
    (key ^ WORD_KEY) as i64
}

fn key_of_stored(stored: i64) -> Gram {
    stored as Gram ^ WORD_KEY
}

fn chunk_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Chunk> {
    Ok(Chunk {
        first: key_of_stored(r.get(0)?),
        data: r.get(1)?,
    })
}

/// How one text column is read: one message's, or every message's in a
/// range of ids.
#[derive(Clone, Copy)]
struct TextColumn {
    lookup: &'static str,
    scan: &'static str,
}

macro_rules! text_column {
    ($table:literal, $column:literal) => {
        TextColumn {
            lookup: concat!("SELECT ", $column, " FROM ", $table, " WHERE id = ?1"),
            scan: concat!("SELECT id, ", $column, " FROM ", $table, " WHERE id BETWEEN ?1 AND ?2 ORDER BY id"),
        }
    };
}

/// Each text column's bit, how it is read, and whether it is compressed;
/// in the order candidates are checked (short texts first).
const TEXT_COLUMNS: [(Columns, TextColumn, bool); 8] = [
    (SUBJECT, text_column!("texts", "subject"), false),
    (FROM, text_column!("texts", "from_addr"), false),
    (TO, text_column!("texts", "to_addr"), false),
    (CC, text_column!("texts", "cc_addr"), false),
    (BCC, text_column!("texts", "bcc_addr"), false),
    (FIELDS, text_column!("fields", "text"), true),
    (ALL_FIELDS, text_column!("all_fields", "text"), true),
    (BODY, text_column!("bodies", "text"), true),
];

/// Candidates are checked in one pass over their range of rows when at
/// least one row in this many is one.
const DENSE: u64 = 8;

fn compress(text: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(text.as_bytes())
}

/// Decompresses what [`compress`] wrote into `buffer`.
fn decompress<'b>(stored: &[u8], buffer: &'b mut Vec<u8>) -> Result<&'b [u8], Damaged> {
    let (size, packed) = lz4_flex::block::uncompressed_size(stored).map_err(|_| Damaged)?;
    buffer.resize(size, 0);
    let written = lz4_flex::block::decompress_into(packed, buffer).map_err(|_| Damaged)?;
    Ok(&buffer[..written])
}

/// A test of one stored text.
type TextCheck<'c> = dyn Fn(&[u8]) -> bool + 'c;

/// One SEARCH criterion's evaluation over one mailbox.
struct Search<'d> {
    index: &'d SearchIndex,
    db: &'d Connection,
    mailbox: MailboxId,
    /// The segments, read once for all the grams the criterion looks up.
    segments: &'d [Segment],
}

impl Search<'_> {
    /// The messages whose texts in `columns` hold `needle` (not empty).
    fn containing(&self, columns: Columns, needle: &str) -> Result<Vec<u32>, Failure> {
        self.select(columns, needle, None)
    }

    /// The messages whose texts in `columns` hold `needle` and for which
    /// `check` is true of one of those texts.
    fn checked(&self, columns: Columns, needle: &str, check: impl Fn(&str) -> bool) -> Result<Vec<u32>, Failure> {
        // Texts are stored from `String`s: valid UTF-8 unless damaged.
        let on_bytes = |text: &[u8]| std::str::from_utf8(text).is_ok_and(&check);
        self.select(columns, needle, Some(&on_bytes))
    }

    /// The words of the dictionary that contain `needle`, unless there
    /// are too many to look up one by one.
    fn words_containing(&self, needle: &str) -> Result<Option<Vec<WordId>>, Failure> {
        let dictionary = self.index.dictionary(self.db).map_err(|e| e.source)?;
        Ok(dictionary.as_ref().expect("loaded").containing(needle, WORDS_AT_MOST))
    }

    /// The messages with a top-level field named `name`.
    fn has_field(&self, name: &str) -> Result<Vec<u32>, Failure> {
        self.checked(FIELDS, &format!("{name}:"), |fields| fields_named(fields, name).next().is_some())
    }

    /// The messages whose texts in `columns` hold `needle`, and pass
    /// `check` when there is one (which implies holding `needle`). Only a
    /// needle of one gram without a check is answered by the index alone;
    /// otherwise the index gives candidates, each checked against its
    /// texts.
    fn select(&self, columns: Columns, needle: &str, check: Option<&TextCheck>) -> Result<Vec<u32>, Failure> {
        let exact = check.is_none();
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let contains = |text: &[u8]| finder.find(text).is_some();
        let check = check.unwrap_or(&contains);
        if let Some(gram) = grams::gram_of(needle) {
            let docs = postings::docs_in(&self.postings(gram)?, columns);
            return self.answer(&docs, columns, exact, check, &[]);
        }
        // Columns whose every word is in the dictionary: the messages
        // holding a word that contains the needle, exactly.
        let mut found = Vec::new();
        let mut rest = columns;
        if columns & WORD_COLUMNS != 0 && words::is_word(needle) {
            if let Some(words) = self.words_containing(needle)? {
                let mut docs = Vec::new();
                for word in words {
                    docs.extend(postings::docs_in(
                        &self.postings(WORD_KEY | u64::from(word))?,
                        columns & WORD_COLUMNS,
                    ));
                }
                docs.sort_unstable();
                docs.dedup();
                found = self.answer(&docs, columns & WORD_COLUMNS, exact, check, &[])?;
                rest = columns & !WORD_COLUMNS;
            }
        }
        if rest == 0 {
            return Ok(found);
        }
        // The others: the messages holding all the needle's trigrams,
        // each checked (but those found already).
        let mut docs: Option<Vec<DocId>> = None;
        for gram in grams::trigrams_of(needle) {
            let holding = postings::docs_in(&self.postings(gram)?, rest);
            let narrowed = match docs {
                Some(before) => postings::intersect(&before, &holding),
                None => holding,
            };
            let none_left = narrowed.is_empty();
            docs = Some(narrowed);
            if none_left {
                break;
            }
        }
        let more = self.answer(&docs.unwrap_or_default(), rest, false, check, &found)?;
        found.extend(more);
        found.sort_unstable();
        Ok(found)
    }

    /// The UIDs (ascending) of the messages `docs` (ascending) of the
    /// mailbox but those in `found` (ascending): all of them when `exact`,
    /// else those with a text in `columns` that passes `check`.
    fn answer(&self, docs: &[DocId], columns: Columns, exact: bool, check: &TextCheck, found: &[u32]) -> Result<Vec<u32>, Failure> {
        let mut candidates = self.in_mailbox(docs)?;
        candidates.retain(|(_, uid)| found.binary_search(uid).is_err());
        if exact {
            let mut uids: Vec<u32> = candidates.into_iter().map(|(_, uid)| uid).collect();
            uids.sort_unstable();
            return Ok(uids);
        }
        self.verify(candidates, columns, check)
    }

    /// The UIDs of the `candidates` (by message, ascending) one of whose
    /// texts in `columns` passes `check`, ascending.
    fn verify(&self, candidates: Vec<(DocId, u32)>, columns: Columns, check: &TextCheck) -> Result<Vec<u32>, Failure> {
        let mut found = Vec::new();
        let mut pending = candidates;
        let mut buffer = Vec::new();
        for &(bit, column, compressed) in &TEXT_COLUMNS {
            if columns & bit == 0 || pending.is_empty() {
                continue;
            }
            let mut passes = |stored: &[u8]| -> Result<bool, Damaged> {
                Ok(if compressed {
                    check(decompress(stored, &mut buffer)?)
                } else {
                    check(stored)
                })
            };
            let mut failed = Vec::new();
            let (first, last) = (pending[0].0, pending[pending.len() - 1].0);
            if (pending.len() as u64).saturating_mul(DENSE) > last - first {
                // Many of the rows in the range: one pass over them all is
                // cheaper than a lookup each.
                let mut statement = self.db.prepare_cached(column.scan)?;
                let mut rows = statement.query(params![first as i64, last as i64])?;
                let mut next = pending.iter().peekable();
                while let Some(row) = rows.next()? {
                    let id = row.get::<_, i64>(0)? as DocId;
                    while next.next_if(|(doc, _)| *doc < id).is_some() {}
                    if let Some(&(doc, uid)) = next.next_if(|(doc, _)| *doc == id) {
                        if passes(row.get_ref(1)?.as_bytes().map_err(rusqlite::Error::from)?)? {
                            found.push(uid);
                        } else {
                            failed.push((doc, uid));
                        }
                    }
                }
            } else {
                let mut statement = self.db.prepare_cached(column.lookup)?;
                for &(doc, uid) in &pending {
                    let text = statement
                        .query_row([doc as i64], |r| Ok(passes(r.get_ref(0)?.as_bytes()?)))
                        .optional()?;
                    match text.transpose()? {
                        Some(true) => found.push(uid),
                        _ => failed.push((doc, uid)),
                    }
                }
            }
            pending = failed;
        }
        found.sort_unstable();
        Ok(found)
    }

    /// The postings of `gram` in every segment, ascending.
    fn postings(&self, gram: Gram) -> Result<Vec<Posting>, Failure> {
        let mut out = Vec::new();
        for segment in self.segments {
            out.extend(segment.postings(self.db, gram)?);
        }
        Ok(out)
    }

    /// Which of `docs` (ascending) are messages of the mailbox, with
    /// their UIDs; postings of messages no longer indexed drop out here.
    fn in_mailbox(&self, docs: &[DocId]) -> Result<Vec<(DocId, u32)>, Failure> {
        if docs.len() <= LOOKUPS_AT_MOST {
            let mut statement = self.db.prepare_cached("SELECT uid FROM messages WHERE id = ?1 AND mailbox = ?2")?;
            let mut out = Vec::with_capacity(docs.len());
            for &doc in docs {
                if let Some(uid) = statement.query_row(params![doc as i64, self.mailbox.0], |r| r.get(0)).optional()? {
                    out.push((doc, uid));
                }
            }
            return Ok(out);
        }
        let mut statement = self.db.prepare_cached("SELECT id, uid FROM messages WHERE mailbox = ?1")?;
        let mut all: Vec<(DocId, u32)> = statement
            .query_map([self.mailbox.0], |r| Ok((r.get::<_, i64>(0)? as DocId, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        all.sort_unstable();
        Ok(all.into_iter().filter(|(doc, _)| docs.binary_search(doc).is_ok()).collect())
    }
}

/// A size bound as SQLite's integer (sizes never come near the limit).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::{Keystore, PassphraseSource};

    fn account(email: &str) -> (tempfile::TempDir, UnlockedKey) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Keystore::open(dir.path()).unwrap();
        store.generate(email, None, false).unwrap();
        let key = store.unlock(store.own_key(email).unwrap(), &PassphraseSource::None).unwrap();
        (dir, key)
    }

    fn doc(subject: &str, body: &str, size: u64) -> Document {
        Document {
            subject: subject.into(),
            fields: format!("\nSUBJECT:{subject}\nX-TAG:ALPHA"),
            body: body.into(),
            size,
            ..Document::default()
        }
    }

    /// Many puts (so segments merge), replacements, expunges and a second
    /// mailbox; every answer equals a plain substring search over the
    /// documents.
    #[test]
    fn answers_equal_a_plain_scan_across_merges_and_removals() {
        let (_keys, key) = account("a@example.org");
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        let (inbox, other) = (index.mailbox(b"INBOX", 1).unwrap(), index.mailbox(b"Other", 1).unwrap());
        let mut seed = 7u64;
        let mut word = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ['A', 'B', 'C', 'É', ' ', '\n'][(seed >> 33) as usize % 6]
                })
                .collect()
        };
        let mut docs = std::collections::BTreeMap::new();
        for uid in 1..=300u32 {
            let d = Document {
                subject: word(6),
                fields: format!("\nSUBJECT:{}\nX-TAG:{}", word(5), word(4)),
                all_fields: word(12),
                body: word(40),
                ..Document::default()
            };
            // Single puts and batches of three, as the proxy does both.
            if uid % 4 == 0 {
                let batch: Vec<Document> = (0..3)
                    .map(|_| Document {
                        body: word(30),
                        ..d.clone()
                    })
                    .collect();
                let entries: Vec<(u32, Option<i64>, &Document)> =
                    batch.iter().enumerate().map(|(k, d)| (uid * 1000 + k as u32, None, d)).collect();
                index.put_all(inbox, &entries).unwrap();
                for (k, d) in batch.into_iter().enumerate() {
                    docs.insert(uid * 1000 + k as u32, d);
                }
            }
            index.put(inbox, uid, None, &d).unwrap();
            index.put(other, uid, None, &d).unwrap();
            docs.insert(uid, d);
            if uid % 10 == 0 {
                // Replaced: the old postings must not answer any more.
                let d = Document {
                    body: word(40),
                    ..docs[&(uid - 5)].clone()
                };
                index.put(inbox, uid - 5, None, &d).unwrap();
                docs.insert(uid - 5, d);
            }
        }
        let kept: Vec<u32> = docs.keys().copied().filter(|u| u % 7 != 0).collect();
        index.sync(inbox, &kept).unwrap();
        docs.retain(|u, _| u % 7 != 0);
        let levels: Vec<i64> = Segment::all(&index.lock()).unwrap().iter().map(|s| s.level).collect();
        assert!(levels.iter().any(|&l| l >= 2), "{levels:?}");
        for n in 1..=6 {
            for _ in 0..25 {
                let needle = word(n).replace('\n', "");
                if needle.is_empty() {
                    continue;
                }
                let scan = |f: &dyn Fn(&Document) -> bool| -> Vec<u32> { docs.iter().filter(|(_, d)| f(d)).map(|(u, _)| *u).collect() };
                let m = |c: Criterion| index.matching(inbox, &c).unwrap();
                let n = needle.as_str();
                assert_eq!(m(Criterion::Body(needle.clone())), scan(&|d| d.body.contains(n)), "BODY {n:?}");
                assert_eq!(
                    m(Criterion::Text(needle.clone())),
                    scan(&|d| d.all_fields.contains(n) || d.body.contains(n)),
                    "TEXT {n:?}"
                );
                assert_eq!(
                    m(Criterion::Field(Field::Subject, needle.clone())),
                    scan(&|d| d.subject.contains(n))
                );
                assert_eq!(
                    m(Criterion::Header("X-TAG".into(), needle.clone())),
                    scan(&|d| d.fields_named("X-TAG").any(|v| v.contains(n))),
                    "HEADER {n:?}"
                );
            }
        }
        assert_eq!(
            index.matching(inbox, &Criterion::Header("X-TAG".into(), String::new())).unwrap(),
            docs.keys().copied().collect::<Vec<_>>()
        );
        assert_eq!(
            index.matching(inbox, &Criterion::Header("X-TA".into(), String::new())).unwrap(),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn order_keys_round_trip() {
        let keys = OrderKeys {
            base_subject: Some("HI THERE".into()),
            reply_or_forward: true,
            from: "A".into(),
            to: String::new(),
            cc: "C".into(),
            display_from: "ALICE".into(),
            display_to: "B@X".into(),
            date: -5,
            message_id: None,
            references: vec!["a@b".into(), "c@d".into()],
        };
        assert_eq!(decode_order_keys(&encode_order_keys(&keys)), keys);
        let empty = OrderKeys::default();
        assert_eq!(decode_order_keys(&encode_order_keys(&empty)), empty);
    }

    #[test]
    fn finds_substrings_and_nothing_else_and_keeps_nothing_readable() {
        let (_keys, key) = account("a@example.org");
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        let inbox = index.mailbox(b"INBOX", 7).unwrap();
        index.put(inbox, 1, None, &doc("HELLO ZEBRAQUARTZ", "FIRST BODY", 100)).unwrap();
        index.put(inbox, 2, Some(0), &doc("OTHER", "SECOND ZEBRAQUARTZ BODY", 300)).unwrap();
        index.put(inbox, 3, Some(0), &doc("X", "AB", 50)).unwrap();
        let m = |c: Criterion| index.matching(inbox, &c).unwrap();
        assert_eq!(m(Criterion::Field(Field::Subject, "BRAQ".into())), [1]);
        assert_eq!(m(Criterion::Body("ZEBRAQUARTZ".into())), [2]);
        assert_eq!(m(Criterion::Body("B".into())), [1, 2, 3]);
        assert_eq!(m(Criterion::Body("AB".into())), [3]);
        assert_eq!(m(Criterion::Body("\"".into())), Vec::<u32>::new());
        assert_eq!(m(Criterion::Body("A\"B\"C".into())), Vec::<u32>::new());
        assert_eq!(m(Criterion::Header("X-TAG".into(), "LPH".into())), [1, 2, 3]);
        assert_eq!(m(Criterion::Header("SUBJECT".into(), "LPH".into())), Vec::<u32>::new());
        assert_eq!(m(Criterion::Field(Field::From, "".into())), Vec::<u32>::new());
        assert_eq!(m(Criterion::Field(Field::Subject, "".into())), [1, 2, 3]);
        assert_eq!(m(Criterion::Larger(100)), [2]);
        assert_eq!(m(Criterion::Smaller(100)), [3]);
        assert_eq!(index.sync(inbox, &[2, 3, 4]).unwrap(), [4]);
        assert_eq!(index.uids(inbox).unwrap(), [2, 3]);
        // A new UIDVALIDITY starts the mailbox afresh.
        let inbox = index.mailbox(b"INBOX", 8).unwrap();
        assert_eq!(index.uids(inbox).unwrap(), Vec::<u32>::new());
        index.put(inbox, 1, None, &doc("HELLO ZEBRAQUARTZ", "FIRST BODY", 100)).unwrap();
        drop(index);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(11).any(|w| w == b"ZEBRAQUARTZ"));
        }
        // Reopened with the same key, the index is there.
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        let inbox = index.mailbox(b"INBOX", 8).unwrap();
        assert_eq!(
            index.matching(inbox, &Criterion::Field(Field::Subject, "ZEBRA".into())).unwrap(),
            [1]
        );
        // Another account's key cannot open it.
        let (_other, other) = account("b@example.org");
        drop(index);
        assert!(matches!(
            SearchIndex::open(dir.path(), &other),
            Err(StoreError::KeyUnreadable { .. })
        ));
    }

    /// What the background indexer keeps per mailbox for CONDSTORE and
    /// QRESYNC, and how it applies a server's report of changes.
    #[test]
    fn changes_since_a_modseq() {
        let (_keys, key) = account("a@example.org");
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        assert_eq!(index.synced(b"INBOX").unwrap(), None);
        let inbox = index.mailbox(b"INBOX", 5).unwrap();
        for uid in 1..=4 {
            index.put(inbox, uid, None, &doc("S", "B", 10)).unwrap();
        }
        assert_eq!(index.synced(b"INBOX").unwrap(), Some((5, None)));
        index.set_synced(inbox, 900).unwrap();
        assert_eq!(index.synced(b"INBOX").unwrap(), Some((5, Some(900))));
        // 2 expunged, 4's flags changed, 5 and 6 new: 5 messages now.
        assert_eq!(index.apply_changes(inbox, &[2, 77], &[6, 4, 5], 5).unwrap(), Some(vec![5, 6]));
        assert_eq!(index.uids(inbox).unwrap(), [1, 3, 4]);
        assert_eq!(index.stats().unwrap()[0].on_server, Some(5));
        // Counts that do not add up (a message the index never saw)
        // change nothing: the caller lists every UID instead.
        assert_eq!(index.apply_changes(inbox, &[1], &[7], 4).unwrap(), None);
        assert_eq!(index.uids(inbox).unwrap(), [1, 3, 4]);
        // A new UIDVALIDITY forgets the mod-sequence with the messages.
        index.mailbox(b"INBOX", 6).unwrap();
        assert_eq!(index.synced(b"INBOX").unwrap(), Some((6, None)));
    }

    /// A version 7 index (before mod-sequences and header-only
    /// messages) is brought up to date, not emptied.
    #[test]
    fn a_version_7_index_is_migrated() {
        let (_keys, key) = account("a@example.org");
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        let inbox = index.mailbox(b"INBOX", 5).unwrap();
        index.put(inbox, 3, None, &doc("OLDSUBJECT", "B", 10)).unwrap();
        index
            .lock()
            .execute_batch(
                "ALTER TABLE mailboxes DROP COLUMN modseq; ALTER TABLE messages DROP COLUMN coverage;
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        drop(index);
        let index = SearchIndex::open(dir.path(), &key).unwrap();
        let inbox = index.mailbox(b"INBOX", 5).unwrap();
        assert_eq!(index.uids(inbox).unwrap(), [3]);
        assert_eq!(index.covered(inbox, Coverage::OverLimit).unwrap(), Vec::<u32>::new());
        for (uid, coverage) in [(4, Coverage::OverLimit), (5, Coverage::PlaintextHeader)] {
            let partial = Document {
                coverage,
                ..doc("BIG", "", 1 << 30)
            };
            index.put(inbox, uid, None, &partial).unwrap();
        }
        assert_eq!(index.covered(inbox, Coverage::OverLimit).unwrap(), [4]);
        assert_eq!(index.covered(inbox, Coverage::Whole).unwrap(), [3]);
        let stats = &index.stats().unwrap()[0];
        assert_eq!((stats.messages, stats.over_limit, stats.plaintext_headers), (3, 1, 1));
        index.set_synced(inbox, 10).unwrap();
        assert_eq!(index.forget_plaintext_headers().unwrap(), 1);
        assert_eq!(index.uids(inbox).unwrap(), [3, 4]);
        assert_eq!(index.synced(b"INBOX").unwrap(), Some((5, None)));
        assert_eq!(index.synced(b"INBOX").unwrap(), Some((5, None)));
    }
}
