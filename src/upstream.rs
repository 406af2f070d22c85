//! What both proxies' connections to the provider share: opening the TCP
//! connection within a time limit, and the ways such a connection can
//! fail, with a short label for metrics. The protocols themselves (EHLO,
//! STARTTLS commands, login) stay in `smtp/` and `imap/`.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::tls::TlsError;
use crate::url::ServerUrl;

/// How long to wait for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the provider's server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connection failed.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// host:port.
        server: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS failed (certificate, pin, handshake).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server does not offer STARTTLS: refusing to continue in clear.
    #[error("{server} does not offer STARTTLS; refusing to send anything without TLS")]
    NoStartTls {
        /// host:port.
        server: String,
    },
    /// The server answered STARTTLS with an error.
    #[error("{server} refused STARTTLS ({answer}); refusing to send anything without TLS")]
    StartTlsRefused {
        /// host:port.
        server: String,
        /// What it said.
        answer: String,
    },
    /// Data arrived before the TLS handshake (STARTTLS command injection).
    #[error("{server} sent data before the TLS handshake; connection dropped")]
    Injection {
        /// host:port.
        server: String,
    },
    /// The greeting (or EHLO) was a refusal.
    #[error("{server} refused the session: {answer}")]
    Refused {
        /// host:port.
        server: String,
        /// What it said.
        answer: String,
    },
    /// The server broke the protocol or the connection.
    #[error("{server}: {reason}")]
    Protocol {
        /// host:port.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer in time.
    #[error("{server} did not answer within {seconds} s")]
    Timeout {
        /// host:port.
        server: String,
        /// The limit.
        seconds: u64,
    },
}

impl UpstreamError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Tls(TlsError::PinMismatch(_)) => "pin",
            UpstreamError::Tls(_) => "tls",
            UpstreamError::NoStartTls { .. } | UpstreamError::StartTlsRefused { .. } | UpstreamError::Injection { .. } => "starttls",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::Protocol { .. } => "protocol",
            UpstreamError::Timeout { .. } => "timeout",
        }
    }

    /// A protocol failure with `server`.
    pub fn protocol(server: &str, reason: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Protocol {
            server: server.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Opens the TCP connection to `url` (Nagle off: commands are small and
/// answered one by one).
pub async fn connect_tcp(url: &ServerUrl) -> Result<TcpStream, UpstreamError> {
    let server = url.to_string();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|_| UpstreamError::Timeout {
            server: server.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })?
        .map_err(|source| UpstreamError::Connect { server, source })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
