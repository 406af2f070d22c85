//! Mail-level OpenPGP: turning an RFC 5322 message into PGP/MIME
//! (RFC 3156) with header protection (RFC 9788) and Autocrypt headers, and
//! turning PGP/MIME or inline PGP back into what a mail client should show.
//!
//! This module owns message layout decisions: which headers are protected,
//! how the payload carries them (on the original root, never a wrapper),
//! how copies are split for Bcc recipients, how the account's own copies
//! come back exactly as uploaded, and the `Sealpost-Status` header. Cryptography is delegated to
//! [`crate::pgp`], byte-level MIME reading to [`crate::mime`]; nothing here
//! does I/O.

mod autocrypt;
mod decrypt;
mod encrypt;
mod payload;
mod sign;

pub use autocrypt::{autocrypt_header, lessons, parse_autocrypt, Lessons, PeerKey};
pub use decrypt::{decrypt_message, protection, DecryptOutcome, Protection, Status};
pub use encrypt::{encrypt_message, seal_for_self, CopyPlan, EncryptedCopy, Envelope, Sealer};
pub use sign::sign_message;

use crate::pgp::KeyError;

/// The name of the header Sealpost adds to every message it shows a client.
pub const STATUS_HEADER: &str = "Sealpost-Status";

/// Why a message could not be encrypted or signed.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Input that is already OpenPGP-protected is never wrapped again.
    #[error("the message is already OpenPGP-protected (PGP/MIME or inline PGP); it must be passed on unchanged")]
    AlreadyProtected,
    /// No sender address.
    #[error("the message has no From address; add a From header or pass --from")]
    NoSender,
    /// No recipient at all.
    #[error("the message has no recipients; add To, Cc or Bcc headers or pass --to")]
    NoRecipients,
    /// A key problem (missing, expired, revoked, locked).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Writing the result failed (a full spool disk, a closed pipe).
    #[error("writing the message failed: {0}")]
    Write(#[from] std::io::Error),
}
