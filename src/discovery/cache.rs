//! Remembered answers, so that a recipient without a key does not cost a
//! look-up per message: keys found (24 hours by default), "no key"
//! (1 hour) and failures (5 minutes), by normalized address, in memory.
//! The negative answers ("no key", failures) are also kept in
//! `data_dir/discovery-cache.toml` (0600, replaced atomically), so that a
//! restart does not ask every directory again; keys found are not written
//! there (the caller stores them in the key store, and the file stays
//! small). The file is only a cache: if it is damaged it is ignored (with a
//! warning) and rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Lookup;

/// The cache file's name in `data_dir`.
pub const FILE_NAME: &str = "discovery-cache.toml";

/// At most this many addresses are remembered; beyond, the entries
/// closest to expiry go first.
const MAX_ENTRIES: usize = 10_000;

/// Where the time comes from (replaceable in tests).
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How long each kind of answer is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// A key was found.
    pub found: Duration,
    /// The directories definitively had no key.
    pub not_found: Duration,
    /// The look-up failed (unreachable, refused, too slow).
    pub failed: Duration,
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl {
            found: Duration::from_secs(24 * 3600),
            not_found: Duration::from_secs(3600),
            failed: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    lookup: Lookup,
    /// Seconds since the epoch.
    expires: u64,
}

/// How a negative entry is written in the file.
#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    outcome: Outcome,
    /// Seconds since the epoch.
    expires: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    NotFound,
    Failed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    entries: BTreeMap<String, FileEntry>,
}

/// The cache of one data directory.
pub(crate) struct Cache {
    path: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    ttl: Ttl,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Held while a snapshot is taken and written, so that writes land in
    /// order.
    write: Mutex<()>,
}

impl Cache {
    /// The cache persisted at `path` (`None`: memory only), loaded now.
    pub(crate) fn open(path: Option<PathBuf>, clock: Arc<dyn Clock>, ttl: Ttl) -> Cache {
        let entries = match &path {
            Some(path) => load(path, unix(clock.now())),
            None => BTreeMap::new(),
        };
        Cache {
            path,
            clock,
            ttl,
            entries: Mutex::new(entries),
            write: Mutex::new(()),
        }
    }

    /// The remembered answer for `key`, if it has not expired.
    pub(crate) fn get(&self, key: &str) -> Option<Lookup> {
        let now = unix(self.clock.now());
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.get(key) {
            Some(entry) if now < entry.expires => Some(entry.lookup.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `lookup` for `key` (found, not found and failed answers;
    /// others are not remembered) and writes the file.
    pub(crate) fn put(&self, key: &str, lookup: &Lookup) -> std::io::Result<()> {
        let ttl = match lookup {
            Lookup::Found { .. } => self.ttl.found,
            Lookup::NotFound => self.ttl.not_found,
            Lookup::Failed(_) => self.ttl.failed,
            Lookup::TimedOut { .. } | Lookup::Disabled => return Ok(()),
        };
        let now = unix(self.clock.now());
        {
            let mut entries = self.entries.lock().expect("not poisoned");
            entries.retain(|_, e| now < e.expires);
            entries.insert(
                key.to_string(),
                Entry {
                    lookup: lookup.clone(),
                    expires: now.saturating_add(ttl.as_secs()),
                },
            );
            while entries.len() > MAX_ENTRIES {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                    .expect("not empty");
                entries.remove(&soonest);
            }
        }
        self.save()
    }

    /// Forgets `key` and writes the file.
    pub(crate) fn forget(&self, key: &str) -> std::io::Result<()> {
        let removed = self.entries.lock().expect("not poisoned").remove(key).is_some();
        if removed {
            self.save()
        } else {
            Ok(())
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let _order = self.write.lock().expect("not poisoned");
        let file = {
            let entries = self.entries.lock().expect("not poisoned");
            CacheFile {
                entries: entries.iter().filter_map(|(k, e)| Some((k.clone(), to_file(e)?))).collect(),
            }
        };
        let text = toml::to_string(&file).map_err(std::io::Error::other)?;
        let text = format!("# Sealpost's key discovery cache; safe to delete.\n{text}");
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                crate::files::create_private_dir(dir)?;
            }
        }
        crate::files::write_private_file(path, text.as_bytes())
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// The file form of a negative entry (keys found are not written).
fn to_file(entry: &Entry) -> Option<FileEntry> {
    let (outcome, reason) = match &entry.lookup {
        Lookup::NotFound => (Outcome::NotFound, None),
        Lookup::Failed(reason) => (Outcome::Failed, Some(reason.clone())),
        _ => return None,
    };
    Some(FileEntry {
        outcome,
        expires: entry.expires,
        reason,
    })
}

fn from_file(file: FileEntry) -> Entry {
    let lookup = match file.outcome {
        Outcome::NotFound => Lookup::NotFound,
        Outcome::Failed => Lookup::Failed(file.reason.unwrap_or_else(|| "an earlier look-up failed".into())),
    };
    Entry {
        lookup,
        expires: file.expires,
    }
}

fn load(path: &Path, now: u64) -> BTreeMap<String, Entry> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the key discovery cache; starting with an empty one");
            return BTreeMap::new();
        }
    };
    let file: CacheFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the key discovery cache is damaged; starting with an empty one");
            return BTreeMap::new();
        }
    };
    file.entries
        .into_iter()
        .filter(|(_, e)| now < e.expires)
        .map(|(k, e)| (k, from_file(e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Source;
    use sequoia_openpgp::cert::CertBuilder;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock that moves only when told.
    struct Manual(AtomicU64);

    impl Manual {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
        }
    }

    impl Clock for Manual {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn clock() -> Arc<Manual> {
        Arc::new(Manual(AtomicU64::new(1_700_000_000)))
    }

    fn found() -> Lookup {
        let (cert, _) = CertBuilder::general_purpose(Some("<joe@example.org>")).generate().unwrap();
        Lookup::Found {
            certs: vec![cert],
            source: Source::Wkd,
            url: "https://openpgpkey.example.org/x".into(),
        }
    }

    #[test]
    fn each_kind_of_answer_expires_after_its_time() {
        let clock = clock();
        let cache = Cache::open(None, clock.clone(), Ttl::default());
        cache.put("found@x", &found()).unwrap();
        cache.put("none@x", &Lookup::NotFound).unwrap();
        cache.put("failed@x", &Lookup::Failed("boom".into())).unwrap();
        cache
            .put(
                "slow@x",
                &Lookup::TimedOut {
                    after: Duration::from_secs(3),
                },
            )
            .unwrap();
        cache.put("off@x", &Lookup::Disabled).unwrap();
        assert!(matches!(cache.get("found@x"), Some(Lookup::Found { .. })));
        assert!(matches!(cache.get("none@x"), Some(Lookup::NotFound)));
        assert!(matches!(cache.get("failed@x"), Some(Lookup::Failed(r)) if r == "boom"));
        assert!(cache.get("slow@x").is_none() && cache.get("off@x").is_none());

        clock.advance(Duration::from_secs(5 * 60 - 1));
        assert!(cache.get("failed@x").is_some());
        clock.advance(Duration::from_secs(1));
        assert!(cache.get("failed@x").is_none());
        assert!(cache.get("none@x").is_some());
        clock.advance(Duration::from_secs(3600 - 5 * 60));
        assert!(cache.get("none@x").is_none());
        assert!(cache.get("found@x").is_some());
        clock.advance(Duration::from_secs(23 * 3600));
        assert!(cache.get("found@x").is_none());
    }

    #[test]
    fn a_restart_keeps_unexpired_negative_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(FILE_NAME);
        let clock = clock();
        let cache = Cache::open(Some(path.clone()), clock.clone(), Ttl::default());
        let key = found();
        cache.put("found@x", &key).unwrap();
        cache.put("none@x", &Lookup::NotFound).unwrap();
        cache.put("failed@x", &Lookup::Failed("unreachable".into())).unwrap();
        cache.put("gone@x", &Lookup::NotFound).unwrap();
        cache.forget("gone@x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("found@x") && text.contains("none@x"),
            "keys found stay out of the file:\n{text}"
        );
        assert_eq!(cache.get("found@x"), Some(key));

        clock.advance(Duration::from_secs(10 * 60));
        let reopened = Cache::open(Some(path.clone()), clock.clone(), Ttl::default());
        assert!(reopened.get("found@x").is_none());
        assert!(matches!(reopened.get("none@x"), Some(Lookup::NotFound)));
        // The failure expired while the process was down.
        assert!(reopened.get("failed@x").is_none());
        assert!(reopened.get("gone@x").is_none());
    }

    #[test]
    fn a_damaged_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "this is [not toml").unwrap();
        let cache = Cache::open(Some(path.clone()), clock(), Ttl::default());
        assert!(cache.get("x@y").is_none());
        cache.put("x@y", &Lookup::NotFound).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("[entries.\"x@y\"]"));
        std::fs::write(
            &path,
            "[entries.\"a@y\"]\noutcome = \"failed\"\nexpires = 9999999999\nreason = \"unreachable\"\n\
             [entries.\"b@y\"]\noutcome = \"not-found\"\nexpires = 9999999999\n",
        )
        .unwrap();
        let cache = Cache::open(Some(path), clock(), Ttl::default());
        assert_eq!(cache.get("a@y"), Some(Lookup::Failed("unreachable".into())));
        assert!(matches!(cache.get("b@y"), Some(Lookup::NotFound)));
    }
}
