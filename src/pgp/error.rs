//! Errors of the key store and the OpenPGP operations. Every message says
//! what happened and what the user can do about it.

use std::path::PathBuf;

/// Something went wrong with keys or an OpenPGP operation.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No certificate carries this address at all.
    #[error("no OpenPGP key found for <{0}>; import one with 'sealpost keys import'")]
    NotFound(String),
    /// The only certificates for the address have expired.
    #[error("the OpenPGP key {fingerprint} for <{email}> has expired; import an updated key with 'sealpost keys import'")]
    Expired {
        /// The address looked up.
        email: String,
        /// The newest expired certificate.
        fingerprint: String,
    },
    /// The only certificates for the address are revoked.
    #[error("the OpenPGP key {fingerprint} for <{email}> is revoked and will not be used; import the owner's new key with 'sealpost keys import'")]
    Revoked {
        /// The address looked up.
        email: String,
        /// The newest revoked certificate.
        fingerprint: String,
    },
    /// A certificate exists but offers no usable encryption (sub)key or is
    /// rejected by the standard policy (for example SHA-1 self-signatures).
    #[error("the OpenPGP key {fingerprint} for <{email}> has no valid encryption key ({reason}); import an updated key with 'sealpost keys import'")]
    Unusable {
        /// The address looked up.
        email: String,
        /// The newest candidate.
        fingerprint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No secret key for the sender.
    #[error("no secret key for <{0}>; create one with 'sealpost keys generate {0}' or import yours with 'sealpost keys import'")]
    NoOwnKey(String),
    /// A secret key could not be unlocked.
    #[error("cannot unlock the secret key {fingerprint}: {reason}")]
    Locked {
        /// The certificate whose key stayed locked.
        fingerprint: String,
        /// What went wrong (wrong passphrase, no passphrase source).
        reason: String,
    },
    /// No certificate with this fingerprint.
    #[error("no key with fingerprint {0} in the key store; see 'sealpost keys list'")]
    UnknownFingerprint(String),
    /// Input that is not OpenPGP key material.
    #[error("{source_name}: not a readable OpenPGP key: {reason}")]
    Parse {
        /// The file or stream it came from.
        source_name: String,
        /// The parser's explanation.
        reason: String,
    },
    /// Reading or writing the key store failed.
    #[error("key store {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key store's metadata file is damaged.
    #[error("key store metadata {}: {reason}; fix or remove the file (keys themselves are in the .pgp files beside it)", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What could not be read.
        reason: String,
    },
    /// An OpenPGP operation failed (key generation, encryption, signing).
    #[error("OpenPGP operation failed: {0}")]
    Crypto(String),
}

impl KeyError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> KeyError {
        let path = path.into();
        move |source| KeyError::Io { path, source }
    }

    /// Wraps a sequoia error from an operation.
    pub(crate) fn crypto(err: impl std::fmt::Display) -> KeyError {
        KeyError::Crypto(err.to_string())
    }
}
