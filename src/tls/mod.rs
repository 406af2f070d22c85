//! TLS for both legs: the local certificate clients connect to, the
//! verified connections to upstream servers, and one stream type that is
//! plain before STARTTLS and encrypted after.
//!
//! This module owns every rustls configuration, so that certificate
//! checking (and later pinning) happens in exactly one place. It knows
//! nothing about SMTP or IMAP.

mod fetch;
mod local;
mod pin;
mod pinstore;
mod stream;
mod upstream;
mod verify;

use std::sync::Arc;

pub use fetch::{fetch_chain, ChainEntry, FetchTarget, Protocol};
pub use local::LocalTls;
pub use pin::{Pin, TrustMode};
pub use pinstore::{PinRecord, PinStore};
pub use stream::Stream;
pub use upstream::{Connector, Trust};
pub use verify::{PinMismatch, Presented};

use sha2::{Digest, Sha256};

/// A TLS problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The local certificate could not be generated.
    #[error("cannot generate the local certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration (for example a key that does not
    /// match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(String),
    /// The server's name is not usable for certificate checking.
    #[error("'{0}' is not a valid server name for TLS")]
    BadName(String),
    /// A certificate could not be read.
    #[error("{0}")]
    Certificate(String),
    /// A pinned server presented another key.
    #[error(transparent)]
    PinMismatch(#[from] PinMismatch),
    /// A handshake that offered to resume an earlier session failed; the
    /// server is not offered resumption again, and the caller retries
    /// once on a new connection.
    #[error("TLS with {host} failed while resuming a session ({reason}); retrying without")]
    Resumption {
        /// host:port.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake with an upstream server failed.
    #[error("TLS with {host} failed: {reason}")]
    Handshake {
        /// host:port.
        host: String,
        /// What went wrong, with a hint where there is one.
        reason: String,
    },
}

/// The crypto provider every configuration uses (ring: no C toolchain
/// beyond what the build already needs).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate's SHA-256 fingerprint as colon-separated upper-case hex,
/// the form mail clients show in their certificate dialogs.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
