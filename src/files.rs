//! Private files: everything Sealpost writes to `data_dir` (keys, the
//! local TLS key, later caches and pins) goes through these two functions,
//! so that nothing lands on disk readable by other users or half-written.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700, and tightens it to 0700 if
/// it already existed.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes a file with mode 0600 atomically: a crash leaves the old or the
/// new content, never half of either.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A TOML table of records in one private file, keyed by name, that
/// several processes may change (the proxy and the command line): each
/// change is read-modify-write under an exclusive lock on a `.lock` file
/// beside it, then an atomic replace. A damaged file is reported, never
/// overwritten.
#[derive(Debug, Clone)]
pub struct TomlTable<V> {
    path: std::path::PathBuf,
    header: &'static str,
    _records: std::marker::PhantomData<fn() -> V>,
}

/// Why a [`TomlTable`] could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Reading, locking or writing failed.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid table of records.
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl<V: serde::Serialize + serde::de::DeserializeOwned> TomlTable<V> {
    /// The table in `path`; `header` (comment lines) starts the file.
    pub fn new(path: std::path::PathBuf, header: &'static str) -> TomlTable<V> {
        TomlTable {
            path,
            header,
            _records: std::marker::PhantomData,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record (none when the file does not exist yet).
    pub fn read(&self) -> Result<std::collections::BTreeMap<String, V>, TableError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| TableError::Damaged {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(std::collections::BTreeMap::new()),
            Err(source) => Err(TableError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Applies `change` to the records under the lock, writing the file
    /// only if they changed. `check` runs on what was read before anything
    /// is changed (so a damaged record is reported rather than rewritten).
    pub fn update<T>(
        &self,
        check: impl FnOnce(&std::collections::BTreeMap<String, V>) -> Result<(), TableError>,
        change: impl FnOnce(&mut std::collections::BTreeMap<String, V>) -> T,
    ) -> Result<T, TableError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TableError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(io(dir))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut records = self.read()?;
        check(&records)?;
        let serialize = |records: &std::collections::BTreeMap<String, V>| {
            toml::to_string(records).map_err(|e| TableError::Damaged {
                path: self.path.clone(),
                reason: e.to_string(),
            })
        };
        let before = serialize(&records)?;
        let result = change(&mut records);
        let text = serialize(&records)?;
        if text != before || !self.path.exists() {
            write_private_file(&self.path, [self.header, &text].concat().as_bytes()).map_err(io(&self.path))?;
        }
        Ok(result)
    }
}
