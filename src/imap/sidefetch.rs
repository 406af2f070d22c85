//! Side connections: read-only logins at the provider that fetch whole
//! messages with `BODY.PEEK[]` (so flags never change) when the proxy
//! needs one the client's own command did not carry: an encrypted message
//! to decrypt, or the original ciphertext of a message the client uploads
//! back.
//!
//! Providers limit logins per user and address (Dovecot allows 10), and a
//! mail client opens several sessions, so the side connections are not
//! per session: each account has one [`SidePool`] of at most
//! `imap.side_connections`, shared by all its sessions, each connection
//! closed after [`IDLE_TIMEOUT`] unused. A session borrows one for a
//! single fetch through its [`SideFetcher`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::auth::Credentials;
use super::framer;
use super::response::number_set;
use super::upstream::{Dialer, Upstream, UpstreamError, MAX_LINE};
use crate::account::Account;
use crate::metrics::Metrics;

/// A side connection unused for this long is logged out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One account's side connections.
pub struct SidePool {
    account: Arc<Account>,
    dialer: Arc<dyn Dialer>,
    max_size: u64,
    /// One permit per connection that may be open (idle or lent out).
    slots: Semaphore,
    idle: SyncMutex<Vec<Idle>>,
    /// A reaper task is watching the idle connections.
    reaping: AtomicBool,
    metrics: Arc<Metrics>,
}

/// A logged-in, read-only connection and the mailbox it has open.
pub(crate) struct SideConn {
    upstream: Upstream,
    examined: Option<Vec<u8>>,
    /// `ENABLE QRESYNC` succeeded: EXAMINE can ask what changed, and
    /// expunges are announced as `VANISHED`.
    qresync: bool,
}

struct Idle {
    conn: SideConn,
    since: Instant,
}

/// What a side fetch asks for besides UID and INTERNALDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The whole message (`BODY.PEEK[]`).
    Messages,
    /// Nothing more: arrival times only.
    Arrivals,
}

/// A message fetched on a side connection.
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// Its INTERNALDATE, seconds since the epoch (0 when the server gave
    /// none that reads).
    pub arrival: i64,
    /// The message as stored (empty when only arrivals were asked for);
    /// its header only when it is over the size limit.
    pub message: Vec<u8>,
    /// `Some(size)` when the message was over the size limit
    /// (`imap.max_message_size`): only its header was kept.
    pub over_limit: Option<u64>,
}

/// Of a message over the size limit, at most this much is read to find
/// its header; the rest is read past.
const HEAD_KEPT: u64 = 256 * 1024;

/// What EXAMINE reported of a mailbox.
pub(crate) struct Examined {
    /// Its UIDVALIDITY (0 when the server names none).
    pub uidvalidity: u32,
    /// Its HIGHESTMODSEQ (CONDSTORE), when the server reports one.
    pub highest_modseq: Option<u64>,
    /// How many messages it holds.
    pub exists: usize,
    /// QRESYNC: what changed since the mod-sequence the EXAMINE named,
    /// when the server answered with changes.
    pub changes: Option<Changes>,
}

/// What changed in a mailbox since a mod-sequence (QRESYNC, RFC 7162).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// UIDs expunged (`VANISHED (EARLIER)`).
    pub vanished: Vec<u32>,
    /// UIDs whose flags changed, or that are new (their `FETCH`).
    pub changed: Vec<u32>,
}

/// A session's way to its account's pool, with the credentials a new
/// connection logs in with.
pub struct SideFetcher {
    pool: Arc<SidePool>,
    credentials: Credentials,
}

impl SidePool {
    /// A pool for `account` of at most `size` connections opened through
    /// `dialer`, refusing messages over `max_size` octets.
    pub fn new(account: Arc<Account>, dialer: Arc<dyn Dialer>, size: usize, max_size: u64, metrics: Arc<Metrics>) -> Arc<SidePool> {
        Arc::new(SidePool {
            account,
            dialer,
            max_size,
            slots: Semaphore::new(size),
            idle: SyncMutex::new(Vec::new()),
            reaping: AtomicBool::new(false),
            metrics,
        })
    }

    /// A fetcher for a session that logged in with `credentials` (they
    /// open new connections; the pool's connections all belong to the
    /// same account, whichever session opened them).
    pub fn fetcher(self: &Arc<Self>, credentials: Credentials) -> SideFetcher {
        SideFetcher {
            pool: self.clone(),
            credentials,
        }
    }

    /// The raw messages of `mailbox` whose UIDs are in `set` (an IMAP
    /// UID set), with their UIDs, on an idle connection or a new one;
    /// waits while every connection is lent out. One retry on a fresh
    /// connection when a reused one fails (servers close idle ones).
    async fn fetch(
        self: &Arc<Self>,
        credentials: &Credentials,
        mailbox: &[u8],
        set: &str,
        want: Want,
    ) -> Result<Vec<Fetched>, UpstreamError> {
        let _slot = self.slots.acquire().await.expect("the pool's semaphore is never closed");
        if let Some(mut conn) = self.take_idle() {
            self.metrics.imap_side_connections.with_label_values(&["reused"]).inc();
            match conn.fetch(mailbox, set, want, self.max_size).await {
                Ok(messages) => {
                    self.put_back(conn);
                    return Ok(messages);
                }
                Err(e) => tracing::debug!(error = %e, "side connection failed; opening a new one"),
            }
        }
        let mut conn = self.open(credentials).await?;
        self.metrics.imap_side_connections.with_label_values(&["opened"]).inc();
        let messages = conn.fetch(mailbox, set, want, self.max_size).await?;
        self.put_back(conn);
        Ok(messages)
    }

    async fn open(&self, credentials: &Credentials) -> Result<SideConn, UpstreamError> {
        SideConn::open(&*self.dialer, &self.account, credentials).await
    }

    /// The most recently used idle connection that is not stale.
    fn take_idle(&self) -> Option<SideConn> {
        self.close_stale();
        self.idle.lock().expect("pool lock").pop().map(|i| i.conn)
    }

    /// Returns a connection to the pool, and makes sure a reaper will
    /// close it if it stays unused. One reaper per pool at a time: a side
    /// fetch is on the path of every header download, so it must not
    /// leave a timer task behind each time.
    fn put_back(self: &Arc<Self>, conn: SideConn) {
        self.idle.lock().expect("pool lock").push(Idle {
            conn,
            since: Instant::now(),
        });
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.close_stale();
                // Stop when nothing is left to watch, unless a connection
                // came back meanwhile and this reaper wins the flag again.
                pool.reaping.store(false, Ordering::Release);
                if pool.idle.lock().expect("pool lock").is_empty() || pool.reaping.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    fn close_stale(&self) {
        let now = Instant::now();
        let stale: Vec<Idle> = {
            let mut idle = self.idle.lock().expect("pool lock");
            let (fresh, stale) = idle.drain(..).partition(|i| now.duration_since(i.since) < IDLE_TIMEOUT);
            *idle = fresh;
            stale
        };
        stale.into_iter().for_each(|i| i.conn.close());
    }
}

impl SideFetcher {
    /// The raw message `uid` of `mailbox`.
    pub async fn fetch(&self, mailbox: &[u8], uid: u32) -> Result<Vec<u8>, UpstreamError> {
        let messages = self
            .pool
            .fetch(&self.credentials, mailbox, &uid.to_string(), Want::Messages)
            .await?;
        let server = || self.pool.account.imap.as_ref().map(ToString::to_string).unwrap_or_default();
        match messages.into_iter().find(|f| f.uid == uid) {
            Some(Fetched {
                over_limit: Some(size), ..
            }) => Err(UpstreamError::protocol(
                &server(),
                format!("message UID {uid} of {size} octets is over imap.max_message_size"),
            )),
            Some(fetched) => Ok(fetched.message),
            None => Err(UpstreamError::protocol(&server(), format!("message UID {uid} is gone"))),
        }
    }

    /// The raw messages of `mailbox` whose UIDs are in `set`, with their
    /// UIDs and arrival (those expunged meanwhile are missing).
    pub async fn fetch_set(&self, mailbox: &[u8], set: &str) -> Result<Vec<Fetched>, UpstreamError> {
        self.pool.fetch(&self.credentials, mailbox, set, Want::Messages).await
    }

    /// The INTERNALDATE of the messages of `mailbox` whose UIDs are in
    /// `set`, by UID.
    pub async fn arrivals(&self, mailbox: &[u8], set: &str) -> Result<Vec<(u32, i64)>, UpstreamError> {
        let fetched = self.pool.fetch(&self.credentials, mailbox, set, Want::Arrivals).await?;
        Ok(fetched.into_iter().map(|f| (f.uid, f.arrival)).collect())
    }
}

impl SideConn {
    /// Logs in to `account`'s server with `credentials`.
    pub(crate) async fn open(dialer: &dyn Dialer, account: &Account, credentials: &Credentials) -> Result<SideConn, UpstreamError> {
        let mut upstream = dialer.dial(account).await?;
        let answer = upstream.login(credentials).await?;
        if !answer.is_ok() {
            return Err(UpstreamError::Refused {
                server: upstream.server.clone(),
                answer: format!(
                    "a second login (to fetch messages to decrypt and index) was refused: {}",
                    answer.text()
                ),
            });
        }
        Ok(SideConn {
            upstream,
            examined: None,
            qresync: false,
        })
    }

    /// Turns QRESYNC on where the server offers it (RFC 7162 §3.2.3), so
    /// that [`Self::examine_since`] learns what changed in one answer.
    pub(crate) async fn enable_qresync(&mut self) -> Result<(), UpstreamError> {
        if self.upstream.has("QRESYNC") {
            self.qresync = self.upstream.command(b"ENABLE QRESYNC").await?.is_ok();
        }
        Ok(())
    }

    /// Opens `mailbox` read-only (again, to see what changed) and returns
    /// its UIDVALIDITY (0 when the server names none).
    pub(crate) async fn examine(&mut self, mailbox: &[u8]) -> Result<u32, UpstreamError> {
        Ok(self.examine_since(mailbox, None).await?.uidvalidity)
    }

    /// Opens `mailbox` read-only, with its mod-sequences where the server
    /// keeps them (CONDSTORE), and with QRESYNC on, asks what changed
    /// since `known` (the UIDVALIDITY and HIGHESTMODSEQ seen before).
    pub(crate) async fn examine_since(&mut self, mailbox: &[u8], known: Option<(u32, u64)>) -> Result<Examined, UpstreamError> {
        let conn = &mut self.upstream;
        let mut command = b"EXAMINE ".to_vec();
        conn.push_astring(&mut command, mailbox)?;
        match known {
            Some((uidvalidity, modseq)) if self.qresync => {
                command.extend_from_slice(format!(" (QRESYNC ({uidvalidity} {modseq}))").as_bytes());
            }
            _ if !self.qresync && conn.has("CONDSTORE") => command.extend_from_slice(b" (CONDSTORE)"),
            _ => {}
        }
        let answer = conn.command(&command).await?;
        if !answer.is_ok() {
            self.examined = None;
            return Err(UpstreamError::Protocol {
                server: conn.server.clone(),
                reason: format!("EXAMINE failed: {}", answer.text()),
            });
        }
        self.examined = Some(mailbox.to_vec());
        let asked_changes = known.is_some() && self.qresync;
        Ok(examined(&answer.untagged, asked_changes))
    }

    /// The UIDs of the mailbox examined, ascending.
    pub(crate) async fn uids(&mut self) -> Result<Vec<u32>, UpstreamError> {
        let esearch = self.upstream.has("ESEARCH");
        let command: &[u8] = if esearch {
            b"UID SEARCH RETURN (ALL) ALL"
        } else {
            b"UID SEARCH ALL"
        };
        let answer = self.upstream.command(command).await?;
        if !answer.is_ok() {
            return Err(UpstreamError::protocol(
                &self.upstream.server,
                format!("UID SEARCH failed: {}", answer.text()),
            ));
        }
        let mut uids: Vec<u32> = Vec::new();
        for line in &answer.untagged {
            match crate::imap::response::search_numbers(line) {
                Some(numbers) => uids.extend(numbers),
                None => uids.extend(crate::imap::response::esearch_all(line)),
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The mailboxes that can be opened (`LIST "" "*"`, names sent as
    /// quoted strings or atoms).
    pub(crate) async fn mailboxes(&mut self) -> Result<Vec<Vec<u8>>, UpstreamError> {
        let answer = self.upstream.command(b"LIST \"\" \"*\"").await?;
        if !answer.is_ok() {
            return Err(UpstreamError::protocol(
                &self.upstream.server,
                format!("LIST failed: {}", answer.text()),
            ));
        }
        Ok(answer
            .untagged
            .iter()
            .filter_map(|line| crate::imap::response::selectable_mailbox(line))
            .collect())
    }

    /// Waits in IDLE on the mailbox examined until the server reports new
    /// or expunged messages (true) or `limit` passes (false).
    pub(crate) async fn wait_for_change(&mut self, limit: std::time::Duration) -> Result<bool, UpstreamError> {
        let server = self.upstream.server.clone();
        let tag = self.upstream.next_tag();
        self.upstream.write(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = false;
        let mut idling = false;
        let mut line = Vec::new();
        loop {
            let read = framer::read_segment(&mut self.upstream.conn, MAX_LINE, &mut line);
            let read = if idling && !changed {
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        self.upstream.write(b"DONE\r\n").await?;
                        idling = false;
                        continue;
                    }
                }
            } else {
                read.await
            };
            read.map_err(|e| UpstreamError::protocol(&server, e.to_string()))?;
            if line.is_empty() {
                return Err(UpstreamError::protocol(&server, "the server closed the connection"));
            }
            let upper = line.to_ascii_uppercase();
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                if !upper[tag.len() + 1..].starts_with(b"OK") {
                    return Err(UpstreamError::protocol(
                        &server,
                        format!("IDLE failed: {}", String::from_utf8_lossy(&line).trim_end()),
                    ));
                }
                return Ok(changed);
            }
            if line.starts_with(b"+") {
                idling = true;
            } else if !changed && (upper.ends_with(b" EXISTS\r\n") || upper.ends_with(b" EXPUNGE\r\n") || upper.starts_with(b"* VANISHED "))
            {
                changed = true;
                if idling {
                    self.upstream.write(b"DONE\r\n").await?;
                }
            }
        }
    }

    /// Logs out in the background (politely, so the provider's log does
    /// not show a dropped connection), bounded in time.
    pub(crate) fn close(mut self) {
        tokio::spawn(async move {
            let logout = format!("{} LOGOUT\r\n", self.upstream.next_tag());
            let logout = self.upstream.write(logout.as_bytes());
            let _ = tokio::time::timeout(Duration::from_secs(5), logout).await;
        });
    }

    /// The messages of `mailbox` whose UIDs are in `set`, each at most
    /// `max_size` octets.
    pub(crate) async fn fetch(&mut self, mailbox: &[u8], set: &str, want: Want, max_size: u64) -> Result<Vec<Fetched>, UpstreamError> {
        let reused = self.examined.as_deref() == Some(mailbox);
        if !reused {
            self.examine(mailbox).await?;
        }
        let fetched = self.fetch_examined(set, want, max_size).await?;
        // A connection that had the mailbox open already may not know of
        // messages that arrived since: Dovecot answers a UID FETCH of
        // those with nothing (it looks for new mail only after the
        // command, and even a NOOP sent in the same write comes too
        // late). When some are missing, a NOOP, then once more.
        if reused && fetched.len() < number_set(set).map_or(0, |n| n.len()) {
            let answer = self.upstream.command(b"NOOP").await?;
            if answer.is_ok() {
                return self.fetch_examined(set, want, max_size).await;
            }
        }
        Ok(fetched)
    }

    /// `fetch` on the mailbox examined.
    async fn fetch_examined(&mut self, set: &str, want: Want, max_size: u64) -> Result<Vec<Fetched>, UpstreamError> {
        let conn = &mut self.upstream;
        let tag = conn.next_tag();
        let items = match want {
            Want::Messages => "UID INTERNALDATE BODY.PEEK[]",
            Want::Arrivals => "UID INTERNALDATE",
        };
        conn.write(format!("{tag} UID FETCH {set} ({items})\r\n").as_bytes()).await?;
        let mut messages = Vec::new();
        // The lines of the FETCH response being read, and its message.
        let mut response: Vec<u8> = Vec::new();
        let mut message = None;
        let mut over_limit = None;
        let mut line = Vec::new();
        loop {
            let literal = framer::read_segment(&mut conn.conn, MAX_LINE, &mut line)
                .await
                .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
            if line.is_empty() {
                return Err(UpstreamError::protocol(&conn.server, "the server closed the connection"));
            }
            if response.is_empty() && line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let status = String::from_utf8_lossy(&line[tag.len() + 1..]).trim_end().to_string();
                if !status.to_ascii_uppercase().starts_with("OK") {
                    return Err(UpstreamError::protocol(&conn.server, format!("UID FETCH failed: {status}")));
                }
                return Ok(messages);
            }
            response.extend_from_slice(&line);
            let Some(announced) = literal else {
                let message = match want {
                    Want::Messages => message.take(),
                    Want::Arrivals => Some(Vec::new()),
                };
                if let (Some(uid), Some(message)) = (uid_of(&response), message) {
                    let arrival = internal_date(&response).unwrap_or(0);
                    messages.push(Fetched {
                        uid,
                        arrival,
                        message,
                        over_limit: over_limit.take(),
                    });
                }
                response.clear();
                continue;
            };
            // A message over the limit is read past, but for its header:
            // the connection stays usable, and the indexer can still
            // index what the header says.
            let kept = if announced.size > max_size {
                announced.size.min(HEAD_KEPT)
            } else {
                announced.size
            };
            let mut bytes = Vec::with_capacity(kept as usize);
            (&mut conn.conn)
                .take(kept)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
            let skipped = tokio::io::copy(&mut (&mut conn.conn).take(announced.size - kept), &mut tokio::io::sink())
                .await
                .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
            if (bytes.len() as u64) + skipped < announced.size {
                return Err(UpstreamError::protocol(&conn.server, "connection closed inside a literal"));
            }
            if announced.size > max_size {
                bytes.truncate(header_length(&bytes));
                over_limit = Some(announced.size);
            }
            if message.is_none() && line.to_ascii_uppercase().windows(7).any(|w| w == b"BODY[] ") {
                message = Some(bytes);
            }
        }
    }
}

/// What the untagged lines of an EXAMINE answer say of the mailbox;
/// `asked_changes`: the command asked QRESYNC for what changed.
fn examined(untagged: &[Vec<u8>], asked_changes: bool) -> Examined {
    let mut examined = Examined {
        uidvalidity: 0,
        highest_modseq: None,
        exists: 0,
        changes: asked_changes.then(Changes::default),
    };
    for line in untagged {
        let text = String::from_utf8_lossy(line).to_ascii_uppercase();
        let words: Vec<&str> = text.split_whitespace().collect();
        let code = |name: &str| -> Option<u64> {
            let rest = &text[text.find(&format!("[{name} "))? + name.len() + 2..];
            rest[..rest.find(']')?].trim().parse().ok()
        };
        if let Some(v) = code("UIDVALIDITY") {
            examined.uidvalidity = v as u32;
        } else if let Some(m) = code("HIGHESTMODSEQ") {
            examined.highest_modseq = Some(m);
        } else if let ["*", n, "EXISTS"] = words[..] {
            examined.exists = n.parse().unwrap_or(0);
        } else if let (Some(changes), ["*", "VANISHED", "(EARLIER)", set]) = (&mut examined.changes, &words[..]) {
            changes.vanished.extend(number_set(set).unwrap_or_default());
        } else if let (Some(changes), ["*", _, "FETCH", ..]) = (&mut examined.changes, &words[..]) {
            changes.changed.extend(uid_of(line));
        }
    }
    examined
}

/// The length of a message's header, its blank line included (all of
/// `message` when no blank line ends it).
pub(crate) fn header_length(message: &[u8]) -> usize {
    let crlf = memchr::memmem::find(message, b"\r\n\r\n").map(|at| at + 4);
    let lf = memchr::memmem::find(message, b"\n\n").map(|at| at + 2);
    crlf.into_iter().chain(lf).min().unwrap_or(message.len())
}

/// The UID a FETCH response names (`UID n` anywhere in its lines).
fn uid_of(response: &[u8]) -> Option<u32> {
    let upper = response.to_ascii_uppercase();
    let at = upper.windows(4).position(|w| w == b"UID ")?;
    let digits: String = upper[at + 4..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

/// The INTERNALDATE a FETCH response names (`"dd-Mon-yyyy hh:mm:ss
/// +zzzz"`), as seconds since the epoch.
fn internal_date(response: &[u8]) -> Option<i64> {
    let upper = response.to_ascii_uppercase();
    let at = upper.windows(14).position(|w| w == b"INTERNALDATE \"")? + 14;
    let end = at + upper[at..].iter().position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&response[at..end]).ok()?.trim();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let day = crate::search::search_day(date.as_bytes()).filter(|&d| d != i64::MAX)?;
    let mut hms = time.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone: i64 = zone.trim_start_matches(['+', '-']).parse().ok()?;
    let offset = sign * ((zone / 100) * 3600 + (zone % 100) * 60);
    Some(day + h * 3600 + m * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examine_answers_name_modseq_and_changes() {
        let lines: Vec<Vec<u8>> = [
            "* FLAGS (\\Answered \\Seen)\r\n",
            "* 7 EXISTS\r\n",
            "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
            "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
            "* VANISHED (EARLIER) 41,43:45\r\n",
            "* 5 FETCH (UID 50 FLAGS (\\Seen) MODSEQ (715194045007))\r\n",
            "* 6 FETCH (FLAGS () UID 51 MODSEQ (715194045001))\r\n",
        ]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect();
        let asked = examined(&lines, true);
        assert_eq!(asked.uidvalidity, 1_700_000_000);
        assert_eq!(asked.highest_modseq, Some(715_194_045_007));
        assert_eq!(asked.exists, 7);
        let changes = asked.changes.unwrap();
        assert_eq!(changes.vanished, [41, 43, 44, 45]);
        assert_eq!(changes.changed, [50, 51]);
        // Not asked: no changes, even if the lines looked like some.
        assert_eq!(examined(&lines, false).changes, None);
        let nomodseq = examined(&[b"* OK [NOMODSEQ] Sorry\r\n".to_vec()], false);
        assert_eq!(nomodseq.highest_modseq, None);
    }

    #[test]
    fn the_header_of_a_message_over_the_limit() {
        assert_eq!(header_length(b"Subject: a\r\n\r\nbody\r\n\r\nmore"), 14);
        assert_eq!(header_length(b"Subject: a\n\nbody"), 12);
        assert_eq!(header_length(b"Subject: a very long header"), 27);
    }

    #[test]
    fn fetch_responses_name_uid_and_arrival() {
        let response = b"* 3 FETCH (UID 17 INTERNALDATE \"15-Mar-2021 10:00:05 +0100\" BODY[] {12}\r\n)\r\n";
        assert_eq!(uid_of(response), Some(17));
        let day = crate::search::days_from_civil(2021, 3, 15) * 86_400;
        assert_eq!(internal_date(response), Some(day + 9 * 3600 + 5));
        assert_eq!(
            internal_date(b"* 3 FETCH (UID 17 INTERNALDATE \" 1-Mar-2021 10:00:05 -0030\")\r\n"),
            Some(crate::search::days_from_civil(2021, 3, 1) * 86_400 + 10 * 3600 + 30 * 60 + 5)
        );
    }
}
