//! [`MessageCache`]: decrypted messages, encrypted at rest, bounded in
//! size with least-recently-used eviction.
//!
//! # Layout of a cache directory (one per account)
//!
//! - `cache-key.pgp`: 32 random bytes, the cache's master key, encrypted
//!   to the account's own certificate and signed by it (OpenPGP). Only the
//!   unlocked account key opens it, and a key file planted by someone who
//!   knows only the public certificate is refused.
//! - One file per entry, named by 64 hex digits: HMAC-SHA256 over the
//!   canonical encoding of the [`EntryKey`] (mailbox length, mailbox
//!   bytes, UIDVALIDITY, UID) under a key derived from the master key. The
//!   names reveal neither mailbox nor UID, and are stable across restarts.
//! - Entry content: `SPc1`, a fresh random 96-bit nonce, then the message
//!   sealed with ChaCha20-Poly1305 under a second derived key, the
//!   associated data being the entry key's encoding: an entry moved to
//!   another entry's name, altered or truncated fails to open.
//! - `.tmp-*`: entries being written (removed at open if left by a crash).
//!
//! File sizes (message size plus 32 bytes) and modification times (last
//! use) are visible; nothing else is.
//!
//! # Size bound and eviction
//!
//! An in-memory index (entry name, size, last use) is built at open from
//! the directory, the files' modification times giving the order. After
//! each put the least recently used entries are removed until the entry
//! files together take at most `max_bytes`; a get counts as a use and
//! also sets the file's modification time, so the order survives a
//! restart. An entry larger than `max_bytes` alone is not stored.
//!
//! # Concurrency
//!
//! One `MessageCache` (shared in an `Arc`) serves every session of the
//! account: the index sits behind a mutex held only for bookkeeping,
//! renames and evictions, never while reading, writing or encrypting a
//! whole entry. One process, and one `MessageCache`, per directory:
//! two instances on the same directory would each keep their own index.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::masterkey::{KeyFile, MasterKey};
use super::{io_error, StoreError};
use crate::pgp::UnlockedKey;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The cache's master key.
const CACHE_KEY: KeyFile = KeyFile {
    name: "cache-key.pgp",
    magic: b"sealpost message cache key v1\n",
    store: "message cache",
};
/// Labels deriving the two working keys from the master key.
const NAMES_LABEL: &[u8] = b"sealpost message cache v1: entry names";
const SEALING_LABEL: &[u8] = b"sealpost message cache v1: entry contents";
/// The first bytes of every entry file (format version).
const ENTRY_MAGIC: &[u8; 4] = b"SPc1";
const HEADER_LEN: usize = ENTRY_MAGIC.len() + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Bytes an entry file holds beyond the message.
const OVERHEAD: u64 = (HEADER_LEN + TAG_LEN) as u64;
/// Prefix of entries being written.
const TMP_PREFIX: &str = ".tmp-";

/// An entry name: the HMAC of its key.
type EntryId = [u8; 32];

/// What identifies a cached message within one account's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey<'a> {
    /// The mailbox name exactly as the server spells it (raw bytes, as on
    /// the wire after literal/quoted decoding). Callers normalise `INBOX`
    /// themselves if they want its case-insensitivity.
    pub mailbox: &'a [u8],
    /// The mailbox's UIDVALIDITY: entries under an old value are never
    /// asked for again and age out through eviction.
    pub uidvalidity: u32,
    /// The message's UID.
    pub uid: u32,
}

impl EntryKey<'_> {
    /// The canonical, unambiguous encoding: length-prefixed mailbox, then
    /// UIDVALIDITY and UID, big-endian.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_MAGIC.len() + 8 + self.mailbox.len() + 8);
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&(self.mailbox.len() as u64).to_be_bytes());
        out.extend_from_slice(self.mailbox);
        out.extend_from_slice(&self.uidvalidity.to_be_bytes());
        out.extend_from_slice(&self.uid.to_be_bytes());
        out
    }
}

/// The decrypted-message cache of one account; see the module
/// documentation for the format and guarantees.
///
/// Every method is synchronous. [`get`](Self::get) and
/// [`put`](Self::put) read or write a whole entry (blocking file I/O and
/// encryption proportional to the message size, milliseconds for
/// messages of a few MB); from async code call them through
/// `tokio::task::spawn_blocking`. The index lock is never held during
/// that work, so sessions do not wait on one another's messages.
pub struct MessageCache {
    dir: PathBuf,
    max_bytes: u64,
    names: hmac::Key,
    sealing: LessSafeKey,
    rng: SystemRandom,
    index: Mutex<Index>,
}

impl std::fmt::Debug for MessageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("len_bytes", &self.len_bytes())
            .finish_non_exhaustive()
    }
}

impl MessageCache {
    /// Opens the cache in `dir` (created 0700 if needed) for the account
    /// whose unlocked key is `key`, keeping at most `max_bytes` of entry
    /// files.
    ///
    /// The first open makes the master key and stores it encrypted to, and
    /// signed by, `key`'s certificate (`key` must be able to sign and
    /// encrypt, as every key Sealpost generates can); entry files left
    /// without a key file are unreadable and are removed. Later opens
    /// decrypt it with `key`. When that fails (another account's key, a
    /// damaged or replaced key file) the cache is refused with
    /// [`StoreError::KeyUnreadable`], which names the directory and says it
    /// can be deleted: nothing is removed or overwritten automatically.
    pub fn open(dir: &Path, key: &UnlockedKey, max_bytes: u64) -> Result<MessageCache, StoreError> {
        crate::files::create_private_dir(dir).map_err(io_error(dir, "create the directory"))?;
        let rng = SystemRandom::new();
        let (master, fresh) = MasterKey::open_or_create(dir, &CACHE_KEY, key)?;
        let names = hmac::Key::new(hmac::HMAC_SHA256, &master.derive(NAMES_LABEL));
        let sealing_key = master.derive(SEALING_LABEL);
        let sealing = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &sealing_key).expect("a 32-byte key"));
        drop(master);
        let index = scan(dir, fresh)?;
        let cache = MessageCache {
            dir: dir.to_path_buf(),
            max_bytes,
            names,
            sealing,
            rng,
            index: Mutex::new(index),
        };
        {
            let mut index = cache.lock();
            cache.evict(&mut index);
            tracing::debug!(dir = %dir.display(), entries = index.slots.len(), bytes = index.total, "opened the message cache");
        }
        Ok(cache)
    }

    /// The cached message for `key`, if there is one. A use for eviction.
    ///
    /// An entry that fails to open (damaged, truncated, tampered with, or
    /// moved from another entry's name) is removed and reported as a
    /// warning without any detail of its content; the caller sees `None`
    /// and fetches the message again. Blocking: reads the whole entry.
    pub fn get(&self, key: &EntryKey) -> Option<Vec<u8>> {
        let encoded = key.encode();
        let id = self.id(&encoded);
        let generation = self.lock().touch(&id)?;
        let path = self.path(&id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    // Evicted meanwhile, or removed behind our back.
                    self.forget_if_missing(&id, generation);
                } else {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read a message cache entry");
                }
                return None;
            }
        };
        let mut sealed = Vec::new();
        if let Err(e) = file.read_to_end(&mut sealed) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read a message cache entry");
            return None;
        }
        // Keeps the LRU order across restarts; failing only costs that.
        let _ = file.set_modified(SystemTime::now());
        drop(file);
        match self.open_entry(&encoded, sealed) {
            Some(message) => Some(message),
            None => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "a message cache entry failed its integrity check (damaged or tampered with) and was removed"
                );
                self.discard(&id, generation);
                None
            }
        }
    }

    /// Stores `message` under `key`, replacing any earlier entry, then
    /// evicts least recently used entries down to the size bound. Returns
    /// `Ok(false)`, storing nothing and removing any earlier entry, when
    /// the entry alone would exceed the bound.
    ///
    /// Blocking: encrypts and writes the whole message (no fsync: after a
    /// crash an entry may be missing or damaged, and a damaged one is
    /// detected and dropped by [`get`](Self::get)).
    pub fn put(&self, key: &EntryKey, message: &[u8]) -> Result<bool, StoreError> {
        let encoded = key.encode();
        let id = self.id(&encoded);
        let size = message.len() as u64 + OVERHEAD;
        if size > self.max_bytes {
            self.remove_id(&id)?;
            return Ok(false);
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| StoreError::Io {
            path: self.dir.clone(),
            action: "get random bytes for an entry of",
            source: io::Error::other("the system random number generator failed"),
        })?;
        let mut sealed = Vec::with_capacity(size as usize);
        sealed.extend_from_slice(ENTRY_MAGIC);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(message);
        let tag = self
            .sealing
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&encoded[..]),
                &mut sealed[HEADER_LEN..],
            )
            .expect("ChaCha20-Poly1305 seals any message that fits in memory");
        sealed.extend_from_slice(tag.as_ref());
        debug_assert_eq!(sealed.len() as u64, size);

        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(io_error(&self.dir, "create a temporary file in"))?;
        tmp.write_all(&sealed).map_err(io_error(tmp.path(), "write"))?;
        let path = self.path(&id);
        let mut index = self.lock();
        // Renamed under the lock so that the index and the directory agree.
        tmp.persist(&path)
            .map_err(|e| io_error(&path, "rename a temporary file to")(e.error))?;
        index.insert(id, size);
        self.evict(&mut index);
        Ok(true)
    }

    /// Removes the entry for `key`, if any.
    pub fn remove(&self, key: &EntryKey) -> Result<(), StoreError> {
        self.remove_id(&self.id(&key.encode()))
    }

    /// Bytes the entry files take together (messages plus 32 bytes each).
    pub fn len_bytes(&self) -> u64 {
        self.lock().total
    }

    /// The number of entries.
    pub fn entry_count(&self) -> usize {
        self.lock().slots.len()
    }

    /// The size bound given at open.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index stays consistent between statements; a panic elsewhere
        // while it was held does not make it unusable.
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn id(&self, encoded: &[u8]) -> EntryId {
        let tag = hmac::sign(&self.names, encoded);
        let mut id = [0u8; 32];
        id.copy_from_slice(tag.as_ref());
        id
    }

    fn path(&self, id: &EntryId) -> PathBuf {
        self.dir.join(hex(id))
    }

    /// The message in an entry file, or `None` if it does not open.
    fn open_entry(&self, encoded: &[u8], mut sealed: Vec<u8>) -> Option<Vec<u8>> {
        if (sealed.len() as u64) < OVERHEAD || &sealed[..ENTRY_MAGIC.len()] != ENTRY_MAGIC {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[ENTRY_MAGIC.len()..HEADER_LEN]).ok()?;
        let len = self
            .sealing
            .open_in_place(nonce, Aad::from(encoded), &mut sealed[HEADER_LEN..])
            .ok()?
            .len();
        sealed.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
        sealed.truncate(len);
        Some(sealed)
    }

    /// Drops the entry if no put replaced it since `generation`.
    fn discard(&self, id: &EntryId, generation: u64) {
        let mut index = self.lock();
        if index.slots.get(id).is_some_and(|slot| slot.generation == generation) {
            index.remove(id);
            self.unlink(id);
        }
    }

    /// Forgets an entry whose file has disappeared, unless it was put again.
    fn forget_if_missing(&self, id: &EntryId, generation: u64) {
        let mut index = self.lock();
        if index.slots.get(id).is_some_and(|slot| slot.generation == generation) && !self.path(id).exists() {
            index.remove(id);
        }
    }

    fn remove_id(&self, id: &EntryId) -> Result<(), StoreError> {
        let mut index = self.lock();
        if index.remove(id).is_some() {
            let path = self.path(id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, "remove")(e)),
            }
        }
        Ok(())
    }

    /// Removes least recently used entries until the bound holds.
    fn evict(&self, index: &mut Index) {
        while index.total > self.max_bytes {
            let Some(id) = index.pop_lru() else { break };
            self.unlink(&id);
        }
    }

    /// Removes an entry file the index no longer lists; a failure only
    /// leaves a file that the next open counts again.
    fn unlink(&self, id: &EntryId) {
        match fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a message cache entry"),
        }
    }
}

/// One entry in the index.
struct Slot {
    size: u64,
    /// Position in the use order (larger: more recent).
    tick: u64,
    /// Changes whenever the entry is put, so that a get that found a bad
    /// file does not remove a good one written meanwhile.
    generation: u64,
}

/// What is in the directory, in least-recently-used order.
#[derive(Default)]
struct Index {
    slots: HashMap<EntryId, Slot>,
    order: BTreeMap<u64, EntryId>,
    total: u64,
    clock: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks a use; the entry's generation if it exists.
    fn touch(&mut self, id: &EntryId) -> Option<u64> {
        let now = self.tick();
        let slot = self.slots.get_mut(id)?;
        self.order.remove(&slot.tick);
        slot.tick = now;
        self.order.insert(now, *id);
        Some(slot.generation)
    }

    /// Adds or replaces an entry as the most recently used.
    fn insert(&mut self, id: EntryId, size: u64) {
        self.remove(&id);
        let tick = self.tick();
        self.slots.insert(
            id,
            Slot {
                size,
                tick,
                generation: tick,
            },
        );
        self.order.insert(tick, id);
        self.total += size;
    }

    fn remove(&mut self, id: &EntryId) -> Option<Slot> {
        let slot = self.slots.remove(id)?;
        self.order.remove(&slot.tick);
        self.total -= slot.size;
        Some(slot)
    }

    fn pop_lru(&mut self) -> Option<EntryId> {
        let (_, id) = self.order.pop_first()?;
        let slot = self.slots.remove(&id).expect("order and slots agree");
        self.total -= slot.size;
        Some(id)
    }
}

/// Builds the index from the entry files in `dir`, oldest use first,
/// removing temporary files left by a crash. With `discard_entries` (a
/// new master key) the entry files are unreadable and are removed too.
fn scan(dir: &Path, discard_entries: bool) -> Result<Index, StoreError> {
    let mut found: Vec<(SystemTime, EntryId, u64)> = Vec::new();
    let mut discarded = 0usize;
    for entry in fs::read_dir(dir).map_err(io_error(dir, "list"))? {
        let entry = entry.map_err(io_error(dir, "list"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_tmp = name.starts_with(TMP_PREFIX);
        let id = parse_name(name);
        if !is_tmp && id.is_none() {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_error(&path, "inspect"))?;
        if !meta.is_file() {
            continue;
        }
        match id {
            Some(id) if !discard_entries => {
                found.push((meta.modified().unwrap_or(UNIX_EPOCH), id, meta.len()));
            }
            _ => {
                fs::remove_file(&path).map_err(io_error(&path, "remove"))?;
                discarded += usize::from(!is_tmp);
            }
        }
    }
    if discarded > 0 {
        tracing::info!(dir = %dir.display(), entries = discarded, "removed message cache entries left without a cache key");
    }
    found.sort();
    let mut index = Index::default();
    for (_, id, size) in found {
        index.insert(id, size);
    }
    Ok(index)
}

/// The entry id a file name stands for: exactly 64 lower-case hex digits.
fn parse_name(name: &str) -> Option<EntryId> {
    let bytes = name.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        id[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(id)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::{Keystore, PassphraseSource};
    use std::sync::Arc;

    /// An unlocked key for `email` from a fresh key store.
    fn account(email: &str) -> (tempfile::TempDir, UnlockedKey) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Keystore::open(dir.path()).unwrap();
        store.generate(email, None, false).unwrap();
        let key = store.unlock(store.own_key(email).unwrap(), &PassphraseSource::None).unwrap();
        (dir, key)
    }

    fn key(mailbox: &str, uid: u32) -> EntryKey<'_> {
        EntryKey {
            mailbox: mailbox.as_bytes(),
            uidvalidity: 7,
            uid,
        }
    }

    /// Entry files in `dir`, with their contents.
    fn entry_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap()))
            .filter(|(name, _)| name != CACHE_KEY.name)
            .collect();
        files.sort();
        files
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MessageCache>();
    }

    #[test]
    fn round_trip_replace_and_remove() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let cache = MessageCache::open(&dir.path().join("c"), &alice, 1 << 20).unwrap();
        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert!(cache.put(&key("INBOX", 1), b"first message").unwrap());
        assert!(cache.put(&key("INBOX", 2), b"").unwrap());
        assert_eq!(cache.get(&key("INBOX", 1)).unwrap(), b"first message");
        assert_eq!(cache.get(&key("INBOX", 2)).unwrap(), b"");
        // Every component of the key matters.
        assert_eq!(cache.get(&key("Inbox", 1)), None);
        assert_eq!(
            cache.get(&EntryKey {
                uidvalidity: 8,
                ..key("INBOX", 1)
            }),
            None
        );
        assert_eq!(cache.get(&key("INBOX", 3)), None);
        assert_eq!(cache.len_bytes(), 13 + 2 * OVERHEAD);

        assert!(cache.put(&key("INBOX", 1), b"replaced").unwrap());
        assert_eq!(cache.get(&key("INBOX", 1)).unwrap(), b"replaced");
        assert_eq!(cache.entry_count(), 2);
        assert_eq!(cache.len_bytes(), 8 + 2 * OVERHEAD);
        cache.remove(&key("INBOX", 1)).unwrap();
        cache.remove(&key("INBOX", 1)).unwrap();
        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert_eq!(cache.len_bytes(), OVERHEAD);
        assert_eq!(entry_files(cache.dir()).len(), 1);
    }

    #[test]
    fn reopen_keeps_entries_and_other_accounts_key_is_refused() {
        let (_k, alice) = account("alice@x.test");
        let (_k2, bob) = account("bob@x.test");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join("alice");
        let cache = MessageCache::open(&path, &alice, 1 << 20).unwrap();
        cache.put(&key("INBOX", 1), b"kept across restarts").unwrap();
        cache.put(&key("Archive", 9), b"also kept").unwrap();
        let bytes = cache.len_bytes();
        drop(cache);

        let cache = MessageCache::open(&path, &alice, 1 << 20).unwrap();
        assert_eq!(cache.len_bytes(), bytes);
        assert_eq!(cache.get(&key("INBOX", 1)).unwrap(), b"kept across restarts");
        assert_eq!(cache.get(&key("Archive", 9)).unwrap(), b"also kept");
        drop(cache);

        let err = MessageCache::open(&path, &bob, 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::KeyUnreadable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("deleted safely"), "{text}");
        // Nothing was touched: Alice still reads her cache.
        let cache = MessageCache::open(&path, &alice, 1 << 20).unwrap();
        assert_eq!(cache.get(&key("INBOX", 1)).unwrap(), b"kept across restarts");
    }

    #[test]
    fn a_planted_key_file_is_refused() {
        // Someone with Alice's public certificate writes a key file
        // encrypted to her: unsigned by her, it must not be used.
        let (_k, alice) = account("alice@x.test");
        let (_k2, mallory) = account("mallory@x.test");
        let dir = tempfile::tempdir().unwrap();
        let mut plaintext = CACHE_KEY.magic.to_vec();
        plaintext.extend_from_slice(&[0x42; 32]);
        let planted = crate::pgp::encrypt_and_sign(&plaintext, &[&alice.cert], &mallory).unwrap();
        fs::write(dir.path().join(CACHE_KEY.name), planted).unwrap();
        let err = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::KeyUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("not by the account key"), "{err}");
    }

    #[test]
    fn a_lost_key_file_starts_an_empty_cache() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap();
        cache.put(&key("INBOX", 1), b"orphaned").unwrap();
        drop(cache);
        fs::remove_file(dir.path().join(CACHE_KEY.name)).unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap();
        assert_eq!(cache.entry_count(), 0);
        assert!(entry_files(dir.path()).is_empty());
        assert_eq!(cache.get(&key("INBOX", 1)), None);
    }

    #[test]
    fn names_and_contents_reveal_nothing_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let cache = MessageCache::open(&path, &alice, 1 << 20).unwrap();
        let mailbox = "Projects/SecretMailboxMarker";
        let message = b"Subject: hi\r\n\r\nthe body says PLAINTEXT-MARKER-1234\r\n".repeat(10);
        for uid in 1..=3 {
            cache.put(&key(mailbox, uid), &message).unwrap();
        }
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        for entry in fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            assert!(!name.contains("Secret") && !name.contains("Projects"), "{name}");
            let bytes = fs::read(entry.path()).unwrap();
            assert!(!contains(&bytes, b"PLAINTEXT-MARKER"), "{name} holds the plaintext");
            assert!(!contains(&bytes, b"SecretMailboxMarker"), "{name} holds the mailbox name");
            assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        }
        let entries = entry_files(&path);
        assert_eq!(entries.len(), 3);
        for (name, bytes) in &entries {
            assert!(parse_name(name).is_some(), "{name}");
            assert_eq!(bytes.len() as u64, message.len() as u64 + OVERHEAD);
        }
        // Same message, fresh nonces: no two entries share ciphertext.
        assert_ne!(entries[0].1[HEADER_LEN..], entries[1].1[HEADER_LEN..]);
    }

    #[test]
    fn a_tampered_entry_is_dropped_and_removed() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap();
        cache.put(&key("INBOX", 1), b"a message that will be altered").unwrap();
        cache.put(&key("INBOX", 2), b"untouched").unwrap();
        let target = cache.path(&cache.id(&key("INBOX", 1).encode()));
        let mut bytes = fs::read(&target).unwrap();
        bytes[HEADER_LEN + 3] ^= 1;
        fs::write(&target, &bytes).unwrap();

        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert!(!target.exists());
        assert_eq!(cache.entry_count(), 1);
        assert_eq!(cache.len_bytes(), 9 + OVERHEAD);
        assert_eq!(cache.get(&key("INBOX", 2)).unwrap(), b"untouched");

        // Truncated files too.
        let other = cache.path(&cache.id(&key("INBOX", 2).encode()));
        fs::write(&other, &b"SPc1"[..]).unwrap();
        assert_eq!(cache.get(&key("INBOX", 2)), None);
        assert!(!other.exists());
        assert_eq!(cache.len_bytes(), 0);
    }

    #[test]
    fn an_entry_moved_to_another_name_does_not_open() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap();
        cache.put(&key("INBOX", 1), b"message one").unwrap();
        cache.put(&key("INBOX", 2), b"message two").unwrap();
        let one = cache.path(&cache.id(&key("INBOX", 1).encode()));
        let two = cache.path(&cache.id(&key("INBOX", 2).encode()));
        fs::rename(&one, &two).unwrap();
        assert_eq!(cache.get(&key("INBOX", 2)), None);
        assert!(!two.exists());
        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert_eq!(cache.entry_count(), 0);
    }

    #[test]
    fn least_recently_used_entries_go_first() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let entry = 1000u64;
        let body = vec![b'x'; (entry - OVERHEAD) as usize];
        let max = 3 * entry + 10;
        let cache = MessageCache::open(dir.path(), &alice, max).unwrap();
        for uid in 1..=3 {
            cache.put(&key("INBOX", uid), &body).unwrap();
        }
        assert_eq!(cache.len_bytes(), 3 * entry);
        assert!(cache.get(&key("INBOX", 1)).is_some());
        cache.put(&key("INBOX", 4), &body).unwrap();
        assert_eq!(cache.get(&key("INBOX", 2)), None, "2 was least recently used");
        assert_eq!(cache.len_bytes(), 3 * entry);
        assert_eq!(entry_files(dir.path()).len(), 3);
        // Order now (oldest first): 3, 1, 4. A bigger entry evicts two.
        let big = vec![b'y'; (2 * entry - OVERHEAD) as usize];
        cache.put(&key("INBOX", 5), &big).unwrap();
        assert_eq!(cache.get(&key("INBOX", 3)), None);
        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert!(cache.get(&key("INBOX", 4)).is_some());
        assert!(cache.get(&key("INBOX", 5)).is_some());
        assert!(cache.len_bytes() <= max);
        let on_disk: u64 = entry_files(dir.path()).iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(on_disk, cache.len_bytes());
    }

    #[test]
    fn the_use_order_survives_a_restart_and_a_smaller_bound_applies() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let entry = 1000u64;
        let body = vec![b'x'; (entry - OVERHEAD) as usize];
        let cache = MessageCache::open(dir.path(), &alice, 3 * entry).unwrap();
        for uid in 1..=3 {
            cache.put(&key("INBOX", uid), &body).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cache.get(&key("INBOX", 1)).is_some());
        drop(cache);

        // Oldest use first: 2, 3, 1. A bound of two entries drops 2.
        let cache = MessageCache::open(dir.path(), &alice, 2 * entry).unwrap();
        assert_eq!(cache.entry_count(), 2);
        assert_eq!(cache.len_bytes(), 2 * entry);
        assert_eq!(cache.get(&key("INBOX", 2)), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(cache.get(&key("INBOX", 3)).is_some());
        cache.put(&key("INBOX", 4), &body).unwrap();
        assert_eq!(cache.get(&key("INBOX", 1)), None);
        assert!(cache.get(&key("INBOX", 3)).is_some());
        assert!(cache.get(&key("INBOX", 4)).is_some());
    }

    #[test]
    fn an_entry_larger_than_the_bound_is_not_stored() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1000).unwrap();
        assert!(cache.put(&key("INBOX", 1), &[b'a'; 500]).unwrap());
        assert!(!cache.put(&key("INBOX", 2), &[b'b'; 2000]).unwrap());
        assert_eq!(cache.get(&key("INBOX", 2)), None);
        assert!(cache.get(&key("INBOX", 1)).is_some(), "a refused put evicts nothing");
        // Exactly at the bound fits; a too-large replacement removes the old entry.
        assert!(cache.put(&key("INBOX", 3), &vec![b'c'; (1000 - OVERHEAD) as usize]).unwrap());
        assert_eq!(cache.len_bytes(), 1000);
        assert!(!cache.put(&key("INBOX", 3), &[b'c'; 1000]).unwrap());
        assert_eq!(cache.get(&key("INBOX", 3)), None);
        assert_eq!(cache.len_bytes(), 0);
        assert!(entry_files(dir.path()).is_empty());
    }

    #[test]
    fn leftover_temporary_files_are_removed_at_open() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        drop(MessageCache::open(dir.path(), &alice, 1 << 20).unwrap());
        fs::write(dir.path().join(".tmp-crashed"), b"half an entry").unwrap();
        let cache = MessageCache::open(dir.path(), &alice, 1 << 20).unwrap();
        assert!(!dir.path().join(".tmp-crashed").exists());
        assert_eq!(cache.len_bytes(), 0);
    }

    #[test]
    fn many_threads_share_one_cache() {
        let (_k, alice) = account("alice@x.test");
        let dir = tempfile::tempdir().unwrap();
        for max in [64 << 20, 40_000u64] {
            let path = dir.path().join(max.to_string());
            let cache = Arc::new(MessageCache::open(&path, &alice, max).unwrap());
            let message = |t: u32, uid: u32| format!("thread {t} message {uid} ").repeat(50).into_bytes();
            let threads: Vec<_> = (0..8u32)
                .map(|t| {
                    let cache = Arc::clone(&cache);
                    std::thread::spawn(move || {
                        let mailbox = format!("box{t}");
                        for uid in 0..40u32 {
                            assert!(cache.put(&key(&mailbox, uid), &message(t, uid)).unwrap());
                            // A shared entry every thread rewrites.
                            cache.put(&key("shared", 0), &message(99, 0)).unwrap();
                            for back in [uid, uid / 2] {
                                if let Some(got) = cache.get(&key(&mailbox, back)) {
                                    assert_eq!(got, message(t, back));
                                }
                            }
                            if let Some(got) = cache.get(&key("shared", 0)) {
                                assert_eq!(got, message(99, 0));
                            }
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert!(cache.len_bytes() <= max);
            let files = entry_files(&path);
            assert_eq!(files.len(), cache.entry_count());
            assert_eq!(files.iter().map(|(_, b)| b.len() as u64).sum::<u64>(), cache.len_bytes());
            if max > 1 << 20 {
                assert_eq!(cache.entry_count(), 8 * 40 + 1);
                for t in 0..8u32 {
                    for uid in 0..40u32 {
                        assert_eq!(cache.get(&key(&format!("box{t}"), uid)).unwrap(), message(t, uid));
                    }
                }
            }
        }
    }
}
