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
//! - `messages`: mailbox, UID, size and sent date of each indexed message.
//! - `texts`: an FTS5 table with the trigram tokenizer over the text
//!   columns of [`Document`] (already in search form, so case-sensitive
//!   trigrams give exact substring matches). A string of three characters
//!   or more is found through the trigram index; a shorter one by a scan.
//!
//! What is stored is derived from mail that stays on the server: the
//! directory can be deleted at any time and is rebuilt.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use super::masterkey::{KeyFile, MasterKey};
use super::{io_error, StoreError};
use crate::pgp::UnlockedKey;
use crate::search::{fields_named, Criterion, Document, Field, OrderKeys, OrderRow};

/// The index's master key.
const INDEX_KEY: KeyFile = KeyFile {
    name: "index-key.pgp",
    magic: b"sealpost search index key v1\n",
    store: "search index",
};
/// Derives the database key from the master key.
const DATABASE_LABEL: &[u8] = b"sealpost search index v1: database";
const DATABASE_FILE: &str = "index.db";
/// The layout's version (`PRAGMA user_version`); an index of another
/// version is emptied and rebuilt.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA temp_store = MEMORY;
    PRAGMA foreign_keys = ON;
    PRAGMA busy_timeout = 10000;
    CREATE TABLE IF NOT EXISTS mailboxes (
        id INTEGER PRIMARY KEY,
        name BLOB NOT NULL UNIQUE,
        uidvalidity INTEGER NOT NULL,
        on_server INTEGER,
        checked INTEGER
    );
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sent INTEGER NOT NULL,
        arrival INTEGER,
        order_keys BLOB NOT NULL,
        UNIQUE (mailbox, uid)
    );
    CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(
        subject, from_addr, to_addr, cc_addr, bcc_addr, fields, all_fields, body,
        tokenize = 'trigram case_sensitive 1'
    );
";

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
    source: rusqlite::Error,
}

/// One account's search index; see the module documentation.
///
/// Every method is synchronous and takes the connection's lock for its
/// duration: call them through `tokio::task::spawn_blocking`.
pub struct SearchIndex {
    dir: PathBuf,
    db: Mutex<Connection>,
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
        if fresh {
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
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
        // The first read proves the key (SQLCipher reports "file is not a
        // database" otherwise).
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unreadable)?;
        if version != SCHEMA_VERSION {
            db.execute_batch(&format!(
                "DROP TABLE IF EXISTS texts; DROP TABLE IF EXISTS messages; DROP TABLE IF EXISTS mailboxes; PRAGMA user_version = {SCHEMA_VERSION};"
            ))
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
        })
    }

    /// Where the index of the account `login` lives under `data_dir`.
    pub fn dir_for(data_dir: &Path, login: &str) -> PathBuf {
        data_dir.join("index").join(super::account_dir_name(login))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
        |source| IndexError {
            dir: self.dir.clone(),
            source,
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
                db.execute(
                    "DELETE FROM texts WHERE rowid IN (SELECT id FROM messages WHERE mailbox = ?1)",
                    [id],
                )
                .map_err(self.error())?;
                db.execute("DELETE FROM messages WHERE mailbox = ?1", [id]).map_err(self.error())?;
                db.execute("UPDATE mailboxes SET uidvalidity = ?2 WHERE id = ?1", params![id, uidvalidity])
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
        let db = self.lock();
        let mut statement = db
            .prepare_cached("SELECT uid FROM messages WHERE mailbox = ?1 ORDER BY uid")
            .map_err(self.error())?;
        let uids = statement
            .query_map([mailbox.0], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<u32>, _>>())
            .map_err(self.error())?;
        Ok(uids)
    }

    /// Stores (or replaces) what message `uid` of `mailbox`, which
    /// arrived at `arrival` (its INTERNALDATE, seconds since the epoch;
    /// `None` when not known yet, see [`Self::set_arrivals`]), offers to
    /// SEARCH, SORT and THREAD.
    pub fn put(&self, mailbox: MailboxId, uid: u32, arrival: Option<i64>, document: &Document) -> Result<(), IndexError> {
        self.put_all(mailbox, &[(uid, arrival, document)])
    }

    /// [`Self::put`] for several messages in one transaction (one commit
    /// instead of one each, which is most of what a put costs).
    pub fn put_all(&self, mailbox: MailboxId, messages: &[(u32, Option<i64>, &Document)]) -> Result<(), IndexError> {
        let mut db = self.lock();
        let tx = db.transaction().map_err(self.error())?;
        for &(uid, arrival, document) in messages {
            let old: Option<i64> = tx
                .query_row(
                    "SELECT id FROM messages WHERE mailbox = ?1 AND uid = ?2",
                    params![mailbox.0, uid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.error())?;
            if let Some(old) = old {
                tx.execute("DELETE FROM texts WHERE rowid = ?1", [old]).map_err(self.error())?;
                tx.execute("DELETE FROM messages WHERE id = ?1", [old]).map_err(self.error())?;
            }
            tx.execute(
                "INSERT INTO messages (mailbox, uid, size, sent, arrival, order_keys) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    mailbox.0,
                    uid,
                    document.size as i64,
                    document.sent,
                    arrival,
                    encode_order_keys(&document.order)
                ],
            )
            .map_err(self.error())?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO texts (rowid, subject, from_addr, to_addr, cc_addr, bcc_addr, fields, all_fields, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    document.subject,
                    document.from,
                    document.to,
                    document.cc,
                    document.bcc,
                    document.fields,
                    document.all_fields,
                    document.body
                ],
            )
            .map_err(self.error())?;
        }
        tx.commit().map_err(self.error())
    }

    /// Takes `on_server` (ascending) as every UID `mailbox` holds at the
    /// server now: forgets the messages not in it (expunged), records
    /// the count for `index status`, and returns the UIDs not indexed yet.
    pub fn sync(&self, mailbox: MailboxId, on_server: &[u32]) -> Result<Vec<u32>, IndexError> {
        let indexed = self.uids(mailbox)?;
        let gone: Vec<u32> = indexed.iter().copied().filter(|u| on_server.binary_search(u).is_err()).collect();
        let missing = on_server.iter().copied().filter(|u| indexed.binary_search(u).is_err()).collect();
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
        let fresh = known == Some(on_server.len() as i64) && checked.is_some_and(|t| now - t < 60);
        if gone.is_empty() && fresh {
            return Ok(missing);
        }
        let tx = db.transaction().map_err(self.error())?;
        tx.execute(
            "UPDATE mailboxes SET on_server = ?2, checked = ?3 WHERE id = ?1",
            params![mailbox.0, on_server.len() as i64, now],
        )
        .map_err(self.error())?;
        for uid in &gone {
            tx.execute(
                "DELETE FROM texts WHERE rowid = (SELECT id FROM messages WHERE mailbox = ?1 AND uid = ?2)",
                params![mailbox.0, uid],
            )
            .map_err(self.error())?;
            tx.execute("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2", params![mailbox.0, uid])
                .map_err(self.error())?;
        }
        tx.commit().map_err(self.error())?;
        Ok(missing)
    }

    /// The UIDs of `mailbox`'s indexed messages that `criterion` selects,
    /// ascending. Exact: the trigram index only finds candidates where a
    /// string is long enough, and everything it finds is a match.
    pub fn matching(&self, mailbox: MailboxId, criterion: &Criterion) -> Result<Vec<u32>, IndexError> {
        let db = self.lock();
        let by_text = |columns: &str, needle: &str| -> Result<Vec<u32>, IndexError> {
            if needle.chars().count() >= 3 {
                let query = format!("{{{columns}}} : \"{}\"", needle.replace('"', "\"\""));
                self.uids_where(&db, "texts MATCH ?2", mailbox, &query)
            } else {
                let condition = columns
                    .split(' ')
                    .map(|c| format!("instr(texts.{c}, ?2) > 0"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                self.uids_where(&db, &condition, mailbox, needle)
            }
        };
        let has_field = |name: &str| self.uids_where(&db, "instr(texts.fields, ?2) > 0", mailbox, &format!("\n{name}:"));
        let by_number = |condition: &str, value: i64| -> Result<Vec<u32>, IndexError> {
            let sql = format!("SELECT uid FROM messages WHERE mailbox = ?1 AND {condition} ORDER BY uid");
            let mut statement = db.prepare_cached(&sql).map_err(self.error())?;
            let rows = statement.query_map(params![mailbox.0, value], |r| r.get(0));
            rows.and_then(|rows| rows.collect()).map_err(self.error())
        };
        match criterion {
            Criterion::Field(field, needle) if needle.is_empty() => has_field(field.header_name()),
            Criterion::Field(field, needle) => by_text(column(*field), needle),
            Criterion::Header(name, needle) if needle.is_empty() => has_field(name),
            Criterion::Header(name, needle) => {
                // Candidates hold the string in some field; keep those
                // where a field of that name holds it.
                let candidates = by_text("fields", needle)?;
                let mut statement = db
                    .prepare_cached("SELECT t.fields FROM texts t JOIN messages m ON m.id = t.rowid WHERE m.mailbox = ?1 AND m.uid = ?2")
                    .map_err(self.error())?;
                let mut found = Vec::new();
                for uid in candidates {
                    let fields: String = statement.query_row(params![mailbox.0, uid], |r| r.get(0)).map_err(self.error())?;
                    if fields_named(&fields, name).any(|value| value.contains(needle.as_str())) {
                        found.push(uid);
                    }
                }
                Ok(found)
            }
            Criterion::Body(needle) if needle.is_empty() => by_number("1 = ?2", 1),
            Criterion::Body(needle) => by_text("body", needle),
            Criterion::Text(needle) if needle.is_empty() => by_number("1 = ?2", 1),
            Criterion::Text(needle) => by_text("all_fields body", needle),
            Criterion::Larger(n) => by_number("size > ?2", clamp(*n)),
            Criterion::Smaller(n) => by_number("size < ?2", clamp(*n)),
            Criterion::SentBefore(day) => by_number("sent < ?2", *day),
            Criterion::SentOn(day) => by_number("sent >= ?2 AND sent - 86400 < ?2", *day),
            Criterion::SentSince(day) => by_number("sent >= ?2", *day),
        }
    }

    fn uids_where(&self, db: &Connection, condition: &str, mailbox: MailboxId, value: &str) -> Result<Vec<u32>, IndexError> {
        let sql =
            format!("SELECT m.uid FROM texts JOIN messages m ON m.id = texts.rowid WHERE m.mailbox = ?1 AND ({condition}) ORDER BY m.uid");
        let mut statement = db.prepare_cached(&sql).map_err(self.error())?;
        let rows = statement.query_map(params![mailbox.0, value], |r| r.get(0));
        rows.and_then(|rows| rows.collect()).map_err(self.error())
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
        let db = self.lock();
        let mut statement = db
            .prepare_cached("SELECT uid FROM messages WHERE mailbox = ?1 AND arrival IS NULL ORDER BY uid")
            .map_err(self.error())?;
        let rows = statement.query_map([mailbox.0], |r| r.get(0));
        rows.and_then(|rows| rows.collect()).map_err(self.error())
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
                "SELECT b.name, count(m.id), b.on_server, b.checked FROM mailboxes b
                 LEFT JOIN messages m ON m.mailbox = b.id GROUP BY b.id ORDER BY b.name",
            )
            .map_err(self.error())?;
        let rows = statement.query_map([], |r| {
            Ok(MailboxStats {
                name: r.get(0)?,
                messages: r.get::<_, i64>(1)? as u64,
                on_server: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                checked: r.get(3)?,
            })
        });
        rows.and_then(|rows| rows.collect()).map_err(self.error())
    }

    /// Forgets everything: the index is rebuilt from the server as
    /// clients search and by the background indexer.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.lock()
            .execute_batch("DELETE FROM texts; DELETE FROM messages; DELETE FROM mailboxes;")
            .map_err(self.error())
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

fn column(field: Field) -> &'static str {
    match field {
        Field::Subject => "subject",
        Field::From => "from_addr",
        Field::To => "to_addr",
        Field::Cc => "cc_addr",
        Field::Bcc => "bcc_addr",
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
}
