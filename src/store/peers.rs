//! Autocrypt peer state (Autocrypt Level 1, "Peer State"), one record per
//! correspondent's address in `data_dir/peers.toml`: when mail from them
//! was last seen, when their Autocrypt header was, which key it carried
//! and whether they prefer encryption; the newest gossiped key. The keys
//! themselves live in the key store; this keeps what the spec's update
//! rules and recommendation need.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::{TableError, TomlTable};
use crate::message::Lessons;

/// What is known about one correspondent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Effective date (seconds since the epoch) of the newest message seen.
    pub last_seen: u64,
    /// Effective date of the newest message with an Autocrypt header.
    pub autocrypt_timestamp: u64,
    /// Fingerprint of the key in that header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// That header said `prefer-encrypt=mutual`.
    pub prefer_encrypt_mutual: bool,
    /// Effective date of the newest message gossiping a key for them.
    pub gossip_timestamp: u64,
    /// Fingerprint of that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_key: Option<String>,
}

/// The Autocrypt recommendation for encrypting to a peer (Level 1, §
/// "Provide a Recommendation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recommendation {
    /// Encrypt: both sides prefer it.
    Encrypt,
    /// A key is there; encryption is fine.
    Available,
    /// Only a gossiped key, or the sender stopped sending Autocrypt
    /// headers over a month ago.
    Discourage,
}

impl std::fmt::Display for Recommendation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recommendation::Encrypt => "encrypt",
            Recommendation::Available => "available",
            Recommendation::Discourage => "discourage",
        })
    }
}

impl Peer {
    /// The recommendation for this peer, given whether our own account
    /// prefers encryption (`mutual`).
    pub fn recommendation(&self, mutual: bool) -> Recommendation {
        const STALE: u64 = 35 * 24 * 3600;
        match (&self.public_key, &self.gossip_key) {
            (None, _) => Recommendation::Discourage,
            (Some(_), _) if self.autocrypt_timestamp + STALE < self.last_seen => Recommendation::Discourage,
            (Some(_), _) if mutual && self.prefer_encrypt_mutual => Recommendation::Encrypt,
            _ => Recommendation::Available,
        }
    }
}

/// Which keys a message's lessons made current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The sender's Autocrypt key, when it is newer than what was known,
    /// and the key it replaces (if another).
    pub autocrypt: Option<(String, Option<String>)>,
    /// Gossiped keys that are newer than what was known, by address.
    pub gossip: Vec<(String, String)>,
}

/// The peer table of one data directory.
pub struct PeerStore {
    table: TomlTable<Peer>,
}

impl PeerStore {
    /// The table at `data_dir/peers.toml`.
    pub fn new(data_dir: &Path) -> PeerStore {
        PeerStore {
            table: TomlTable::new(
                data_dir.join("peers.toml"),
                "# Autocrypt peer state kept by Sealpost (see 'sealpost keys list').\n",
            ),
        }
    }

    /// Every peer, by address.
    pub fn all(&self) -> Result<BTreeMap<String, Peer>, TableError> {
        self.table.read()
    }

    /// Applies one incoming message's lessons by the Autocrypt update
    /// rules: a message older than the peer's last Autocrypt header
    /// changes nothing; otherwise `last_seen` moves on, and a header
    /// replaces key and preference; gossip newer than the last gossip
    /// replaces the gossip key.
    pub fn apply(&self, lessons: &Lessons) -> Result<Accepted, TableError> {
        let date = seconds(lessons.date);
        self.table.update(
            |_| Ok(()),
            |peers| {
                let mut accepted = Accepted::default();
                // A sender who never sent an Autocrypt header gets no
                // record: there is no key to keep, and the table would
                // otherwise grow with every correspondent.
                let known = peers.contains_key(&lessons.sender) || lessons.autocrypt.is_some();
                if let Some(peer) = known.then(|| peers.entry(lessons.sender.clone()).or_default()) {
                    if date >= peer.autocrypt_timestamp {
                        peer.last_seen = peer.last_seen.max(date);
                        if let Some(key) = &lessons.autocrypt {
                            let fingerprint = key.cert.fingerprint().to_hex();
                            let previous = peer.public_key.replace(fingerprint.clone()).filter(|p| *p != fingerprint);
                            peer.autocrypt_timestamp = date;
                            peer.prefer_encrypt_mutual = key.mutual;
                            accepted.autocrypt = Some((fingerprint, previous));
                        }
                    }
                }
                for gossip in &lessons.gossip {
                    let peer = peers.entry(gossip.addr.clone()).or_default();
                    if date > peer.gossip_timestamp {
                        let fingerprint = gossip.cert.fingerprint().to_hex();
                        peer.gossip_timestamp = date;
                        peer.gossip_key = Some(fingerprint.clone());
                        accepted.gossip.push((gossip.addr.clone(), fingerprint));
                    }
                }
                accepted
            },
        )
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PeerKey;
    use sequoia_openpgp::cert::CertBuilder;

    fn key(addr: &str, mutual: bool) -> PeerKey {
        let (cert, _) = CertBuilder::general_purpose(Some(format!("<{addr}>"))).generate().unwrap();
        PeerKey {
            addr: addr.into(),
            mutual,
            cert,
        }
    }

    fn lessons(day: u64, autocrypt: Option<PeerKey>, gossip: Vec<PeerKey>) -> Lessons {
        Lessons {
            sender: "bob@x.test".into(),
            date: UNIX_EPOCH + Duration::from_secs(day * 86_400),
            autocrypt,
            gossip,
        }
    }

    #[test]
    fn newer_headers_replace_older_ones_and_older_mail_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let peers = PeerStore::new(dir.path());
        let first = key("bob@x.test", true);
        let accepted = peers.apply(&lessons(10, Some(first.clone()), vec![])).unwrap();
        assert_eq!(accepted.autocrypt, Some((first.cert.fingerprint().to_hex(), None)));
        let second = key("bob@x.test", false);
        // An older message with another key: ignored.
        assert_eq!(peers.apply(&lessons(5, Some(second.clone()), vec![])).unwrap(), Accepted::default());
        let newer = peers.apply(&lessons(20, Some(second.clone()), vec![])).unwrap();
        assert_eq!(
            newer.autocrypt,
            Some((second.cert.fingerprint().to_hex(), Some(first.cert.fingerprint().to_hex())))
        );
        let bob = peers.all().unwrap()["bob@x.test"].clone();
        assert_eq!(
            (bob.last_seen, bob.autocrypt_timestamp, bob.prefer_encrypt_mutual),
            (20 * 86_400, 20 * 86_400, false)
        );
        // Mail without a header moves last_seen only; after 35 days the
        // key is stale.
        peers.apply(&lessons(60, None, vec![])).unwrap();
        let bob = peers.all().unwrap()["bob@x.test"].clone();
        assert_eq!(bob.public_key, Some(second.cert.fingerprint().to_hex()));
        assert_eq!(bob.recommendation(true), Recommendation::Discourage);
    }

    #[test]
    fn gossip_keeps_the_newest_and_recommendations_follow_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let peers = PeerStore::new(dir.path());
        peers.apply(&lessons(1, None, vec![])).unwrap();
        assert!(peers.all().unwrap().is_empty(), "no record for a sender without Autocrypt");
        let carol = key("carol@x.test", false);
        let accepted = peers
            .apply(&lessons(3, Some(key("bob@x.test", true)), vec![carol.clone()]))
            .unwrap();
        assert_eq!(
            accepted.gossip,
            vec![("carol@x.test".to_string(), carol.cert.fingerprint().to_hex())]
        );
        assert!(peers
            .apply(&lessons(2, None, vec![key("carol@x.test", false)]))
            .unwrap()
            .gossip
            .is_empty());
        let all = peers.all().unwrap();
        assert_eq!(all["carol@x.test"].recommendation(true), Recommendation::Discourage, "gossip only");
        assert_eq!(all["bob@x.test"].recommendation(true), Recommendation::Encrypt);
        assert_eq!(all["bob@x.test"].recommendation(false), Recommendation::Available);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("peers.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
