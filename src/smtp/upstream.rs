//! The client side towards the provider's submission server: connect,
//! insist on TLS (implicit or STARTTLS, never a downgrade), learn the
//! capabilities, relay commands and deliver messages.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};

use std::io::Read;

use super::data::DotStuffer;
use super::reply::{read_reply, Reply, ReplyError};
use crate::spool::Spool;
use crate::tls::{Connector, Stream};
use crate::upstream::connect_tcp;
pub use crate::upstream::UpstreamError;
use crate::url::ServerUrl;

/// How long to wait for a reply to a command (RFC 5321 §4.5.3.2: 5 min).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for the reply after the message data (10 min).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Message data goes out in pieces of this size.
const SEND_CHUNK: usize = 64 * 1024;

/// What the upstream server offers after EHLO (over TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// PIPELINING.
    pub pipelining: bool,
    /// CHUNKING (BDAT).
    pub chunking: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// 8BITMIME.
    pub eightbitmime: bool,
    /// STARTTLS (only meaningful before TLS).
    pub starttls: bool,
    /// SIZE limit, if announced and non-zero.
    pub size: Option<u64>,
    /// SASL mechanisms, upper-cased.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the EHLO reply (its first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eightbitmime = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = words.next().and_then(|s| s.parse().ok()).filter(|&s| s > 0),
                "AUTH" => caps.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        caps
    }
}

impl UpstreamError {
    /// The reply for the mail client: 421 (closing), 4.7.0 for security
    /// refusals, 4.4.x for network trouble, so clients retry later.
    pub fn client_reply(&self) -> Reply {
        let enhanced = match self {
            UpstreamError::Tls(_)
            | UpstreamError::NoStartTls { .. }
            | UpstreamError::StartTlsRefused { .. }
            | UpstreamError::Injection { .. } => "4.7.0",
            UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } => "4.4.1",
            UpstreamError::Refused { .. } | UpstreamError::Protocol { .. } => "4.4.2",
        };
        Reply::new(421, format!("{enhanced} Sealpost: {self}"))
    }
}

/// An authenticated-or-not session with the provider, always over TLS.
pub struct Upstream {
    conn: BufReader<Stream>,
    server: String,
    /// What the server offers.
    pub capabilities: Capabilities,
    /// Where [`Self::command`] and [`Self::send_message`] record how long
    /// the server took.
    timing: Option<prometheus::Histogram>,
}

impl Upstream {
    /// Connects to `url`, establishes TLS (implicit, or STARTTLS which must
    /// be offered and must succeed) and says EHLO with `ehlo_name`. A
    /// handshake that failed resuming an earlier TLS session is tried
    /// once more, afresh.
    pub async fn connect(url: &ServerUrl, connector: &Connector, ehlo_name: &str) -> Result<Upstream, UpstreamError> {
        match Self::connect_once(url, connector, ehlo_name).await {
            Err(UpstreamError::Tls(crate::tls::TlsError::Resumption { .. })) => Self::connect_once(url, connector, ehlo_name).await,
            result => result,
        }
    }

    async fn connect_once(url: &ServerUrl, connector: &Connector, ehlo_name: &str) -> Result<Upstream, UpstreamError> {
        let server = url.to_string();
        let tcp = connect_tcp(url).await?;
        let stream = if url.implicit_tls {
            connector.handshake(tcp, &url.host, url.port).await?
        } else {
            let mut plain = Upstream {
                conn: BufReader::new(Stream::Plain(tcp)),
                server: server.clone(),
                capabilities: Capabilities::default(),
                timing: None,
            };
            plain.expect_greeting().await?;
            let caps = plain.ehlo(ehlo_name).await?;
            if !caps.starttls {
                return Err(UpstreamError::NoStartTls { server });
            }
            let reply = plain.command("STARTTLS").await?;
            if reply.code != 220 {
                return Err(UpstreamError::StartTlsRefused {
                    server,
                    answer: reply.text(),
                });
            }
            // Anything already buffered was sent in clear after our
            // STARTTLS: an injection attempt (CVE-2011-0411 class).
            if !plain.conn.buffer().is_empty() {
                return Err(UpstreamError::Injection { server });
            }
            let Stream::Plain(tcp) = plain.conn.into_inner() else {
                unreachable!("the connection was created plain")
            };
            connector.handshake(tcp, &url.host, url.port).await?
        };
        let mut upstream = Upstream {
            conn: BufReader::new(stream),
            server,
            capabilities: Capabilities::default(),
            timing: None,
        };
        if url.implicit_tls {
            upstream.expect_greeting().await?;
        }
        upstream.capabilities = upstream.ehlo(ehlo_name).await?;
        Ok(upstream)
    }

    /// host:port, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn expect_greeting(&mut self) -> Result<(), UpstreamError> {
        let greeting = self.reply().await?;
        if greeting.code != 220 {
            return Err(UpstreamError::Refused {
                server: self.server.clone(),
                answer: greeting.text(),
            });
        }
        Ok(())
    }

    async fn ehlo(&mut self, name: &str) -> Result<Capabilities, UpstreamError> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if !reply.is_positive() {
            return Err(UpstreamError::Refused {
                server: self.server.clone(),
                answer: reply.text(),
            });
        }
        Ok(Capabilities::from_ehlo(&reply))
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) -> Result<(), UpstreamError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        let io = |source: std::io::Error| UpstreamError::protocol(&self.server, ReplyError::Io(source));
        let stream = self.conn.get_mut();
        stream.write_all(bytes).await.map_err(io)?;
        stream.flush().await.map_err(io)
    }

    /// Reads one reply.
    pub async fn reply(&mut self) -> Result<Reply, UpstreamError> {
        self.reply_within(REPLY_TIMEOUT).await
    }

    async fn reply_within(&mut self, limit: Duration) -> Result<Reply, UpstreamError> {
        match tokio::time::timeout(limit, read_reply(&mut self.conn)).await {
            Err(_) => Err(UpstreamError::Timeout {
                server: self.server.clone(),
                seconds: limit.as_secs(),
            }),
            Ok(Err(source)) => Err(UpstreamError::protocol(&self.server, source)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// Records from now on how long the server takes to answer each
    /// command, and each message once sent, in `histogram`.
    pub fn time_commands(&mut self, histogram: prometheus::Histogram) {
        self.timing = Some(histogram);
    }

    fn timed(&self, since: std::time::Instant) {
        if let Some(histogram) = &self.timing {
            histogram.observe(since.elapsed().as_secs_f64());
        }
    }

    /// Sends a command and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, UpstreamError> {
        let started = std::time::Instant::now();
        self.send(line).await?;
        let reply = self.reply().await;
        self.timed(started);
        reply
    }

    /// Sends the message after accepted RCPTs, streaming it from the
    /// spool: BDAT when offered (no stuffing needed), else DATA. Returns
    /// the final reply, which may be a refusal.
    pub async fn send_message(&mut self, message: &Spool) -> Result<Reply, UpstreamError> {
        let mut reader = message.reader_at(0);
        let mut chunk = vec![0u8; SEND_CHUNK];
        let spool_error = |server: &str, e: std::io::Error| UpstreamError::protocol(server, ReplyError::Io(e));
        if self.capabilities.chunking {
            self.send(&format!("BDAT {} LAST", message.len())).await?;
            loop {
                let n = reader.read(&mut chunk).map_err(|e| spool_error(&self.server, e))?;
                if n == 0 {
                    break;
                }
                self.write(&chunk[..n]).await?;
            }
            return self.final_reply().await;
        }
        let go_ahead = self.command("DATA").await?;
        if go_ahead.code != 354 {
            return Ok(go_ahead);
        }
        let mut stuffer = DotStuffer::default();
        let mut stuffed = Vec::with_capacity(SEND_CHUNK + SEND_CHUNK / 8);
        loop {
            let n = reader.read(&mut chunk).map_err(|e| spool_error(&self.server, e))?;
            if n == 0 {
                break;
            }
            stuffed.clear();
            stuffer.push(&chunk[..n], &mut stuffed);
            self.write(&stuffed).await?;
        }
        stuffed.clear();
        stuffer.finish(&mut stuffed);
        self.write(&stuffed).await?;
        self.final_reply().await
    }

    /// The reply to a message sent in full: the time recorded is the
    /// server's, from the last byte on.
    async fn final_reply(&mut self) -> Result<Reply, UpstreamError> {
        let started = std::time::Instant::now();
        let reply = self.reply_within(DATA_TIMEOUT).await;
        self.timed(started);
        reply
    }

    /// Says goodbye; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_postfix_ehlo() {
        let reply = Reply {
            code: 250,
            lines: [
                "mail.example.test",
                "PIPELINING",
                "SIZE 52428800",
                "ETRN",
                "STARTTLS",
                "AUTH PLAIN login",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.pipelining && caps.chunking && caps.smtputf8 && caps.eightbitmime && caps.starttls);
        assert_eq!(caps.size, Some(52_428_800));
        assert_eq!(caps.auth, vec!["PLAIN", "LOGIN"]);
        assert_eq!(Capabilities::from_ehlo(&Reply::new(250, "x")), Capabilities::default());
    }
}
