//! The background indexer: one task per account that keeps its search
//! index complete, so that searches rarely wait for indexing.
//!
//! Sealpost learns an account's server password only when a client logs
//! in through it, so the indexer starts with the first session's
//! credentials (kept in memory only) and then runs for the life of the
//! process on a connection of its own, read-only (EXAMINE, BODY.PEEK):
//!
//! 1. every selectable mailbox: messages the index lacks are fetched,
//!    decrypted and indexed in batches of [`BATCH`], at most
//!    [`MAX_RATE`] messages a second; UIDs gone from the server are
//!    forgotten, and a new UIDVALIDITY starts the mailbox afresh
//!    ([`SearchIndex::mailbox`]). What is indexed is committed batch by
//!    batch, so a restart resumes where it stopped. Where the server
//!    keeps mod-sequences (CONDSTORE, RFC 7162), a mailbox unchanged
//!    since the index last held all of it costs one EXAMINE, and with
//!    QRESYNC the EXAMINE names what was expunged and added meanwhile;
//!    elsewhere every UID is listed and compared with the index.
//!    A message over `imap.max_message_size` is indexed by its header.
//! 2. then IDLE on INBOX: new mail is indexed as soon as the server
//!    announces it; every [`FULL_PASS`] all mailboxes are walked again.
//!
//! A failure (the server unreachable, the connection dropped) is logged
//! and retried with growing pauses. A refused login stops the task until
//! the next client session brings credentials that work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::Credentials;
use super::sidefetch::{header_length, Fetched, SideConn, Want};
use super::upstream::{Dialer, UpstreamError};
use super::view::MessageView;
use crate::account::Account;
use crate::config::SearchMode;
use crate::message::Protection;
use crate::metrics::Metrics;
use crate::pgp::{Keystore, LiveKeystore};
use crate::search::{Coverage, Document};
use crate::store::{IndexError, MailboxId, SearchIndex};

/// Messages fetched per round trip.
pub const BATCH: usize = 50;
/// At most this many messages a second are indexed in the background.
pub const MAX_RATE: u32 = 200;
/// How often every mailbox is walked again (INBOX is watched with IDLE).
pub const FULL_PASS: Duration = Duration::from_secs(600);
/// The longest pause between retries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One account's background indexer.
pub struct Indexer {
    account: Arc<Account>,
    dialer: Arc<dyn Dialer>,
    index: Arc<SearchIndex>,
    keystore: Arc<LiveKeystore>,
    metrics: Arc<Metrics>,
    max_size: u64,
    search: SearchMode,
    running: AtomicBool,
    /// Messages a client fetched being indexed now.
    fetched_in_flight: AtomicUsize,
}

/// At most this many messages a client fetched are indexed at once per
/// account; beyond, they are left to the background pass.
const FETCHED_IN_FLIGHT: usize = 2;

impl Indexer {
    /// An indexer for `account`'s `index`, not yet running.
    pub fn new(
        account: Arc<Account>,
        dialer: Arc<dyn Dialer>,
        index: Arc<SearchIndex>,
        keystore: Arc<LiveKeystore>,
        metrics: Arc<Metrics>,
        max_size: u64,
        search: SearchMode,
    ) -> Arc<Indexer> {
        Arc::new(Indexer {
            account,
            dialer,
            index,
            keystore,
            metrics,
            max_size,
            search,
            running: AtomicBool::new(false),
            fetched_in_flight: AtomicUsize::new(0),
        })
    }

    /// Indexes what the client uploaded (Sealpost encrypted it, so only
    /// it can) as `uids` of `mailbox` under `uidvalidity`, in order; a
    /// `None` document is left to the indexer. In the background.
    pub fn index_uploaded(self: &Arc<Self>, mailbox: Vec<u8>, uidvalidity: u32, uids: Vec<u32>, documents: Vec<Option<Document>>) {
        let indexer = self.clone();
        tokio::task::spawn_blocking(move || {
            let index = &indexer.index;
            let result = index.mailbox(&mailbox, uidvalidity).and_then(|id| {
                let batch: Vec<(u32, Option<i64>, &Document)> = uids
                    .iter()
                    .zip(&documents)
                    .filter_map(|(&uid, document)| Some((uid, None, document.as_ref()?)))
                    .collect();
                index.put_all(id, &batch)?;
                indexer.metrics.search_indexed.inc_by(batch.len() as u64);
                Ok(())
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot index an uploaded message");
            }
        });
    }

    /// Indexes `message` (as the client was shown it) as `uid` of
    /// `mailbox` under `uidvalidity`, in the background and only if it is
    /// not indexed yet: the decryption a client's FETCH paid for is not
    /// paid again by the indexer. Its arrival is asked of the server when
    /// a SORT or THREAD needs it.
    pub fn index_shown(self: &Arc<Self>, mailbox: Vec<u8>, uidvalidity: u32, uid: u32, message: Vec<u8>) {
        if self.fetched_in_flight.fetch_add(1, Ordering::AcqRel) >= FETCHED_IN_FLIGHT {
            self.fetched_in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let indexer = self.clone();
        tokio::task::spawn_blocking(move || {
            let index = &indexer.index;
            let result = index.mailbox(&mailbox, uidvalidity).and_then(|id| {
                if !index.contains(id, uid)? {
                    index.put(id, uid, None, &MessageView::parse(&message).search_text())?;
                    indexer.metrics.search_indexed.inc();
                }
                Ok(())
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot index a fetched message");
            }
            indexer.fetched_in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Starts the indexer with `credentials` unless it is running.
    pub fn start(self: &Arc<Self>, credentials: &Credentials) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (indexer, credentials) = (self.clone(), credentials.clone());
        tokio::spawn(async move {
            indexer.run(credentials).await;
            indexer.running.store(false, Ordering::Release);
        });
    }

    async fn run(&self, credentials: Credentials) {
        let mut backoff = Duration::from_secs(5);
        loop {
            let error = match SideConn::open(&*self.dialer, &self.account, &credentials).await {
                Ok(conn) => {
                    backoff = Duration::from_secs(5);
                    self.session(conn).await
                }
                Err(UpstreamError::Refused { .. }) => {
                    tracing::warn!("the background indexer's login was refused; it waits for the next client session");
                    return;
                }
                Err(e) => e,
            };
            tracing::warn!(error = %error, retry_in = backoff.as_secs(), "background indexing stopped");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Indexes and watches until the connection fails.
    async fn session(&self, mut conn: SideConn) -> UpstreamError {
        if let Err(e) = conn.enable_qresync().await {
            return e;
        }
        loop {
            let started = Instant::now();
            let mailboxes = match conn.mailboxes().await {
                Ok(mailboxes) => mailboxes,
                Err(e) => return e,
            };
            let (mut indexed, mut unchanged) = (0, 0);
            for mailbox in &mailboxes {
                match self.catch_up(&mut conn, mailbox).await {
                    Ok(Some(n)) => indexed += n,
                    Ok(None) => unchanged += 1,
                    Err(Failure::Upstream(e)) => return e,
                    Err(Failure::Index(e)) => tracing::warn!(error = %e, "cannot index a mailbox"),
                }
            }
            tracing::info!(
                mailboxes = mailboxes.len(),
                unchanged,
                indexed,
                seconds = started.elapsed().as_secs(),
                "search index is up to date"
            );
            // INBOX: new mail is indexed as it arrives, until the next pass.
            let next_pass = Instant::now() + FULL_PASS;
            loop {
                let left = next_pass.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Err(e) = conn.examine(b"INBOX").await {
                    return e;
                }
                match conn.wait_for_change(left).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return e,
                }
                match self.catch_up(&mut conn, b"INBOX").await {
                    Ok(_) => {}
                    Err(Failure::Index(e)) => tracing::warn!(error = %e, "cannot index a mailbox"),
                    Err(Failure::Upstream(e)) => return e,
                }
            }
        }
    }

    /// Brings `mailbox` up to date in the index; the number indexed, or
    /// `None` when the server says nothing changed since the last time.
    ///
    /// Where the server keeps mod-sequences (CONDSTORE), a mailbox whose
    /// HIGHESTMODSEQ has not moved since the index last held all of it
    /// costs one EXAMINE; with QRESYNC, that EXAMINE also names what was
    /// expunged and what is new. Otherwise, and whenever the counts do
    /// not add up, every UID is asked for.
    async fn catch_up(&self, conn: &mut SideConn, mailbox: &[u8]) -> Result<Option<usize>, Failure> {
        let index = self.index.clone();
        let name = mailbox.to_vec();
        let known = blocking(move || index.synced(&name)).await?;
        let since = known.and_then(|(uidvalidity, modseq)| Some((uidvalidity, modseq?)));
        let examined = conn.examine_since(mailbox, since).await?;
        let now = examined.highest_modseq.map(|modseq| (examined.uidvalidity, modseq));
        if now.is_some() && now == since {
            return Ok(None);
        }
        let index = self.index.clone();
        let name = mailbox.to_vec();
        let changes = examined.changes.filter(|_| since.is_some_and(|(v, _)| v == examined.uidvalidity));
        let (uidvalidity, exists) = (examined.uidvalidity, examined.exists);
        let (mailbox_id, missing) = blocking(move || {
            let id = index.mailbox(&name, uidvalidity)?;
            let missing = match changes {
                Some(changes) => index.apply_changes(id, &changes.vanished, &changes.changed, exists)?,
                None => None,
            };
            Ok((id, missing))
        })
        .await?;
        let (missing, found_by) = match missing {
            Some(missing) => (missing, "qresync"),
            None => {
                let on_server = conn.uids().await?;
                let index = self.index.clone();
                (blocking(move || index.sync(mailbox_id, &on_server)).await?, "uid-list")
            }
        };
        let indexed = self.index_missing(conn, mailbox, mailbox_id, &missing, found_by).await?;
        if let Some(modseq) = examined.highest_modseq {
            let index = self.index.clone();
            blocking(move || index.set_synced(mailbox_id, modseq)).await?;
        }
        Ok(Some(indexed))
    }

    /// Fetches, decrypts and indexes the messages `missing` of `mailbox`
    /// (the index's `mailbox_id`), at most [`MAX_RATE`] a second; the
    /// number indexed. `found_by` says how they were found, for the log.
    async fn index_missing(
        &self,
        conn: &mut SideConn,
        mailbox: &[u8],
        mailbox_id: MailboxId,
        missing: &[u32],
        found_by: &str,
    ) -> Result<usize, Failure> {
        if missing.is_empty() {
            return Ok(0);
        }
        tracing::info!(messages = missing.len(), found_by, "indexing a mailbox in the background");
        self.metrics.search_backlog.add(missing.len() as i64);
        let mut done = 0;
        let result = async {
            for batch in missing.chunks(BATCH) {
                let started = Instant::now();
                let fetched = conn.fetch(mailbox, &sequence_set(batch), Want::Messages, self.max_size).await?;
                let keystore = self.keystore.snapshot();
                let (index, account, metrics, search) = (self.index.clone(), self.account.clone(), self.metrics.clone(), self.search);
                blocking(move || index_fetched(&index, mailbox_id, fetched, &account, &keystore, &metrics, search)).await?;
                done += batch.len();
                self.metrics.search_backlog.sub(batch.len() as i64);
                // At most MAX_RATE messages a second.
                let budget = Duration::from_secs_f64(batch.len() as f64 / f64::from(MAX_RATE));
                tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
            }
            Ok(done)
        }
        .await;
        self.metrics.search_backlog.sub((missing.len() - done) as i64);
        result
    }
}

/// Why a mailbox could not be brought up to date.
enum Failure {
    /// The connection failed: start over.
    Upstream(UpstreamError),
    /// The index failed: go on with the next mailbox.
    Index(IndexError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Failure {
        Failure::Upstream(e)
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, IndexError> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(Failure::Index)
}

/// Indexes fetched messages as the client sees them (decrypted when
/// encrypted); with `search` hybrid, plaintext ones by their header.
/// Blocking: decryption and index writes.
pub fn index_fetched(
    index: &SearchIndex,
    mailbox: MailboxId,
    fetched: Vec<Fetched>,
    account: &Account,
    keystore: &Keystore,
    metrics: &Metrics,
    search: SearchMode,
) -> Result<(), IndexError> {
    let documents: Vec<(u32, i64, Document)> = fetched
        .into_iter()
        .map(|message| {
            let raw = &message.message;
            let header_only = |size, coverage| Document {
                size,
                coverage,
                ..MessageView::parse(&raw[..header_length(raw)]).search_text()
            };
            let encrypted = || crate::message::protection(raw) == Protection::Encrypted;
            let document = match message.over_limit {
                // Only the header was read; it cannot be decrypted.
                Some(size) => header_only(size, Coverage::OverLimit),
                None if !encrypted() => match search {
                    SearchMode::Hybrid => header_only(raw.len() as u64, Coverage::PlaintextHeader),
                    SearchMode::Local => MessageView::parse(raw).search_text(),
                },
                None => MessageView::parse(&decrypted(raw, account, keystore)).search_text(),
            };
            (message.uid, message.arrival, document)
        })
        .collect();
    let batch: Vec<(u32, Option<i64>, &Document)> = documents.iter().map(|(uid, arrival, d)| (*uid, Some(*arrival), d)).collect();
    index.put_all(mailbox, &batch)?;
    metrics.search_indexed.inc_by(batch.len() as u64);
    Ok(())
}

/// The encrypted message `raw` as the client sees it: decrypted.
fn decrypted(raw: &[u8], account: &Account, keystore: &Keystore) -> Vec<u8> {
    let outcome = crate::message::decrypt_message(raw, std::slice::from_ref(&account.key), keystore);
    crate::mime::to_crlf(&outcome.message).into_owned()
}

/// Numbers as an IMAP sequence set in their order, a run of consecutive
/// ascending numbers as a range (`1:3,5`; `5,3,1:2` for a sort order).
pub fn sequence_set(ids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i].wrapping_add(1) {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if ids[i] == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{}", ids[i]));
        }
        i += 1;
    }
    out
}
