//! Before login: the proxy speaks IMAP itself (greeting, CAPABILITY,
//! NOOP, ID, LOGOUT, STARTTLS) until the client logs in with LOGIN or
//! AUTHENTICATE; then it connects to the account's server, logs in there
//! with the same credentials and hands both connections to the relay.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::account::Account;
use crate::imap::auth::Credentials;
use crate::imap::capability;
use crate::imap::command::head;
use crate::imap::framer::{self, Literal};
use crate::imap::state::Shared;
use crate::imap::state::{ClientReader, ClientWriter, SessionError, SHUTDOWN_BYE};
use crate::imap::upstream::{Upstream, UpstreamError};
use crate::imap::wire::{Continuations, Cursor, Limits, Pos, Wire};
use crate::sasl::{decode_response, MECHANISMS};
use crate::shutdown::{Phase, Shutdown};
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

/// A mail client's connection: TLS or not, and how it becomes TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin + Sized + 'static {
    /// True once TLS protects the connection.
    fn is_tls(&self) -> bool;

    /// The connection after Sealpost's TLS handshake as the server
    /// (STARTTLS).
    fn start_tls(self, tls: &LocalTls) -> impl Future<Output = std::io::Result<Self>> + Send;
}

impl ClientStream for Stream {
    fn is_tls(&self) -> bool {
        Stream::is_tls(self)
    }

    async fn start_tls(self, tls: &LocalTls) -> std::io::Result<Self> {
        let Stream::Plain(tcp) = self else {
            unreachable!("STARTTLS is refused on TLS connections")
        };
        tls.accept(tcp).await
    }
}

/// An in-memory connection (tests, or embedding Sealpost in-process):
/// never TLS, and STARTTLS on it fails.
impl ClientStream for DuplexStream {
    fn is_tls(&self) -> bool {
        false
    }

    async fn start_tls(self, _tls: &LocalTls) -> std::io::Result<Self> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no TLS on an in-memory connection",
        ))
    }
}

/// The client's connection before login (plain until STARTTLS).
pub(crate) struct Client<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: Arc<Mutex<WriteHalf<S>>>,
    tls: bool,
    loopback: bool,
    shutdown: Shutdown,
}

impl<S: ClientStream> Client<S> {
    /// The connection of a client on a loopback listener or not.
    pub(crate) fn new(stream: S, loopback: bool, shutdown: Shutdown) -> Client<S> {
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

    /// The stream halves for the relay, and the shutdown to watch.
    pub(crate) fn into_halves(self) -> (ClientReader, ClientWriter, Shutdown) {
        let writer = Arc::try_unwrap(self.writer)
            .map(Mutex::into_inner)
            .unwrap_or_else(|_| unreachable!("only the login phase holds the writer"));
        let writer: Box<dyn AsyncWrite + Send + Unpin> = Box::new(writer);
        (Box::new(self.reader), Arc::new(Mutex::new(writer)), self.shutdown)
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
    async fn start_tls(self, tls: &LocalTls) -> Result<Client<S>, SessionError> {
        // Anything the client pipelined after STARTTLS was sent in clear.
        if !self.reader.buffer().is_empty() {
            return Err(SessionError::Injection);
        }
        let writer = Arc::try_unwrap(self.writer)
            .map_err(|_| std::io::Error::other("writer still shared"))?
            .into_inner();
        let stream = self.reader.into_inner().unsplit(writer).start_tls(tls).await?;
        Ok(Client::new(stream, self.loopback, self.shutdown))
    }
}

async fn send<S: ClientStream>(writer: &Mutex<WriteHalf<S>>, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = writer.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

/// A logged-in upstream session, ready to relay.
pub(crate) struct LoggedIn {
    pub(crate) account: Arc<Account>,
    pub(crate) upstream: Upstream,
    pub(crate) credentials: Credentials,
}

/// Speaks IMAP to the client until it has logged in (returns the upstream
/// session) or logged out (returns `None`).
pub(crate) async fn login_phase<S: ClientStream>(
    shared: &Arc<Shared>,
    mut client: Client<S>,
) -> Result<Option<(Client<S>, LoggedIn)>, SessionError> {
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
async fn authenticate<S: ClientStream>(
    client: &mut Client<S>,
    tag: &[u8],
    args: &mut Cursor<'_>,
) -> Result<Option<Credentials>, SessionError> {
    let mechanism = String::from_utf8_lossy(args.token()).to_ascii_uppercase();
    args.skip_spaces();
    let initial = (!args.at_end()).then(|| args.token().to_vec());
    if !MECHANISMS.contains(&mechanism.as_str()) {
        client
            .reply(tag, "NO [CANNOT] Sealpost relays PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER only")
            .await?;
        return Ok(None);
    }
    let step = async |client: &mut Client<S>, challenge: &str, initial: Option<Vec<u8>>| -> Result<Option<Vec<u8>>, SessionError> {
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
async fn log_in_upstream<S: ClientStream>(
    shared: &Arc<Shared>,
    client: &Client<S>,
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
    if account.imap.is_none() {
        client
            .reply(
                tag,
                "NO [UNAVAILABLE] Sealpost: this account has no IMAP server; set imap = \"imaps://host:993\" in its [[account]]",
            )
            .await?;
        return Ok(None);
    };
    let mut upstream = match shared.dialer.dial(&account).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let metrics = &shared.metrics;
            metrics
                .upstream_failures
                .with_label_values(&metrics.labels(&[e.kind()], &account.login))
                .inc();
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
    crate::listener::record_session(&account.login, &upstream.server);
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
