//! A logged-in session's relay: client to server and server to client,
//! each a loop over the literal-aware framer. Client commands go to their
//! handlers in [`super::op`]; server responses pass byte for byte except
//! FETCH answers about encrypted messages (rewritten by
//! [`super::fetch::Rewriter`]) and capability lists. Also owns how a
//! session ends: a shutdown between commands, a broken stream, LOGOUT.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::auth::Credentials;
use super::capability;
use super::command::head;
use super::fetch::{Pending, Rewriter};
use super::framer::{self, FrameError};
use super::op::{self, append, Command, Next, MAX_COMMAND_LINE};
use super::response::{is_fetch_response, list_entry, tagged, uidvalidity};
use super::state::{
    await_continuation, send, ClientReader, ClientWriter, Continuation, Requests, SessionError, State, UpstreamReader, UpstreamWriter,
    SHUTDOWN_BYE,
};
use super::state::{InternalAnswer, Shared};
use super::upstream::MAX_LINE;
use super::wire::{Continuations, Limits, Wire};
use crate::account::Account;
use crate::shutdown::{Phase, Shutdown};

/// A FETCH answer the proxy reads whole (its literals spool to disk).
const ANSWER_LIMITS: Limits = Limits {
    line: MAX_LINE,
    literal: u64::MAX,
    parts: 10_000,
};

/// A SEARCH command the proxy reads whole (strings in literals).
/// At most this many octets of FETCH answers are held while their
/// messages decrypt in the background (besides the one being read).
const LOOKAHEAD_BYTES: u64 = 16 << 20;

/// FETCH answers about encrypted messages whose decryption runs while the
/// next answers are read, so that one session's FETCH decrypts on every
/// core; written to the client in the order the server sent them.
struct Lookahead {
    begun: VecDeque<Pending>,
    /// At most this many at once.
    depth: usize,
}

impl Lookahead {
    fn new() -> Lookahead {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Lookahead {
            begun: VecDeque::new(),
            depth: (2 * cores).clamp(2, 16),
        }
    }

    /// Adds `pending`, writing the oldest answers while over the bounds.
    async fn push(&mut self, pending: Pending, rewriter: &mut Rewriter, client: &ClientWriter) -> Result<(), SessionError> {
        self.begun.push_back(pending);
        while self.begun.len() > self.depth || self.begun.iter().map(Pending::size).sum::<u64>() > LOOKAHEAD_BYTES {
            let oldest = self.begun.pop_front().expect("not empty");
            rewriter.finish(oldest, client).await?;
        }
        Ok(())
    }

    /// Writes every answer begun, in order: before anything else the
    /// server sent reaches the client.
    async fn drain(&mut self, rewriter: &mut Rewriter, client: &ClientWriter) -> Result<(), SessionError> {
        while let Some(oldest) = self.begun.pop_front() {
            rewriter.finish(oldest, client).await?;
        }
        Ok(())
    }
}

const SEARCH_LIMITS: Limits = Limits {
    line: MAX_COMMAND_LINE,
    literal: 64 * 1024,
    parts: 100,
};

/// Both ends of a logged-in session, ready to relay.
pub(crate) struct Ends {
    /// The client's side for reading.
    pub(crate) client_reader: ClientReader,
    /// The client's side for writing.
    pub(crate) client_writer: ClientWriter,
    /// The server's side for reading (what it sent after login included).
    pub(crate) upstream_reader: UpstreamReader,
    /// The server's side for writing.
    pub(crate) upstream_writer: UpstreamWriter,
    /// The server takes `{n+}` literals.
    pub(crate) literal_plus: bool,
    /// The server answers `RETURN` options with ESEARCH (RFC 4731).
    pub(crate) esearch: bool,
}

/// Relays until either side closes, `account` logged in with
/// `credentials`, or until `shutdown` closes the session.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    ends: Ends,
    account: Arc<Account>,
    credentials: Credentials,
    shutdown: Shutdown,
) -> Result<(), SessionError> {
    let Ends {
        client_reader: reader,
        client_writer: writer,
        upstream_reader: up_reader,
        upstream_writer: up_writer,
        literal_plus,
        esearch,
    } = ends;
    let state = Arc::new(SyncMutex::new(State::default()));
    let cache = shared.caches.get(&account.login).cloned();
    let served = shared.served.get(&account.login).cloned();
    let pool = shared.side_pools.get(&account.login).expect("every IMAP account has a side pool");
    if let Some(indexer) = shared.indexers.get(&account.login).filter(|_| shared.limits.background_indexing) {
        indexer.start(&credentials);
    }
    let fetcher = Arc::new(pool.fetcher(credentials));
    let rewriter = Rewriter::new(shared.clone(), account.clone(), cache, fetcher.clone(), served.clone());
    let upload = append::Upload {
        shared,
        account: &account,
        client: &writer,
        state: &state,
        literal_plus,
        fetcher: &fetcher,
        served: served.as_deref(),
    };
    let search = op::search::Search {
        shared,
        account: &account,
        state: &state,
        client: &writer,
        fetcher: &fetcher,
        esearch,
        literal_plus,
    };
    let to_server = client_to_server(reader, writer.clone(), up_writer, state.clone(), (&upload, &search), shutdown);
    let to_client = server_to_client(shared, up_reader, writer.clone(), state.clone(), rewriter);
    let (result, farewell) = tokio::select! {
        r = to_server => {
            let farewell = r.as_ref().err().and_then(|e| farewell(e, Direction::FromClient));
            (r, farewell)
        }
        r = to_client => {
            let farewell = r.as_ref().err().and_then(|e| farewell(e, Direction::FromServer));
            (r, farewell)
        }
    };
    if let Some(text) = farewell {
        let _ = send(&writer, format!("* BYE {text}\r\n").as_bytes()).await;
    }
    result
}

/// Which relay direction a session error came from.
#[derive(Clone, Copy)]
enum Direction {
    /// Reading the client, writing the server.
    FromClient,
    /// Reading the server, writing the client.
    FromServer,
}

/// What the client hears when the relay breaks: Sealpost's own words,
/// never a library's message (that goes to the log). `None` when the
/// client cannot hear anything any more, or already has.
fn farewell(error: &SessionError, direction: Direction) -> Option<String> {
    const SERVER_BROKE: &str = "[UNAVAILABLE] Sealpost: the connection to the server broke; try again";
    let text = match (direction, error) {
        (_, SessionError::ShutDown | SessionError::Injection) => return None,
        // The client's own stream failed: nobody to tell.
        (Direction::FromClient, SessionError::Frame(FrameError::Io(_))) => return None,
        (Direction::FromServer, SessionError::Io(_)) => return None,
        (Direction::FromClient, SessionError::Frame(e)) => format!("Sealpost: {e}"),
        (Direction::FromServer, SessionError::Frame(FrameError::Io(_))) => SERVER_BROKE.to_string(),
        (Direction::FromServer, SessionError::Frame(e)) => {
            format!("[UNAVAILABLE] Sealpost: the server sent something Sealpost cannot relay ({e})")
        }
        (_, SessionError::Io(_) | SessionError::Upstream(_)) => SERVER_BROKE.to_string(),
    };
    tracing::warn!(error = %error, "IMAP relay broke");
    Some(text)
}

/// Client to server: each command to its handler in [`op`], or byte for
/// byte.
async fn client_to_server(
    mut reader: ClientReader,
    client: ClientWriter,
    mut upstream: UpstreamWriter,
    state: Arc<SyncMutex<State>>,
    (upload, search): (&append::Upload<'_>, &op::search::Search<'_>),
    mut shutdown: Shutdown,
) -> Result<(), SessionError> {
    let mut line = Vec::new();
    loop {
        // Between commands: the one place a shutdown may close the session.
        let mut literal = tokio::select! {
            biased;
            read = framer::read_segment(&mut reader, MAX_COMMAND_LINE, &mut line) => read?,
            _ = shutdown.reached(Phase::Closing) => {
                close_for_shutdown(&state, &client, &mut upstream).await;
                return Err(SessionError::ShutDown);
            }
        };
        if line.is_empty() {
            return Ok(());
        }
        let next = match Command::parse(&line, literal) {
            Some((_, Command::Append)) => {
                upload
                    .receive(&mut reader, &mut upstream, std::mem::take(&mut line), literal)
                    .await?
            }
            Some((h, Command::Fetch(fetch))) => op::fetch::extend(&state, &mut upstream, &h, fetch).await?,
            Some((_, Command::Search)) => {
                let wire = Wire::read(
                    &mut reader,
                    std::mem::take(&mut line),
                    literal,
                    &upload.shared.spool_dir,
                    SEARCH_LIMITS,
                    Continuations::Send(&*client),
                )
                .await?;
                let h = head(wire.first_line()).expect("a command line");
                let next = search.run(&mut upstream, &h, &wire).await?;
                if next == Next::Relay {
                    line = wire.parts.into_iter().next().expect("one part").line;
                    literal = None;
                }
                next
            }
            Some((h, Command::Select(mailbox))) => op::select::opening(&state, h.tag, mailbox),
            Some((h, Command::Close)) => op::select::closing(&state, h.tag),
            Some((h, Command::Compress)) => op::compress::refuse(&client, h.tag).await?,
            Some((_, Command::Relayed(_))) | None => Next::Relay,
        };
        match next {
            Next::ReadCommand => continue,
            Next::EndSession => return Ok(()),
            Next::Relay => {}
        }
        // Everything else, byte for byte. A synchronizing literal follows
        // only if the server invites it: its `+` goes to the client through
        // the other direction; if it answers the command instead (BAD, NO)
        // the client sends no literal, and neither must the proxy expect
        // one.
        if let Some(h) = head(&line) {
            state.lock().expect("state lock").sent(h.tag, &h.name);
        }
        let tag = line.split(|&b| b == b' ').next().unwrap_or_default().to_vec();
        loop {
            let invited = literal
                .filter(|l| !l.non_synchronizing)
                .map(|_| await_continuation(&state, &tag, true));
            upstream.write_all(&line).await?;
            let Some(announced) = literal else { break };
            upstream.flush().await?;
            if let Some(invited) = invited {
                if invited.await.is_err() {
                    break;
                }
            }
            framer::copy_literal(&mut reader, announced.size, &mut upstream).await?;
            literal = framer::read_segment(&mut reader, MAX_COMMAND_LINE, &mut line).await?;
            if line.is_empty() {
                return Err(FrameError::Truncated.into());
            }
        }
        upstream.flush().await?;
    }
}

/// Ends a session for a shutdown, between two commands of the client's:
/// waits until no command is waiting for the server's answer (IDLE
/// aside), then says `* BYE` to the client (under the writer lock, so
/// never inside a response) and logs out at the server.
async fn close_for_shutdown(state: &SyncMutex<State>, client: &ClientWriter, upstream: &mut UpstreamWriter) {
    while !state.lock().expect("state lock").quiescent() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = send(client, SHUTDOWN_BYE).await;
    let _ = upstream.write_all(b"sealpost-shutdown LOGOUT\r\n").await;
    let _ = upstream.flush().await;
}

async fn server_to_client(
    shared: &Arc<Shared>,
    mut reader: UpstreamReader,
    client: ClientWriter,
    state: Arc<SyncMutex<State>>,
    mut rewriter: Rewriter,
) -> Result<(), SessionError> {
    let mut line = Vec::new();
    let mut said_bye = false;
    let indexer = rewriter.indexer();
    let mut lookahead = Lookahead::new();
    loop {
        let read = framer::read_segment(&mut reader, MAX_LINE, &mut line).await;
        // After the server's BYE, or once the client has logged out, the
        // end of the stream is the normal close, whether or not TLS ended
        // with close_notify (Cyrus, among others, closes without).
        let expected_end = said_bye || state.lock().expect("state lock").logging_out;
        let literal = match read {
            Err(FrameError::Io(e)) if expected_end || e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(error = %e, "the server ended the connection without TLS close_notify");
                line.clear();
                None
            }
            read => read?,
        };
        let requests = if is_fetch_response(&line) {
            let s = state.lock().expect("state lock");
            (!s.fetches.is_empty()).then(|| Requests::of(&s))
        } else {
            None
        };
        if let Some(requests) = requests {
            let wire = Wire::read::<_, UpstreamWriter>(
                &mut reader,
                std::mem::take(&mut line),
                literal,
                &shared.spool_dir,
                ANSWER_LIMITS,
                Continuations::None,
            )
            .await?;
            let pending = rewriter.begin(wire, requests);
            if pending.decrypting() {
                lookahead.push(pending, &mut rewriter, &client).await?;
            } else {
                lookahead.drain(&mut rewriter, &client).await?;
                rewriter.finish(pending, &client).await?;
            }
            continue;
        }
        // Whatever else the server sent comes after the answers begun.
        lookahead.drain(&mut rewriter, &client).await?;
        if line.is_empty() {
            if !expected_end {
                // Without a word from the server the client would only
                // see the connection drop.
                send(&client, b"* BYE [UNAVAILABLE] Sealpost: the server closed the connection\r\n").await?;
            }
            return Ok(());
        }
        // Sticky: the tagged OK of LOGOUT follows the BYE.
        said_bye |= line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"* BYE");
        if line.starts_with(b"+") {
            let waiting = state.lock().expect("state lock").continuation.take();
            if let Some(Continuation { wake, forward, .. }) = waiting {
                let _ = wake.send(());
                if !forward {
                    continue;
                }
            }
        }
        if internal_answer(&state, &line) {
            continue;
        }
        if let Some(n) = uidvalidity(&line) {
            state.lock().expect("state lock").uidvalidity = Some(n);
        }
        if let Some((mailbox, attributes)) = list_entry(&line) {
            state.lock().expect("state lock").special_use.insert(mailbox, attributes);
        }
        if let Some((tag, ok)) = tagged(&line) {
            let uploaded = {
                let mut s = state.lock().expect("state lock");
                let found = s.uploads.iter().position(|u| u.tag == tag);
                found.map(|i| s.uploads.remove(i))
            };
            if let (Some(uploaded), true, Some(indexer)) = (uploaded, ok, indexer.as_ref()) {
                match super::response::append_uid(&line) {
                    Some((uidvalidity, uids)) => indexer.index_uploaded(uploaded.mailbox, uidvalidity, uids, uploaded.documents),
                    None => tracing::debug!("the server named no APPENDUID; the upload is indexed from the server later"),
                }
            }
            // A FETCH whose BINARY item could not be decoded ends in NO
            // (RFC 3516: [UNKNOWN-CTE] or [PARSE]), whatever the server
            // said about the ciphertext.
            let failed = {
                let mut s = state.lock().expect("state lock");
                let failed = s
                    .fetches
                    .iter()
                    .find(|f| f.tag == tag)
                    .and_then(|f| rewriter.failure(&f.fetch, tag));
                if let Some(waited) = s.complete(tag, ok) {
                    shared
                        .metrics
                        .upstream_command_seconds
                        .with_label_values(&["imap"])
                        .observe(waited.as_secs_f64());
                }
                failed
            };
            if let Some(failed) = failed {
                line = failed;
            }
        }
        if let Some(filtered) = capability::filter_line(&line) {
            line = filtered;
        }
        let mut w = client.lock().await;
        // Gathered into larger writes: a response and its literals in as
        // few TLS records as their size allows.
        let mut buffered = tokio::io::BufWriter::with_capacity(super::fetch::WRITE_BUFFER, &mut *w);
        buffered.write_all(&line).await?;
        let mut literal = literal;
        while let Some(announced) = literal {
            framer::copy_literal(&mut reader, announced.size, &mut buffered).await?;
            literal = framer::read_segment(&mut reader, MAX_LINE, &mut line).await?;
            if line.is_empty() {
                return Err(FrameError::Truncated.into());
            }
            buffered.write_all(&line).await?;
        }
        buffered.flush().await?;
    }
}

/// Takes the line when it answers a command the proxy sent for itself:
/// its ESEARCH lines and its tagged status go to the proxy, not to the
/// client.
fn internal_answer(state: &SyncMutex<State>, line: &[u8]) -> bool {
    let mut s = state.lock().expect("state lock");
    if s.internal.is_empty() {
        return false;
    }
    if super::response::is_expunge(line) {
        s.withheld_expunges.push(line.to_vec());
        return true;
    }
    // Without ESEARCH a `* SEARCH` line names no command: it is the
    // internal command's when that is the only one waiting (see
    // `op::search`, which makes it so).
    let withheld = s.withheld_expunges.len();
    let answering = |internal: &mut super::state::Internal| {
        internal.lines.push(line.to_vec());
        internal.expunges_at_answer.get_or_insert(withheld);
        true
    };
    if super::response::search_numbers(line).is_some() && s.in_flight.is_empty() && s.internal.len() == 1 {
        if let Some(internal) = s.internal.values_mut().next() {
            return answering(internal);
        }
    }
    if let Some(tag) = super::response::esearch_tag(line) {
        return s.internal.get_mut(tag.as_slice()).is_some_and(answering);
    }
    if let Some((tag, ok)) = tagged(line) {
        if let Some(internal) = s.internal.remove(tag) {
            let expunges_before = internal.expunges_at_answer.unwrap_or(s.withheld_expunges.len());
            let _ = internal.done.send(InternalAnswer {
                lines: internal.lines,
                ok,
                expunges_before,
            });
            return true;
        }
    }
    false
}
