//! One client connection: the proxy speaks IMAP itself until the client
//! logs in (greeting, CAPABILITY, STARTTLS, LOGIN/AUTHENTICATE), then
//! connects to the account's server, logs in there with the same
//! credentials and relays both directions. Client to server, only FETCH
//! (extended so answers reveal encrypted messages), APPEND (encrypted) and
//! COMPRESS (refused) are touched; server to client, only FETCH answers
//! about encrypted messages and capability lists are. Everything else is
//! copied byte for byte, literals streamed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};

use super::append;
use super::auth::Credentials;
use super::capability;
use super::command::{head, mailbox_key, Fetch, Requested};
use super::fetch::Rewriter;
use super::framer::{self, FrameError, Literal};
use super::served::Served;
use super::sidefetch::SidePool;
use super::upstream::{Upstream, UpstreamError, MAX_LINE};
use super::wire::{Continuations, Cursor, Limits, Pos, Wire};
use crate::account::{Account, Accounts};
use crate::config::ImapConfig;
use crate::learn::Learner;
use crate::listener::{client_stream, ListenerKind, Service};
use crate::metrics::Metrics;
use crate::pgp::LiveKeystore;
use crate::sasl::{decode_response, MECHANISMS};
use crate::shutdown::{Phase, Shutdown};
use crate::store::MessageCache;
use crate::tls::{LocalTls, Stream, TlsError};

/// Longest command line, and largest literal, before login (SASL
/// responses carry OAuth tokens).
const MAX_LOGIN_LINE: usize = 64 * 1024;
/// Before login, a client that says nothing for this long is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// A command before login: LOGIN has two strings, nothing more.
const LOGIN_LIMITS: Limits = Limits {
    line: MAX_LOGIN_LINE,
    literal: MAX_LOGIN_LINE as u64,
    parts: 3,
};
/// A command the proxy reads whole after login (APPEND; MULTIAPPEND has
/// a literal per message).
const COMMAND_LIMITS: Limits = Limits {
    line: MAX_COMMAND_LINE,
    literal: u64::MAX,
    parts: 1000,
};
/// A FETCH answer the proxy reads whole (its literals spool to disk).
const ANSWER_LIMITS: Limits = Limits {
    line: MAX_LINE,
    literal: u64::MAX,
    parts: 10_000,
};

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
    /// The local certificate.
    pub tls: LocalTls,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where large literals are spooled (private).
    pub spool_dir: std::path::PathBuf,
}

type ClientReader = BufReader<ReadHalf<Stream>>;
/// The client's side for writing, shared by both relay directions (each
/// writes whole responses under the lock).
pub type ClientWriter = Arc<Mutex<WriteHalf<Stream>>>;
type UpstreamReader = BufReader<ReadHalf<BufReader<Stream>>>;
/// The provider's side for writing.
pub type UpstreamWriter = WriteHalf<BufReader<Stream>>;

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
const SHUTDOWN_BYE: &[u8] = b"* BYE [UNAVAILABLE] Sealpost is shutting down\r\n";

impl Service for Shared {
    async fn serve(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
        handle(self, tcp, kind, shutdown).await
    }

    async fn refuse(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind) {
        self.metrics.connections_refused.with_label_values(&["imap"]).inc();
        tracing::warn!("IMAP connection refused: listen.max_connections reached");
        let Some(mut stream) = client_stream(tcp, kind, &self.tls).await else {
            return;
        };
        let _ = stream
            .write_all(b"* BYE [LIMIT] Sealpost: too many open connections (listen.max_connections); try again later\r\n")
            .await;
        let _ = stream.shutdown().await;
    }
}

/// Serves one client connection to its end, or until `shutdown` closes
/// sessions (the client then hears `* BYE` once no command of its is in
/// flight but IDLE).
pub async fn handle(shared: Arc<Shared>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
    shared.metrics.imap_sessions.inc();
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let Some(stream) = client_stream(tcp, kind, &shared.tls).await else {
        return;
    };
    let client = Client::new(stream, kind.loopback, shutdown);
    let result = match login_phase(&shared, client).await {
        Ok(Some((client, session))) => relay(&shared, client, session).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => tracing::debug!(%peer, "IMAP session closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "IMAP session ended"),
    }
}

struct Client {
    reader: ClientReader,
    writer: ClientWriter,
    tls: bool,
    loopback: bool,
    shutdown: Shutdown,
}

impl Client {
    fn new(stream: Stream, loopback: bool, shutdown: Shutdown) -> Client {
        let tls = stream.is_tls();
        let (reader, writer) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(reader),
            writer: Arc::new(Mutex::new(writer)),
            tls,
            loopback,
            shutdown,
        }
    }

    /// LOGIN and AUTHENTICATE need TLS, except on loopback, where nothing
    /// crosses a network.
    fn login_allowed(&self) -> bool {
        self.tls || self.loopback
    }

    async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        send(&self.writer, bytes).await
    }

    async fn reply(&self, tag: &[u8], status: &str) -> std::io::Result<()> {
        let mut line = tag.to_vec();
        line.push(b' ');
        line.extend_from_slice(status.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.send(&line).await
    }

    /// Reads a line before login, with the login-phase limits; the client
    /// hears why when it breaks them.
    async fn read_line(&mut self) -> Result<(Vec<u8>, Option<Literal>), SessionError> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(LOGIN_TIMEOUT, framer::read_segment(&mut self.reader, MAX_LOGIN_LINE, &mut line));
        let mut shutdown = self.shutdown.clone();
        let read = tokio::select! {
            biased;
            read = read => read,
            _ = shutdown.reached(Phase::Closing) => {
                let _ = self.send(SHUTDOWN_BYE).await;
                return Err(SessionError::ShutDown);
            }
        };
        match read {
            Ok(Ok(literal)) => Ok((line, literal)),
            Ok(Err(e)) => {
                let _ = self.send(format!("* BYE Sealpost: {e}\r\n").as_bytes()).await;
                Err(e.into())
            }
            Err(_) => {
                let _ = self.send(b"* BYE Sealpost: no command before the login timeout\r\n").await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no command before the login timeout").into())
            }
        }
    }

    /// Turns the plain connection into TLS (after `OK` to STARTTLS).
    async fn start_tls(self, tls: &LocalTls) -> Result<Client, SessionError> {
        // Anything the client pipelined after STARTTLS was sent in clear.
        if !self.reader.buffer().is_empty() {
            return Err(SessionError::Injection);
        }
        let writer = Arc::try_unwrap(self.writer)
            .map_err(|_| std::io::Error::other("writer still shared"))?
            .into_inner();
        let Stream::Plain(tcp) = self.reader.into_inner().unsplit(writer) else {
            unreachable!("STARTTLS is refused on TLS connections")
        };
        Ok(Client::new(tls.accept(tcp).await?, self.loopback, self.shutdown))
    }
}

async fn send(writer: &ClientWriter, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = writer.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

/// A logged-in upstream session, ready to relay.
struct LoggedIn {
    account: Arc<Account>,
    upstream: Upstream,
    credentials: Credentials,
}

/// Speaks IMAP to the client until it has logged in (returns the upstream
/// session) or logged out (returns `None`).
async fn login_phase(shared: &Arc<Shared>, mut client: Client) -> Result<Option<(Client, LoggedIn)>, SessionError> {
    let greeting = format!(
        "* OK [CAPABILITY {}] Sealpost IMAP proxy ready\r\n",
        capability::before_login(client.tls, client.login_allowed())
    );
    client.send(greeting.as_bytes()).await?;
    loop {
        let (line, literal) = client.read_line().await?;
        if line.is_empty() {
            return Ok(None);
        }
        if literal.is_some_and(|l| l.size > MAX_LOGIN_LINE as u64) {
            client.send(b"* BYE literal too large before login\r\n").await?;
            return Ok(None);
        }
        let read = Wire::read(
            &mut client.reader,
            line,
            literal,
            &shared.spool_dir,
            LOGIN_LIMITS,
            Continuations::Send(&client.writer),
        );
        let wire = match tokio::time::timeout(LOGIN_TIMEOUT, read).await {
            Ok(Ok(wire)) => wire,
            Ok(Err(e)) => {
                let _ = client.send(format!("* BYE Sealpost: {e}\r\n").as_bytes()).await;
                return Err(e.into());
            }
            Err(_) => {
                let _ = client.send(b"* BYE Sealpost: the command did not arrive in time\r\n").await;
                return Ok(None);
            }
        };
        let Some(h) = head(wire.first_line()) else {
            client.send(b"* BAD Sealpost: expected a tagged command\r\n").await?;
            continue;
        };
        let tag = h.tag.to_vec();
        let mut args = wire.cursor();
        args.pos = Pos { part: 0, at: h.args };
        let credentials = match h.name.as_str() {
            "CAPABILITY" => {
                let caps = capability::before_login(client.tls, client.login_allowed());
                client.send(format!("* CAPABILITY {caps}\r\n").as_bytes()).await?;
                client.reply(&tag, "OK CAPABILITY completed").await?;
                continue;
            }
            "NOOP" => {
                client.reply(&tag, "OK NOOP completed").await?;
                continue;
            }
            "ID" => {
                client.send(b"* ID (\"name\" \"Sealpost\")\r\n").await?;
                client.reply(&tag, "OK ID completed").await?;
                continue;
            }
            "LOGOUT" => {
                client.send(b"* BYE Sealpost logging out\r\n").await?;
                client.reply(&tag, "OK LOGOUT completed").await?;
                return Ok(None);
            }
            "STARTTLS" if client.tls => {
                client.reply(&tag, "BAD TLS is already active").await?;
                continue;
            }
            "STARTTLS" => {
                client.reply(&tag, "OK Begin TLS negotiation now").await?;
                client = client.start_tls(&shared.tls).await?;
                continue;
            }
            "LOGIN" | "AUTHENTICATE" if !client.login_allowed() => {
                client
                    .reply(&tag, "NO [PRIVACYREQUIRED] Sealpost: use STARTTLS before logging in")
                    .await?;
                continue;
            }
            "LOGIN" => {
                let user = args.astring(MAX_LOGIN_LINE);
                args.skip_spaces();
                let password = args.astring(MAX_LOGIN_LINE);
                match (user, password) {
                    (Some(user), Some(password)) if args.at_end() => Credentials::Login { user, password },
                    _ => {
                        client.reply(&tag, "BAD Sealpost: LOGIN needs a user name and a password").await?;
                        continue;
                    }
                }
            }
            "AUTHENTICATE" => match authenticate(&mut client, &tag, &mut args).await? {
                Some(credentials) => credentials,
                None => continue,
            },
            _ => {
                client.reply(&tag, "BAD Sealpost: log in first (LOGIN or AUTHENTICATE)").await?;
                continue;
            }
        };
        match log_in_upstream(shared, &client, &tag, credentials).await? {
            Some(session) => return Ok(Some((client, session))),
            None => continue,
        }
    }
}

/// Runs a client's AUTHENTICATE exchange (SASL-IR or one continuation;
/// two for the LOGIN mechanism). `None` when it was refused or cancelled
/// (the client has had its answer).
async fn authenticate(client: &mut Client, tag: &[u8], args: &mut Cursor<'_>) -> Result<Option<Credentials>, SessionError> {
    let mechanism = String::from_utf8_lossy(args.token()).to_ascii_uppercase();
    args.skip_spaces();
    let initial = (!args.at_end()).then(|| args.token().to_vec());
    if !MECHANISMS.contains(&mechanism.as_str()) {
        client
            .reply(tag, "NO [CANNOT] Sealpost relays PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER only")
            .await?;
        return Ok(None);
    }
    let step = async |client: &mut Client, challenge: &str, initial: Option<Vec<u8>>| -> Result<Option<Vec<u8>>, SessionError> {
        let line = match initial {
            Some(line) => line,
            None => {
                client.send(format!("+ {challenge}\r\n").as_bytes()).await?;
                let (line, _) = client.read_line().await?;
                line
            }
        };
        let trimmed = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(&line);
        if trimmed == b"*" {
            client.reply(tag, "BAD AUTHENTICATE cancelled").await?;
            return Ok(None);
        }
        match decode_response(trimmed) {
            Ok(decoded) => Ok(Some(decoded)),
            Err(e) => {
                client.reply(tag, &format!("BAD Sealpost: {e}")).await?;
                Ok(None)
            }
        }
    };
    let credentials = if mechanism == "LOGIN" {
        let Some(user) = step(client, "VXNlcm5hbWU6", initial).await? else {
            return Ok(None);
        };
        let Some(password) = step(client, "UGFzc3dvcmQ6", None).await? else {
            return Ok(None);
        };
        Credentials::Login { user, password }
    } else {
        let Some(response) = step(client, "", initial).await? else {
            return Ok(None);
        };
        Credentials::Sasl { mechanism, response }
    };
    Ok(Some(credentials))
}

/// Finds the account, connects to its server and logs in there. Answers
/// the client in every case; `None` when the login did not succeed.
async fn log_in_upstream(
    shared: &Arc<Shared>,
    client: &Client,
    tag: &[u8],
    credentials: Credentials,
) -> Result<Option<LoggedIn>, SessionError> {
    let user = match credentials.user() {
        Ok(user) => user,
        Err(e) => {
            client.reply(tag, &format!("BAD Sealpost: {e}")).await?;
            return Ok(None);
        }
    };
    let Some(account) = shared.accounts.find(&user) else {
        client
            .reply(
                tag,
                "NO [AUTHENTICATIONFAILED] Sealpost has no account for this login; add an [[account]] with this login to the configuration",
            )
            .await?;
        return Ok(None);
    };
    let Some(url) = account.imap.as_ref() else {
        client
            .reply(
                tag,
                "NO [UNAVAILABLE] Sealpost: this account has no IMAP server; set imap = \"imaps://host:993\" in its [[account]]",
            )
            .await?;
        return Ok(None);
    };
    let mut upstream = match Upstream::connect(url, &account.connector).await {
        Ok(upstream) => upstream,
        Err(e) => {
            shared.metrics.upstream_failures.with_label_values(&[e.kind()]).inc();
            if matches!(e, UpstreamError::Tls(TlsError::PinMismatch(_))) {
                tracing::error!(error = %e, "IMAP server key does not match the pin; refusing");
            } else {
                tracing::warn!(error = %e, "cannot reach the IMAP server");
            }
            client
                .reply(tag, &format!("NO [UNAVAILABLE] Sealpost: {}", one_line(&e.to_string())))
                .await?;
            return Ok(None);
        }
    };
    let answer = upstream.login(&credentials).await?;
    if !answer.is_ok() {
        let mut line = tag.to_vec();
        line.push(b' ');
        line.extend_from_slice(&answer.status);
        line.extend_from_slice(b"\r\n");
        client.send(&capability::filter_line(&line).unwrap_or(line)).await?;
        return Ok(None);
    }
    let caps = capability::filter_words(&upstream.capabilities);
    client
        .reply(tag, &format!("OK [CAPABILITY {caps}] Logged in through Sealpost"))
        .await?;
    tracing::info!(account = %account.login, server = %upstream.server, "IMAP client logged in");
    Ok(Some(LoggedIn {
        account,
        upstream,
        credentials,
    }))
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// What both relay directions know about the session.
#[derive(Default)]
pub struct State {
    /// FETCH commands in flight that the proxy extended.
    pub fetches: Vec<InFlight>,
    /// SELECT/EXAMINE (mailbox name) and CLOSE/UNSELECT (`None`) in flight.
    selecting: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The mailbox the client has selected.
    pub selected: Option<Selected>,
    /// UIDVALIDITY announced by the SELECT in flight.
    uidvalidity: Option<u32>,
    /// A command waiting for the server's `+` before it sends a literal.
    continuation: Option<Continuation>,
    /// SPECIAL-USE attributes (`\Drafts`, ...) of mailboxes seen in LIST.
    pub special_use: HashMap<Vec<u8>, Vec<String>>,
    /// Tags of the client's commands sent to the server and not yet
    /// answered, with whether the command is IDLE (which waits for the
    /// client, so a shutdown need not wait for it).
    in_flight: Vec<(Vec<u8>, bool)>,
    /// The client has sent LOGOUT: the server ending the connection is
    /// what comes next, not a failure.
    logging_out: bool,
}

/// A command waiting for the server's `+`.
struct Continuation {
    tag: Vec<u8>,
    wake: oneshot::Sender<()>,
    /// The client waits for this `+` too (a literal the proxy relays as
    /// it is), rather than the proxy alone (an APPEND it rewrote).
    forward: bool,
}

/// A FETCH the proxy extended, until its tagged answer.
pub struct InFlight {
    tag: Vec<u8>,
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
    fn sent(&mut self, tag: &[u8], name: &str) {
        self.in_flight.push((tag.to_vec(), name == "IDLE"));
        self.logging_out |= name == "LOGOUT";
    }

    /// Nothing the client asked is waiting for an answer, but IDLE: a
    /// `* BYE` now interrupts no command.
    fn quiescent(&self) -> bool {
        self.in_flight.iter().all(|(_, idle)| *idle)
    }

    /// The command tagged `tag` was answered (by the server or, when it
    /// never reached the server, by the proxy).
    pub(super) fn complete(&mut self, tag: &[u8], ok: bool) {
        self.in_flight.retain(|(t, _)| t != tag);
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
    }
}

/// Relays until either side closes.
async fn relay(shared: &Arc<Shared>, client: Client, session: LoggedIn) -> Result<(), SessionError> {
    let LoggedIn {
        account,
        upstream,
        credentials,
    } = session;
    let literal_plus = upstream.has("LITERAL+");
    let (up_reader, up_writer) = tokio::io::split(upstream.conn);
    let state = Arc::new(SyncMutex::new(State::default()));
    let cache = shared.caches.get(&account.login).cloned();
    let served = shared.served.get(&account.login).cloned();
    let pool = shared.side_pools.get(&account.login).expect("every IMAP account has a side pool");
    let fetcher = Arc::new(pool.fetcher(credentials));
    let rewriter = Rewriter::new(shared.clone(), account.clone(), cache, fetcher.clone(), served.clone());
    let Client {
        reader, writer, shutdown, ..
    } = client;
    let upload = append::Upload {
        shared,
        account: &account,
        client: &writer,
        state: &state,
        literal_plus,
        fetcher: &fetcher,
        served: served.as_deref(),
    };
    let to_server = client_to_server(shared, reader, writer.clone(), up_writer, state.clone(), &upload, shutdown);
    let to_client = server_to_client(shared, BufReader::new(up_reader), writer.clone(), state.clone(), rewriter);
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

/// Longest command line from a logged-in client (UID sets can be long).
const MAX_COMMAND_LINE: usize = 1024 * 1024;

async fn client_to_server(
    shared: &Arc<Shared>,
    mut reader: ClientReader,
    client: ClientWriter,
    mut upstream: UpstreamWriter,
    state: Arc<SyncMutex<State>>,
    upload: &append::Upload<'_>,
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
        if let Some(h) = head(&line) {
            match h.name.as_str() {
                "APPEND" => {
                    let max = shared.limits.max_message_size;
                    if let Some(announced) = literal.filter(|l| l.size > max) {
                        let tag = h.tag.to_vec();
                        let too_big = format!(
                            "NO [TOOBIG] Sealpost: message of {} octets is over imap.max_message_size ({max})",
                            announced.size
                        );
                        if announced.non_synchronizing {
                            // The data is already on its way: the stream
                            // cannot be resynchronised.
                            send(&client, b"* BYE Sealpost: APPEND literal over imap.max_message_size\r\n").await?;
                            return Ok(());
                        }
                        send(&client, &[&tag[..], b" ", too_big.as_bytes(), b"\r\n"].concat()).await?;
                        continue;
                    }
                    let limits = Limits {
                        literal: max,
                        ..COMMAND_LIMITS
                    };
                    state.lock().expect("state lock").sent(h.tag, "APPEND");
                    let wire = Wire::read(
                        &mut reader,
                        std::mem::take(&mut line),
                        literal,
                        &shared.spool_dir,
                        limits,
                        Continuations::Send(&client),
                    )
                    .await?;
                    upload.run(&wire, &mut upstream).await?;
                    continue;
                }
                "FETCH" if literal.is_none() => {
                    if let Some(fetch) = Fetch::parse(&line[h.args..]).filter(Fetch::depends_on_content) {
                        let added = fetch.additions(h.uid);
                        let rewritten = fetch.rewrite(&h, &added);
                        {
                            let mut s = state.lock().expect("state lock");
                            s.sent(h.tag, "FETCH");
                            s.fetches.push(InFlight {
                                tag: h.tag.to_vec(),
                                fetch,
                                added,
                            });
                        }
                        upstream.write_all(&rewritten).await?;
                        upstream.flush().await?;
                        continue;
                    }
                }
                "SELECT" | "EXAMINE" if literal.is_none() => {
                    let wire = Wire::line(line.clone());
                    let mut args = wire.cursor();
                    args.pos = Pos { part: 0, at: h.args };
                    let mailbox = args.astring(MAX_COMMAND_LINE).map(|m| mailbox_key(&m));
                    let mut s = state.lock().expect("state lock");
                    s.uidvalidity = None;
                    s.selecting.push((h.tag.to_vec(), mailbox));
                }
                "CLOSE" | "UNSELECT" => state.lock().expect("state lock").selecting.push((h.tag.to_vec(), None)),
                "COMPRESS" => {
                    let reply = [h.tag, b" NO [CANNOT] Sealpost does not relay COMPRESS; continuing uncompressed\r\n"].concat();
                    send(&client, &reply).await?;
                    continue;
                }
                _ => {}
            }
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

async fn server_to_client(
    shared: &Arc<Shared>,
    mut reader: UpstreamReader,
    client: ClientWriter,
    state: Arc<SyncMutex<State>>,
    mut rewriter: Rewriter,
) -> Result<(), SessionError> {
    let mut line = Vec::new();
    let mut said_bye = false;
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
        if is_fetch_response(&line) {
            let requests = {
                let s = state.lock().expect("state lock");
                (!s.fetches.is_empty()).then(|| Requests::of(&s))
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
                rewriter.answer(&wire, &requests, &client).await?;
                continue;
            }
        }
        if let Some(n) = uidvalidity(&line) {
            state.lock().expect("state lock").uidvalidity = Some(n);
        }
        if let Some((mailbox, attributes)) = list_entry(&line) {
            state.lock().expect("state lock").special_use.insert(mailbox, attributes);
        }
        if let Some((tag, ok)) = tagged(&line) {
            let mut s = state.lock().expect("state lock");
            let failed = s
                .fetches
                .iter()
                .find(|f| f.tag == tag)
                .and_then(|f| rewriter.failure(&f.fetch, tag));
            s.complete(tag, ok);
            drop(s);
            line = failed.unwrap_or(line);
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
    fn of(state: &State) -> Requests {
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

/// `* <n> FETCH ...`
fn is_fetch_response(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else { return false };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].len() >= 7 && rest[digits..digits + 7].eq_ignore_ascii_case(b" FETCH ")
}

/// `* OK [UIDVALIDITY n]`
fn uidvalidity(line: &[u8]) -> Option<u32> {
    let upper = line.to_ascii_uppercase();
    let rest = upper.strip_prefix(b"* OK [UIDVALIDITY ")?;
    let end = rest.iter().position(|&b| b == b']')?;
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// The tag and success of a tagged status line.
fn tagged(line: &[u8]) -> Option<(&[u8], bool)> {
    if line.starts_with(b"*") || line.starts_with(b"+") {
        return None;
    }
    let space = line.iter().position(|&b| b == b' ')?;
    let status = &line[space + 1..];
    let ok = status.len() >= 2 && status[..2].eq_ignore_ascii_case(b"OK");
    let known = ok
        || status.len() >= 2 && (status[..2].eq_ignore_ascii_case(b"NO") || status.len() >= 3 && status[..3].eq_ignore_ascii_case(b"BAD"));
    known.then_some((&line[..space], ok))
}

/// A `* LIST (attributes) delimiter name` line (no literal): the mailbox
/// and its SPECIAL-USE attributes, upper-cased.
fn list_entry(line: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let upper = line.to_ascii_uppercase();
    if !(upper.starts_with(b"* LIST (") || upper.starts_with(b"* XLIST (")) {
        return None;
    }
    let wire = Wire::line(line.to_vec());
    let mut c = wire.cursor();
    c.token();
    c.skip_spaces();
    c.token();
    c.skip_spaces();
    let attributes = c.value()?;
    let attributes = wire.bytes(attributes.from, attributes.to, 4096)?;
    c.skip_spaces();
    c.value()?;
    c.skip_spaces();
    let mailbox = c.astring(4096)?;
    let special: Vec<String> = String::from_utf8_lossy(&attributes)
        .trim_matches(|c| c == '(' || c == ')')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .filter(|a| {
            matches!(
                a.as_str(),
                "\\DRAFTS" | "\\SENT" | "\\ARCHIVE" | "\\JUNK" | "\\TRASH" | "\\ALL" | "\\FLAGGED"
            )
        })
        .collect();
    Some((mailbox_key(&mailbox), special))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_lines_are_recognised() {
        assert!(is_fetch_response(b"* 12 FETCH (UID 3)\r\n"));
        assert!(is_fetch_response(b"* 1 fetch (FLAGS ())\r\n"));
        assert!(!is_fetch_response(b"* 12 EXISTS\r\n"));
        assert!(!is_fetch_response(b"* OK FETCH\r\n"));
        assert_eq!(uidvalidity(b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"), Some(1_700_000_000));
        assert_eq!(uidvalidity(b"* OK [UIDNEXT 5]\r\n"), None);
        assert_eq!(tagged(b"a1 OK done\r\n"), Some((&b"a1"[..], true)));
        assert_eq!(tagged(b"a1 NO [TRYCREATE] no\r\n"), Some((&b"a1"[..], false)));
        assert_eq!(tagged(b"a1 BAD what\r\n"), Some((&b"a1"[..], false)));
        assert_eq!(tagged(b"* OK x\r\n"), None);
        assert_eq!(
            list_entry(b"* LIST (\\HasNoChildren \\Drafts) \"/\" \"My Drafts\"\r\n"),
            Some((b"My Drafts".to_vec(), vec!["\\DRAFTS".to_string()]))
        );
        assert_eq!(list_entry(b"* LIST () \".\" inbox\r\n"), Some((b"INBOX".to_vec(), vec![])));
    }

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
