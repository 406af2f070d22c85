//! What sessions share: [`Shared`], the same for every session (accounts,
//! caches, side connections, limits), and for one logged-in session what
//! both relay directions know ([`State`]: commands in flight, the
//! selected mailbox, a pending continuation), the client's and the
//! server's stream halves, and why a session ends. Knows no command in
//! particular and does no I/O of its own beyond writing a whole response
//! to the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Mutex};

use super::command::{Fetch, Requested};
use super::framer::FrameError;
use super::indexer::Indexer;
use super::served::Served;
use super::sidefetch::SidePool;
use super::upstream::{Dialer, UpstreamError};
use crate::account::Accounts;
use crate::config::ImapConfig;
use crate::learn::Learner;
use crate::metrics::Metrics;
use crate::pgp::LiveKeystore;
use crate::search::Document;
use crate::store::{MessageCache, SearchIndex};
use crate::tls::LocalTls;

/// What every IMAP session shares.
pub struct Shared {
    /// Limits and the APPEND policy.
    pub limits: ImapConfig,
    /// Signers' certificates for verification.
    pub keystore: Arc<LiveKeystore>,
    /// Learns correspondents' keys from the mail clients read.
    pub learner: Arc<Learner>,
    /// Accounts by login.
    pub accounts: Arc<Accounts>,
    /// The decrypted-message cache of each account, by login.
    pub caches: HashMap<String, Arc<MessageCache>>,
    /// The decrypted messages shown to each account's clients, by login.
    pub served: HashMap<String, Arc<Served>>,
    /// Each account's side connections, by login.
    pub side_pools: HashMap<String, Arc<SidePool>>,
    /// Each account's search index, by login.
    pub indexes: HashMap<String, Arc<SearchIndex>>,
    /// Each account's background indexer, by login.
    pub indexers: HashMap<String, Arc<Indexer>>,
    /// Opens connections to the accounts' IMAP servers.
    pub dialer: Arc<dyn Dialer>,
    /// The local certificate.
    pub tls: LocalTls,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where large literals are spooled (private).
    pub spool_dir: std::path::PathBuf,
}

/// The client's side for reading (any stream: TLS, plain TCP, or an
/// in-memory pipe in tests).
pub type ClientReader = Box<dyn AsyncBufRead + Send + Unpin>;
/// The client's side for writing, shared by both relay directions (each
/// writes whole responses under the lock).
pub type ClientWriter = Arc<Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;
/// The provider's side for reading.
pub type UpstreamReader = Box<dyn AsyncBufRead + Send + Unpin>;
/// The provider's side for writing.
pub type UpstreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Client data arrived in clear after STARTTLS.
    #[error("the client sent data in clear after STARTTLS; connection dropped")]
    Injection,
    /// The provider broke the connection or the protocol.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Sealpost is shutting down; the client heard `* BYE`.
    #[error("closed for shutdown")]
    ShutDown,
}

/// What the client hears when its session is closed by a shutdown.
pub const SHUTDOWN_BYE: &[u8] = b"* BYE [UNAVAILABLE] Sealpost is shutting down\r\n";

/// Writes `bytes` to the client as one piece and flushes.
pub async fn send(writer: &ClientWriter, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = writer.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

/// What both relay directions know about the session.
#[derive(Default)]
pub struct State {
    /// FETCH commands in flight that the proxy extended.
    pub fetches: Vec<InFlight>,
    /// SELECT/EXAMINE (mailbox name) and CLOSE/UNSELECT (`None`) in flight.
    pub(crate) selecting: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The mailbox the client has selected.
    pub selected: Option<Selected>,
    /// UIDVALIDITY announced by the SELECT in flight.
    pub(crate) uidvalidity: Option<u32>,
    /// A command waiting for the server's `+` before it sends a literal.
    pub(crate) continuation: Option<Continuation>,
    /// SPECIAL-USE attributes (`\Drafts`, ...) of mailboxes seen in LIST.
    pub special_use: HashMap<Vec<u8>, Vec<String>>,
    /// Tags of the client's commands sent to the server and not yet
    /// answered, with when they were sent, or `None` for IDLE (which waits
    /// for the client, so a shutdown need not wait for it, and its time
    /// says nothing of the server's).
    pub(crate) in_flight: Vec<(Vec<u8>, Option<std::time::Instant>)>,
    /// The client has sent LOGOUT: the server ending the connection is
    /// what comes next, not a failure.
    pub(crate) logging_out: bool,
    /// Commands the proxy sent on the client's connection for itself
    /// (while answering a SEARCH), by tag: their answers are not the
    /// client's.
    pub(crate) internal: HashMap<Vec<u8>, Internal>,
    /// Internal commands sent so far (their tags count up).
    pub(crate) internal_count: u64,
    /// `* n EXPUNGE` lines that arrived while internal commands were
    /// pending: the client hears them after the answer that was being
    /// computed, which numbers messages as the client knew them.
    pub(crate) withheld_expunges: Vec<Vec<u8>>,
    /// Encrypted uploads waiting for the server's APPENDUID, to be
    /// indexed.
    pub(crate) uploads: Vec<Uploaded>,
}

/// An APPEND of encrypted messages, until the server's answer names
/// their UIDs.
pub(crate) struct Uploaded {
    pub(crate) tag: Vec<u8>,
    /// The mailbox (INBOX normalised).
    pub(crate) mailbox: Vec<u8>,
    /// What each message offers to SEARCH (`None`: not encrypted by
    /// Sealpost, the indexer reads it from the server).
    pub(crate) documents: Vec<Option<Document>>,
}

/// A command the proxy sent for itself, until its tagged answer.
pub(crate) struct Internal {
    /// Its `* ESEARCH (TAG "...")` lines.
    pub(crate) lines: Vec<Vec<u8>>,
    /// How many expunges had been withheld when its first ESEARCH line
    /// came: the server's answer saw the mailbox after those only.
    pub(crate) expunges_at_answer: Option<usize>,
    /// Gets those lines and whether the answer was OK.
    pub(crate) done: oneshot::Sender<InternalAnswer>,
}

/// What the server answered to a command the proxy sent for itself.
pub(crate) struct InternalAnswer {
    /// Its ESEARCH lines.
    pub(crate) lines: Vec<Vec<u8>>,
    /// It said OK.
    pub(crate) ok: bool,
    /// How many expunges had been withheld when its answer came (the
    /// answer saw the mailbox after those; later ones after it).
    pub(crate) expunges_before: usize,
}

/// A command waiting for the server's `+`.
pub(crate) struct Continuation {
    pub(crate) tag: Vec<u8>,
    pub(crate) wake: oneshot::Sender<()>,
    /// The client waits for this `+` too (a literal the proxy relays as
    /// it is), rather than the proxy alone (an APPEND it rewrote).
    pub(crate) forward: bool,
}

/// A FETCH the proxy extended, until its tagged answer.
pub struct InFlight {
    pub(crate) tag: Vec<u8>,
    /// What the client asked for.
    pub fetch: Fetch,
    /// What the proxy added.
    pub added: Vec<Requested>,
}

/// The selected mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its name (decoded, `INBOX` normalised).
    pub mailbox: Vec<u8>,
    /// Its UIDVALIDITY, when the server announced one.
    pub uidvalidity: Option<u32>,
}

impl State {
    /// A command of the client's goes to the server.
    pub(crate) fn sent(&mut self, tag: &[u8], name: &str) {
        let sent = (name != "IDLE").then(std::time::Instant::now);
        self.in_flight.push((tag.to_vec(), sent));
        self.logging_out |= name == "LOGOUT";
    }

    /// Nothing the client asked is waiting for an answer, but IDLE: a
    /// `* BYE` now interrupts no command.
    pub(crate) fn quiescent(&self) -> bool {
        self.in_flight.iter().all(|(_, sent)| sent.is_none())
    }

    /// The command tagged `tag` was answered (by the server or, when it
    /// never reached the server, by the proxy).
    /// Returns how long the server took, for a command sent to it (IDLE
    /// aside).
    pub(crate) fn complete(&mut self, tag: &[u8], ok: bool) -> Option<std::time::Duration> {
        let waited = self
            .in_flight
            .iter()
            .find(|(t, _)| t == tag)
            .and_then(|(_, sent)| sent.map(|at| at.elapsed()));
        self.in_flight.retain(|(t, _)| t != tag);
        if !ok {
            self.uploads.retain(|u| u.tag != tag);
        }
        self.fetches.retain(|f| f.tag != tag);
        if let Some(i) = self.selecting.iter().position(|(t, _)| t == tag) {
            let (_, mailbox) = self.selecting.remove(i);
            let uidvalidity = self.uidvalidity.take();
            // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
            self.selected = match (ok, mailbox) {
                (true, Some(mailbox)) => Some(Selected { mailbox, uidvalidity }),
                _ => None,
            };
        }
        if self.continuation.as_ref().is_some_and(|c| c.tag == tag) {
            // Dropping the sender tells the APPEND the server answered
            // instead of inviting the literal.
            self.continuation = None;
        }
        waited
    }
}

/// Registers interest in the server's next `+` for the command tagged
/// `tag`: the receiver fires on `+`, and fails when the server answered
/// the command instead. `forward`: the client is waiting for that `+`
/// as well.
pub fn await_continuation(state: &SyncMutex<State>, tag: &[u8], forward: bool) -> oneshot::Receiver<()> {
    let (wake, rx) = oneshot::channel();
    state.lock().expect("state lock").continuation = Some(Continuation {
        tag: tag.to_vec(),
        wake,
        forward,
    });
    rx
}

/// What the FETCH commands in flight asked for and what the proxy added.
pub struct Requests {
    /// Every item some FETCH in flight asked for.
    pub asked: Vec<Requested>,
    /// Items only the proxy asked for (removed from answers).
    pub added: Vec<Requested>,
    /// The selected mailbox.
    pub selected: Option<Selected>,
}

impl Requests {
    pub(crate) fn of(state: &State) -> Requests {
        let asked: Vec<Requested> = state.fetches.iter().flat_map(|f| f.fetch.items.iter().cloned()).collect();
        let added = state
            .fetches
            .iter()
            .flat_map(|f| f.added.iter())
            .filter(|a| !asked.iter().any(|r| r.item.same_answer(&a.item)))
            .cloned()
            .collect();
        Requests {
            asked,
            added,
            selected: state.selected.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completing_commands_updates_the_state() {
        let mut s = State::default();
        s.selecting.push((b"a".to_vec(), Some(b"INBOX".to_vec())));
        s.uidvalidity = Some(7);
        s.complete(b"a", true);
        assert_eq!(
            s.selected,
            Some(Selected {
                mailbox: b"INBOX".to_vec(),
                uidvalidity: Some(7)
            })
        );
        s.selecting.push((b"b".to_vec(), Some(b"Nope".to_vec())));
        s.complete(b"b", false);
        assert_eq!(s.selected, None);
    }
}
