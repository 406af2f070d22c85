//! The key store while the proxies run: readers take a snapshot that
//! never changes under them (a message being encrypted keeps the keys it
//! started with), writers (keys learnt from mail or found by discovery)
//! re-read the store from disk, change it, and publish a new snapshot.
//! Readers never wait for writers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use super::{KeyError, Keystore};

/// A key store shared by every session.
pub struct LiveKeystore {
    data_dir: PathBuf,
    current: RwLock<Arc<Keystore>>,
    writer: Mutex<()>,
}

impl LiveKeystore {
    /// Starts from an opened store of `data_dir`.
    pub fn new(data_dir: PathBuf, keystore: Keystore) -> LiveKeystore {
        LiveKeystore {
            data_dir,
            current: RwLock::new(Arc::new(keystore)),
            writer: Mutex::new(()),
        }
    }

    /// The keys as they are now.
    pub fn snapshot(&self) -> Arc<Keystore> {
        self.current.read().expect("keystore lock").clone()
    }

    /// Applies `change` to the store as it is on disk (so keys imported
    /// with the command line meanwhile are kept and seen), then publishes
    /// the result. Writers take turns; readers go on with their snapshots.
    pub fn update<T>(&self, change: impl FnOnce(&mut Keystore) -> Result<T, KeyError>) -> Result<T, KeyError> {
        let _turn = self.writer.lock().expect("keystore writer lock");
        let mut keystore = Keystore::open(&self.data_dir)?;
        let result = change(&mut keystore)?;
        *self.current.write().expect("keystore lock") = Arc::new(keystore);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_stay_as_they_were_and_updates_see_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveKeystore::new(dir.path().to_path_buf(), Keystore::open(dir.path()).unwrap());
        let before = live.snapshot();
        // Another process (the command line) adds a key meanwhile.
        Keystore::open(dir.path()).unwrap().generate("cli@x.test", None, false).unwrap();
        live.update(|ks| ks.generate("live@x.test", None, false).map(|_| ())).unwrap();
        assert!(before.keys().is_empty());
        let after = live.snapshot();
        assert!(after.recipient("cli@x.test").is_ok() && after.recipient("live@x.test").is_ok());
    }
}
