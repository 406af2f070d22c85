//! The proxies' data at rest: the cache of decrypted messages the IMAP
//! proxy keeps so that a restart needs no re-decryption
//! ([`MessageCache`]), the per-account search index ([`SearchIndex`]),
//! and the Autocrypt state of correspondents
//! ([`peers`]).
//!
//! This module owns how that data is laid out on disk, how it is
//! encrypted, and how much of it is kept. It reads and writes files under
//! directories its callers give it (inside `data_dir`, created 0700,
//! files 0600) and nothing else: it never touches sockets, never parses
//! MIME or IMAP, and never logs message content, mailbox names or keys.
//!
//! Everything here is synchronous with short internal locking; callers in
//! async code should run the operations that read or write entries with
//! `tokio::task::spawn_blocking` (see [`MessageCache`]).

mod cache;
mod dictionary;
mod index;
mod masterkey;
pub mod peers;
mod postings;

use std::path::PathBuf;

pub use cache::{EntryKey, MessageCache};
pub use index::{IndexError, MailboxId, MailboxStats, SearchIndex};

/// Something went wrong opening or writing a store. Every message names
/// the path involved and what the user can do; none carries secrets,
/// mailbox names or message content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}; check that the directory is writable by the Sealpost user and that the disk is not full", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done ("read", "create the directory", ...).
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cache's key file cannot be opened with this account's key: the
    /// directory belongs to another key, or the file is damaged or was
    /// replaced. The cache is refused rather than silently recreated.
    #[error("the {store} in {} cannot be opened with the key {fingerprint}: {reason}. The directory holds only data derived from mail that stays on the server, so it can be deleted safely; Sealpost then starts the {store} afresh", dir.display())]
    KeyUnreadable {
        /// Which store ("message cache", "search index").
        store: &'static str,
        /// The cache directory.
        dir: PathBuf,
        /// The account key that was tried.
        fingerprint: String,
        /// Why it did not open.
        reason: String,
    },
    /// A new cache key could not be made or wrapped (for example the
    /// account key cannot sign or encrypt).
    #[error("cannot create the key of the {store} in {} with the key {fingerprint}: {reason}", dir.display())]
    KeyCreation {
        /// Which store.
        store: &'static str,
        /// The cache directory.
        dir: PathBuf,
        /// The account key that was used.
        fingerprint: String,
        /// What went wrong.
        reason: String,
    },
}

/// The directory name for one account's store under `data_dir/cache`: a
/// hash of the login (ASCII case folded), so the file system shows no
/// account names.
pub fn account_dir_name(login: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(login.to_ascii_lowercase().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Maps an I/O error on `path` during `action` to a [`StoreError`].
pub(crate) fn io_error(path: &std::path::Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, action, source }
}
