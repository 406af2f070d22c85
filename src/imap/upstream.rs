//! The connection towards the provider's IMAP server: TCP, TLS (implicit,
//! or STARTTLS that must be offered and must succeed: never a downgrade),
//! the greeting, capabilities, login, and simple internal commands. The
//! session relays the client's traffic over it; the side fetcher uses it
//! for its own read-only commands.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::auth::Credentials;
use super::framer::{self, FrameError};
use crate::account::Account;
use crate::tls::{Connector, Stream};
use crate::upstream::connect_tcp;
pub use crate::upstream::UpstreamError;
use crate::url::ServerUrl;

/// How long to wait for the answer to an internal command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest line accepted from the server outside literals.
pub const MAX_LINE: usize = 1024 * 1024;

/// The end of a command: the tagged status line and the untagged lines
/// before it (literals skipped).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Untagged and continuation lines, without CRLF.
    pub untagged: Vec<Vec<u8>>,
    /// The tagged line after the tag, without CRLF: `OK [..] text`.
    pub status: Vec<u8>,
}

impl Answer {
    /// True for `OK`.
    pub fn is_ok(&self) -> bool {
        self.status.len() >= 2 && self.status[..2].eq_ignore_ascii_case(b"OK")
    }

    /// The status as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.status).into_owned()
    }
}

/// A buffered two-way stream to an IMAP server.
pub trait ServerStream: AsyncBufRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncBufRead + AsyncWrite + Send + Unpin> ServerStream for T {}

/// Any server stream: TLS to a provider, or an in-memory server in tests.
pub type BoxedServerStream = Box<dyn ServerStream>;

/// A connection to the account's IMAP server, greeted, its capabilities
/// known (over TLS, when [`Upstream::connect`] made it).
pub struct Upstream<C = BoxedServerStream> {
    /// The connection.
    pub conn: C,
    /// host:port, for messages.
    pub server: String,
    /// The capabilities it announced last (upper-cased words).
    pub capabilities: Vec<String>,
    tags_issued: u32,
}

/// Opens the connections to an account's IMAP server: the client
/// session's and the side connections'. Sessions take it from their
/// shared state, so tests can put an in-memory server behind it.
pub trait Dialer: Send + Sync {
    /// A greeted connection to `account`'s IMAP server.
    fn dial<'a>(&'a self, account: &'a Account) -> Pin<Box<dyn Future<Output = Result<Upstream, UpstreamError>> + Send + 'a>>;
}

/// Dials the account's configured server over verified TLS.
pub struct TlsDialer;

impl Dialer for TlsDialer {
    fn dial<'a>(&'a self, account: &'a Account) -> Pin<Box<dyn Future<Output = Result<Upstream, UpstreamError>> + Send + 'a>> {
        Box::pin(async move {
            let url = account.imap.as_ref().ok_or_else(|| UpstreamError::Protocol {
                server: account.login.clone(),
                reason: "this account has no IMAP server".into(),
            })?;
            Upstream::connect(url, &account.connector).await
        })
    }
}

impl Upstream {
    /// Connects, establishes TLS (implicit, or STARTTLS which must be
    /// offered and succeed) and reads the capabilities. A handshake that
    /// failed resuming an earlier TLS session is tried once more, afresh.
    pub async fn connect(url: &ServerUrl, connector: &Connector) -> Result<Upstream, UpstreamError> {
        match Self::connect_once(url, connector).await {
            Err(UpstreamError::Tls(crate::tls::TlsError::Resumption { .. })) => Self::connect_once(url, connector).await,
            result => result,
        }
    }

    async fn connect_once(url: &ServerUrl, connector: &Connector) -> Result<Upstream, UpstreamError> {
        let server = url.to_string();
        let tcp = connect_tcp(url).await?;
        let tls = if url.implicit_tls {
            connector.handshake(tcp, &url.host, url.port).await?
        } else {
            let mut plain = Upstream {
                conn: BufReader::new(Stream::Plain(tcp)),
                server: server.clone(),
                capabilities: Vec::new(),
                tags_issued: 0,
            };
            plain.greeting().await?;
            if plain.capabilities.is_empty() {
                plain.refresh_capabilities().await?;
            }
            if !plain.has("STARTTLS") {
                return Err(UpstreamError::NoStartTls { server });
            }
            let answer = plain.command(b"STARTTLS").await?;
            if !answer.is_ok() {
                return Err(UpstreamError::StartTlsRefused {
                    server,
                    answer: answer.text(),
                });
            }
            // Anything already buffered was sent in clear after our
            // STARTTLS: an injection attempt.
            if !plain.conn.buffer().is_empty() {
                return Err(UpstreamError::Injection { server });
            }
            let Stream::Plain(tcp) = plain.conn.into_inner() else {
                unreachable!("the connection was created plain")
            };
            connector.handshake(tcp, &url.host, url.port).await?
        };
        let mut upstream = Upstream::over(Box::new(BufReader::new(tls)), server);
        if url.implicit_tls {
            upstream.greeting().await?;
        }
        if upstream.capabilities.is_empty() {
            upstream.refresh_capabilities().await?;
        }
        Ok(upstream)
    }

    /// A session over `conn` to `server` (host:port, for messages), before
    /// the greeting: [`Upstream::greeted`] reads it.
    pub fn over(conn: BoxedServerStream, server: String) -> Upstream {
        Upstream {
            conn,
            server,
            capabilities: Vec::new(),
            tags_issued: 0,
        }
    }

    /// A session over `conn` once its greeting and capabilities are read:
    /// what a [`Dialer`] for another kind of stream returns.
    pub async fn greeted(conn: BoxedServerStream, server: String) -> Result<Upstream, UpstreamError> {
        let mut upstream = Upstream::over(conn, server);
        upstream.greeting().await?;
        if upstream.capabilities.is_empty() {
            upstream.refresh_capabilities().await?;
        }
        Ok(upstream)
    }
}

impl<C: ServerStream> Upstream<C> {
    /// True when the server announced `capability`.
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    async fn greeting(&mut self) -> Result<(), UpstreamError> {
        let line = self.read_line().await?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if !text.to_ascii_uppercase().starts_with("* OK") {
            return Err(UpstreamError::Refused {
                server: self.server.clone(),
                answer: text,
            });
        }
        self.capabilities = capabilities_in(&line).unwrap_or_default();
        Ok(())
    }

    /// Asks for CAPABILITY and remembers the answer.
    pub async fn refresh_capabilities(&mut self) -> Result<(), UpstreamError> {
        let answer = self.command(b"CAPABILITY").await?;
        for line in &answer.untagged {
            if let Some(caps) = capabilities_in(line) {
                self.capabilities = caps;
            }
        }
        if let Some(caps) = capabilities_in(&answer.status) {
            self.capabilities = caps;
        }
        Ok(())
    }

    /// Logs in with the client's credentials. Returns the server's answer
    /// (which may be `NO`).
    pub async fn login(&mut self, credentials: &Credentials) -> Result<Answer, UpstreamError> {
        let answer = match credentials {
            Credentials::Login { user, password } => {
                let mut line = b"LOGIN ".to_vec();
                self.push_astring(&mut line, user)?;
                line.push(b' ');
                self.push_astring(&mut line, password)?;
                self.command(&line).await?
            }
            Credentials::Sasl { mechanism, response } => {
                let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, response);
                let encoded = if encoded.is_empty() { "=".to_string() } else { encoded };
                if self.has("SASL-IR") {
                    self.command(format!("AUTHENTICATE {mechanism} {encoded}").as_bytes()).await?
                } else {
                    self.command_with_continuation(format!("AUTHENTICATE {mechanism}").as_bytes(), encoded.as_bytes())
                        .await?
                }
            }
        };
        if answer.is_ok() {
            if let Some(caps) = capabilities_in(&answer.status) {
                self.capabilities = caps;
            } else {
                self.refresh_capabilities().await?;
            }
        }
        Ok(answer)
    }

    /// Appends an astring: quoted when the bytes allow it, else a
    /// non-synchronizing literal, which needs LITERAL+ (or LITERAL-).
    pub fn push_astring(&self, line: &mut Vec<u8>, value: &[u8]) -> Result<(), UpstreamError> {
        let quotable = value.len() < 1000 && value.iter().all(|&b| (0x20..0x7f).contains(&b));
        if quotable {
            super::emit::quoted(line, value);
            return Ok(());
        }
        if !(self.has("LITERAL+") || self.has("LITERAL-")) {
            return Err(UpstreamError::Protocol {
                server: self.server.clone(),
                reason: "the credentials contain characters that need a literal, and the server has no LITERAL+; use AUTHENTICATE PLAIN"
                    .into(),
            });
        }
        line.extend_from_slice(format!("{{{}+}}\r\n", value.len()).as_bytes());
        line.extend_from_slice(value);
        Ok(())
    }

    /// A fresh tag for a command of the proxy's own.
    pub fn next_tag(&mut self) -> String {
        self.tags_issued += 1;
        format!("SP{}", self.tags_issued)
    }

    /// Sends `command` (without tag and CRLF) and reads to its tagged end.
    pub async fn command(&mut self, command: &[u8]) -> Result<Answer, UpstreamError> {
        let tag = self.next_tag();
        self.send(&tag, command).await?;
        self.answer(&tag, None).await
    }

    /// Like [`Upstream::command`], answering the server's first `+` with
    /// `response`.
    async fn command_with_continuation(&mut self, command: &[u8], response: &[u8]) -> Result<Answer, UpstreamError> {
        let tag = self.next_tag();
        self.send(&tag, command).await?;
        self.answer(&tag, Some(response)).await
    }

    async fn send(&mut self, tag: &str, command: &[u8]) -> Result<(), UpstreamError> {
        let mut line = Vec::with_capacity(tag.len() + command.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        self.write(&line).await
    }

    /// Writes raw bytes to the server.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        let server = self.server.clone();
        let io = |e: std::io::Error| UpstreamError::protocol(&server, e.to_string());
        self.conn.write_all(bytes).await.map_err(io)?;
        self.conn.flush().await.map_err(io)
    }

    /// Reads lines until the one tagged `tag`. Untagged lines are kept
    /// (literal data skipped). A `+` is answered with `continuation` once,
    /// then with an empty line (which cancels a SASL exchange).
    async fn answer(&mut self, tag: &str, mut continuation: Option<&[u8]>) -> Result<Answer, UpstreamError> {
        let mut answer = Answer::default();
        let prefix = format!("{tag} ");
        loop {
            let line = self.read_line().await?;
            let trimmed = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(&line);
            if let Some(status) = trimmed.strip_prefix(prefix.as_bytes()) {
                answer.status = status.to_vec();
                return Ok(answer);
            }
            if trimmed.starts_with(b"+") {
                let reply = continuation.take().unwrap_or_default();
                let mut out = reply.to_vec();
                out.extend_from_slice(b"\r\n");
                self.write(&out).await?;
            }
            answer.untagged.push(trimmed.to_vec());
        }
    }

    /// Reads one line, skipping any literal it announces (internal
    /// commands never need literal data).
    async fn read_line(&mut self) -> Result<Vec<u8>, UpstreamError> {
        let mut line = Vec::new();
        let read = framer::read_segment(&mut self.conn, MAX_LINE, &mut line);
        let literal = tokio::time::timeout(ANSWER_TIMEOUT, read)
            .await
            .map_err(|_| UpstreamError::Timeout {
                server: self.server.clone(),
                seconds: ANSWER_TIMEOUT.as_secs(),
            })?
            .map_err(|e| UpstreamError::protocol(&self.server, e.to_string()))?;
        if line.is_empty() {
            return Err(UpstreamError::protocol(&self.server, "the server closed the connection"));
        }
        if let Some(literal) = literal {
            framer::copy_literal(&mut self.conn, literal.size, &mut tokio::io::sink())
                .await
                .map_err(|e: FrameError| UpstreamError::protocol(&self.server, e.to_string()))?;
            let mut rest = self.read_line_boxed().await?;
            line.append(&mut rest);
        }
        Ok(line)
    }

    fn read_line_boxed(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, UpstreamError>> + Send + '_>> {
        Box::pin(self.read_line())
    }
}

/// The capability words in `* CAPABILITY ...` or a `[CAPABILITY ...]`
/// response code, upper-cased.
pub fn capabilities_in(line: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(line);
    let upper = text.to_ascii_uppercase();
    let words = if let Some(start) = upper.find("[CAPABILITY ") {
        let rest = &upper[start + 12..];
        &rest[..rest.find(']')?]
    } else {
        upper.trim_end().strip_prefix("* CAPABILITY ")?
    };
    Some(words.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_forms() {
        assert_eq!(
            capabilities_in(b"* OK [CAPABILITY IMAP4rev1 STARTTLS auth=plain] ready\r\n").unwrap(),
            ["IMAP4REV1", "STARTTLS", "AUTH=PLAIN"]
        );
        assert_eq!(capabilities_in(b"* CAPABILITY IMAP4rev1 IDLE\r\n").unwrap(), ["IMAP4REV1", "IDLE"]);
        assert!(capabilities_in(b"* OK ready\r\n").is_none());
    }
}
