//! `data_dir/pins.toml`: the keys first seen for each server, like SSH's
//! known_hosts. Writers lock `pins.lock` and replace the file atomically; a
//! damaged file is reported, never silently rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pin::Pin;
use super::TlsError;

/// What was recorded for one `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    /// The leaf key's pin: what later connections must present.
    pub pin: String,
    /// The issuing key's pin, for information (not required: a new key
    /// from the same CA is exactly what pinning must refuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_pin: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded: String,
    /// SHA-256 fingerprint of the certificate seen then.
    pub certificate_sha256: String,
}

impl PinRecord {
    /// The required pin, parsed.
    pub fn required(&self) -> Result<Pin, String> {
        Pin::parse(&self.pin)
    }
}

/// The pin file of one data directory.
#[derive(Debug, Clone)]
pub struct PinStore {
    path: PathBuf,
}

impl PinStore {
    /// The store at `data_dir/pins.toml` (created on first write).
    pub fn new(data_dir: &Path) -> PinStore {
        PinStore {
            path: data_dir.join("pins.toml"),
        }
    }

    /// Where the pins live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, by `host:port`.
    pub fn all(&self) -> Result<BTreeMap<String, PinRecord>, TlsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(TlsError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let records: BTreeMap<String, PinRecord> = toml::from_str(&text).map_err(|e| self.damaged(e.to_string()))?;
        for (server, record) in &records {
            record.required().map_err(|e| self.damaged(format!("{server}: {e}")))?;
        }
        Ok(records)
    }

    /// The record for `host:port`.
    pub fn get(&self, server: &str) -> Result<Option<PinRecord>, TlsError> {
        Ok(self.all()?.remove(server))
    }

    /// Records `record` for `server` unless one exists already (the first
    /// writer wins; concurrent first contacts cannot overwrite each other).
    /// Returns the record in force.
    pub fn record_first(&self, server: &str, record: PinRecord) -> Result<PinRecord, TlsError> {
        self.update(|records| records.entry(server.to_string()).or_insert(record).clone())
    }

    /// Replaces the record for `server` (after the user accepted a new
    /// key).
    pub fn replace(&self, server: &str, record: PinRecord) -> Result<(), TlsError> {
        self.update(|records| {
            records.insert(server.to_string(), record);
        })
    }

    /// Removes the record for `server`; true if there was one.
    pub fn forget(&self, server: &str) -> Result<bool, TlsError> {
        self.update(|records| records.remove(server).is_some())
    }

    /// Read-modify-write under an exclusive lock.
    fn update<T>(&self, change: impl FnOnce(&mut BTreeMap<String, PinRecord>) -> T) -> Result<T, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::files::create_private_dir(dir).map_err(io(dir))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut records = self.all()?;
        let result = change(&mut records);
        let text = toml::to_string(&records).map_err(|e| self.damaged(e.to_string()))?;
        let header = "# Server keys recorded by Sealpost (trust = \"tofu\"). Manage with\n# 'sealpost pin list | accept | forget'.\n";
        crate::files::write_private_file(&self.path, [header, &text].concat().as_bytes()).map_err(io(&self.path))?;
        Ok(result)
    }

    fn damaged(&self, reason: String) -> TlsError {
        TlsError::Pem {
            path: self.path.clone(),
            what: format!(
                "the pin file is damaged ({reason}); fix it by hand or remove the bad entry with 'sealpost pin forget HOST:PORT'; Sealpost will not overwrite it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> PinRecord {
        PinRecord {
            pin: Pin::parse(&format!("sha256/{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [n; 32]))).unwrap().to_string(),
            issuer_pin: None,
            recorded: "2026-11-27T00:00:00Z".into(),
            certificate_sha256: "AA".into(),
        }
    }

    #[test]
    fn first_writer_wins_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|n| {
                let store = PinStore::new(dir.path());
                std::thread::spawn(move || {
                    store.record_first("mail.test:993", record(n)).unwrap();
                    store.record_first(&format!("host{n}.test:587"), record(n)).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = PinStore::new(dir.path());
        let all = store.all().unwrap();
        assert_eq!(all.len(), 9, "every writer's own entry survived");
        let winner = all["mail.test:993"].clone();
        assert_eq!(store.record_first("mail.test:993", record(99)).unwrap(), winner);
        assert!(store.forget("mail.test:993").unwrap());
        assert!(!store.forget("mail.test:993").unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_an_error_and_stays_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        std::fs::write(store.path(), "this is [not toml").unwrap();
        let err = store.get("x:1").unwrap_err().to_string();
        assert!(err.contains("the pin file is damaged"), "{err}");
        assert!(store.record_first("x:1", record(1)).is_err());
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), "this is [not toml");
        std::fs::write(store.path(), "[\"x:1\"]\npin = \"md5/abc\"\nrecorded = \"\"\ncertificate_sha256 = \"\"\n").unwrap();
        assert!(store.all().unwrap_err().to_string().contains("x:1"));
    }
}
