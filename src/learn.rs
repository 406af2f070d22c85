//! Correspondents' keys that Sealpost finds by itself. What incoming mail
//! teaches (Autocrypt Level 1): the sender's `Autocrypt:` header, and the
//! `Autocrypt-Gossip:` headers inside encrypted mail, update the peer
//! state and the key store (sources `autocrypt` and `gossip`). Only mail
//! that arrived teaches: messages fetched through the IMAP proxy and
//! messages given to `sealpost keys learn`; mail the user submits never
//! does. What key discovery finds (the Web Key Directory, a keyserver) is
//! stored by the same rules. Imported keys always win.

use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp::Cert;

use crate::message::lessons;
use crate::metrics::Metrics;
use crate::pgp::{KeyError, KeySource, Learned, LiveKeystore};
use crate::store::peers::PeerStore;

/// Why learning from a message failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// The peer table could not be read or written.
    #[error(transparent)]
    Peers(#[from] crate::files::TableError),
    /// The key store could not be changed.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// One key a message taught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    /// The address it is for.
    pub addr: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Autocrypt or gossip.
    pub source: KeySource,
    /// What the key store did with it.
    pub outcome: Learned,
}

/// Applies the lessons of incoming mail to one data directory.
pub struct Learner {
    keystore: Arc<LiveKeystore>,
    peers: PeerStore,
    metrics: Option<Arc<Metrics>>,
}

impl Learner {
    /// A learner writing to `keystore` and the peer table of its data
    /// directory; counts in `metrics` when given.
    pub fn new(keystore: Arc<LiveKeystore>, data_dir: &std::path::Path, metrics: Option<Arc<Metrics>>) -> Learner {
        Learner {
            keystore,
            peers: PeerStore::new(data_dir),
            metrics,
        }
    }

    /// Learns from one received message (as shown to the user: decrypted
    /// when it was encrypted) and the gossip of its encrypted payload.
    /// Returns what changed in the key store.
    pub fn learn(&self, message: &[u8], gossip: &[String]) -> Result<Vec<Lesson>, LearnError> {
        let Some(lessons) = lessons(message, gossip, SystemTime::now()) else {
            return Ok(Vec::new());
        };
        let accepted = self.peers.apply(&lessons)?;
        let mut taught = Vec::new();
        if let (Some((fingerprint, replaced)), Some(key)) = (&accepted.autocrypt, &lessons.autocrypt) {
            if let Some(lesson) = self.store(&key.cert, &key.addr, KeySource::Autocrypt, fingerprint)? {
                taught.push(lesson);
            }
            if let Some(old) = replaced {
                self.forget_replaced(old)?;
            }
        }
        for (addr, fingerprint) in &accepted.gossip {
            if let Some(key) = lessons.gossip.iter().find(|k| k.addr == *addr) {
                if let Some(lesson) = self.store(&key.cert, &key.addr, KeySource::Gossip, fingerprint)? {
                    taught.push(lesson);
                }
            }
        }
        Ok(taught)
    }

    /// Stores the certificates key discovery found for `addr` (the Web
    /// Key Directory or a keyserver), by the same rules as learnt ones.
    pub fn adopt(&self, certs: &[Cert], addr: &str, source: KeySource) -> Result<Vec<Lesson>, LearnError> {
        let mut taught = Vec::new();
        for cert in certs {
            if let Some(lesson) = self.store(cert, addr, source, &cert.fingerprint().to_hex())? {
                taught.push(lesson);
            }
        }
        Ok(taught)
    }

    /// Puts one key in the store unless it is there already.
    fn store(&self, cert: &Cert, addr: &str, source: KeySource, fingerprint: &str) -> Result<Option<Lesson>, LearnError> {
        if self.keystore.snapshot().knows(cert, source) {
            return Ok(None);
        }
        let outcome = self.keystore.update(|ks| ks.learn(cert.clone(), source, addr))?;
        match &outcome {
            Learned::Shadowed { by } => {
                tracing::warn!(
                    %addr,
                    fingerprint,
                    %source,
                    in_use = %by,
                    "a key learnt for this address differs from the more trusted one in use; it is kept but not used (see 'sealpost keys list')"
                );
                if let Some(m) = &self.metrics {
                    m.key_conflicts.inc();
                }
            }
            Learned::New | Learned::Updated => tracing::info!(%addr, fingerprint, %source, "learnt a key"),
            Learned::Unchanged => {}
        }
        if let Some(m) = &self.metrics {
            if outcome != Learned::Unchanged {
                m.keys_learned.with_label_values(&[&source.to_string()]).inc();
            }
        }
        Ok(Some(Lesson {
            addr: addr.to_string(),
            fingerprint: fingerprint.to_string(),
            source,
            outcome,
        }))
    }

    /// A peer moved to a new Autocrypt key: the old one goes, unless the
    /// user imported it or another source vouches for it.
    fn forget_replaced(&self, fingerprint: &str) -> Result<(), LearnError> {
        let learnt_only = self
            .keystore
            .snapshot()
            .get(fingerprint)
            .is_some_and(|k| k.source == KeySource::Autocrypt);
        if learnt_only {
            self.keystore.update(|ks| ks.remove(fingerprint).map(|_| ()))?;
            tracing::info!(fingerprint, "dropped a peer's previous Autocrypt key");
        }
        Ok(())
    }
}
