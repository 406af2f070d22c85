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
    /// The message as stored (empty when only arrivals were asked for).
    pub message: Vec<u8>,
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
        messages.into_iter().find(|f| f.uid == uid).map(|f| f.message).ok_or_else(|| {
            let server = self.pool.account.imap.as_ref().map(ToString::to_string).unwrap_or_default();
            UpstreamError::protocol(&server, format!("message UID {uid} is gone"))
        })
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
        Ok(SideConn { upstream, examined: None })
    }

    /// Opens `mailbox` read-only (again, to see what changed) and returns
    /// its UIDVALIDITY (0 when the server names none).
    pub(crate) async fn examine(&mut self, mailbox: &[u8]) -> Result<u32, UpstreamError> {
        let conn = &mut self.upstream;
        let mut command = b"EXAMINE ".to_vec();
        conn.push_astring(&mut command, mailbox)?;
        let answer = conn.command(&command).await?;
        if !answer.is_ok() {
            self.examined = None;
            return Err(UpstreamError::Protocol {
                server: conn.server.clone(),
                reason: format!("EXAMINE failed: {}", answer.text()),
            });
        }
        self.examined = Some(mailbox.to_vec());
        let uidvalidity = answer.untagged.iter().find_map(|line| {
            let upper = String::from_utf8_lossy(line).to_ascii_uppercase();
            let rest = &upper[upper.find("[UIDVALIDITY ")? + 13..];
            rest[..rest.find(']')?].trim().parse().ok()
        });
        Ok(uidvalidity.unwrap_or(0))
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
            } else if !changed && (upper.ends_with(b" EXISTS\r\n") || upper.ends_with(b" EXPUNGE\r\n")) {
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
                    messages.push(Fetched { uid, arrival, message });
                }
                response.clear();
                continue;
            };
            if announced.size > max_size {
                return Err(UpstreamError::protocol(
                    &conn.server,
                    format!("message of {} octets is over imap.max_message_size", announced.size),
                ));
            }
            let mut bytes = Vec::with_capacity(announced.size as usize);
            (&mut conn.conn)
                .take(announced.size)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
            if (bytes.len() as u64) < announced.size {
                return Err(UpstreamError::protocol(&conn.server, "connection closed inside a literal"));
            }
            if message.is_none() && line.to_ascii_uppercase().windows(7).any(|w| w == b"BODY[] ") {
                message = Some(bytes);
            }
        }
    }
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
