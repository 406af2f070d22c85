//! Which decrypted messages the proxy has shown, and where their
//! ciphertext lives. When a client uploads one of them back (a move done
//! as copy-and-delete, a copy into another mailbox, a local folder synced
//! up again), the provider gets the original ciphertext rather than a
//! second, different encryption of it, so the sender's signature and the
//! message's identity survive. Kept in memory, per account, bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Where a shown message's ciphertext is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Its mailbox (decoded name).
    pub mailbox: Vec<u8>,
    /// The mailbox's UIDVALIDITY when it was shown, if known.
    pub uidvalidity: Option<u32>,
    /// Its UID.
    pub uid: u32,
}

/// Origins by message digest, and the digests oldest first.
type Entries = (HashMap<[u8; 32], Origin>, VecDeque<[u8; 32]>);

/// The most recently shown decrypted messages of one account, by digest.
pub struct Served {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl Served {
    /// Remembers up to `capacity` messages (the oldest are forgotten).
    pub fn new(capacity: usize) -> Served {
        Served {
            capacity,
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Records that `message` (as shown, CRLF) came from `origin`.
    pub fn record(&self, message: &[u8], origin: Origin) {
        let digest = digest(message);
        let mut guard = self.entries.lock().expect("served lock");
        let (map, order) = &mut *guard;
        if map.insert(digest, origin).is_none() {
            order.push_back(digest);
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// Where `message` came from, if the proxy showed exactly these bytes
    /// (line endings aside).
    pub fn find(&self, message: &[u8]) -> Option<Origin> {
        self.entries.lock().expect("served lock").0.get(&digest(message)).cloned()
    }
}

fn digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(crate::mime::to_crlf(message)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uid: u32) -> Origin {
        Origin {
            mailbox: b"INBOX".to_vec(),
            uidvalidity: Some(1),
            uid,
        }
    }

    #[test]
    fn finds_what_was_shown_and_forgets_the_oldest() {
        let served = Served::new(2);
        served.record(b"a\r\n", origin(1));
        served.record(b"b\r\n", origin(2));
        assert_eq!(served.find(b"a\n"), Some(origin(1)), "line endings do not matter");
        served.record(b"c\r\n", origin(3));
        assert_eq!(served.find(b"a\r\n"), None);
        assert_eq!(served.find(b"c\r\n"), Some(origin(3)));
        assert_eq!(served.find(b"c\r\nchanged"), None);
    }
}
