//! `data_dir/pins.toml`: the keys first seen for each server, like SSH's
//! known_hosts. Writers lock `pins.lock` and replace the file atomically; a
//! damaged file is reported, never silently rewritten.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::pin::Pin;
use super::TlsError;
use crate::files::{TableError, TomlTable};

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
    table: TomlTable<PinRecord>,
}

impl PinStore {
    /// The store at `data_dir/pins.toml` (created on first write).
    pub fn new(data_dir: &Path) -> PinStore {
        PinStore {
            table: TomlTable::new(
                data_dir.join("pins.toml"),
                "# Server keys recorded by Sealpost (trust = \"tofu\"). Manage with\n# 'sealpost pin list | accept | forget'.\n",
            ),
        }
    }

    /// Where the pins live.
    pub fn path(&self) -> &Path {
        self.table.path()
    }

    /// Every record, by `host:port`.
    pub fn all(&self) -> Result<BTreeMap<String, PinRecord>, TlsError> {
        let records = self.table.read().map_err(|e| self.error(e))?;
        self.check(&records).map_err(|e| self.error(e))?;
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

    fn update<T>(&self, change: impl FnOnce(&mut BTreeMap<String, PinRecord>) -> T) -> Result<T, TlsError> {
        self.table.update(|records| self.check(records), change).map_err(|e| self.error(e))
    }

    /// Every recorded pin must parse.
    fn check(&self, records: &BTreeMap<String, PinRecord>) -> Result<(), TableError> {
        for (server, record) in records {
            record.required().map_err(|e| TableError::Damaged {
                path: self.table.path().to_path_buf(),
                reason: format!("{server}: {e}"),
            })?;
        }
        Ok(())
    }

    fn error(&self, e: TableError) -> TlsError {
        match e {
            TableError::Io { path, source } => TlsError::Io { path, source },
            TableError::Damaged { path, reason } => TlsError::Pem {
                path,
                what: format!(
                    "the pin file is damaged ({reason}); fix it by hand or remove the bad entry with 'sealpost pin forget HOST:PORT'; Sealpost will not overwrite it"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> PinRecord {
        PinRecord {
            pin: Pin::parse(&format!(
                "sha256/{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [n; 32])
            ))
            .unwrap()
            .to_string(),
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
        std::fs::write(
            store.path(),
            "[\"x:1\"]\npin = \"md5/abc\"\nrecorded = \"\"\ncertificate_sha256 = \"\"\n",
        )
        .unwrap();
        assert!(store.all().unwrap_err().to_string().contains("x:1"));
    }
}
