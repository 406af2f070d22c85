//! OpenPGP: the key store, passphrase handling, and the raw cryptographic
//! operations (sign+encrypt, decrypt+verify, detached signatures).
//!
//! This module owns every call into sequoia-openpgp and every choice of
//! algorithm, so that interoperability rules live in one place: v4 keys by
//! default, SEIPDv1 unless every recipient advertises SEIPDv2, AES-256,
//! SHA-256, never GnuPG's OCB packet, no unprotected (SED) data. It knows
//! nothing about MIME; [`crate::message`] builds mail on top of it.

mod error;
mod keystore;
mod live;
mod ops;
mod passphrase;

pub use error::KeyError;
pub use keystore::{KeySource, KeyState, Keystore, Learned, StoredKey, UnlockedKey};
pub use live::LiveKeystore;
pub use ops::{
    decrypt, decrypt_own, encrypt_and_sign, encrypt_and_sign_to, minimal_autocrypt_key, sign_detached, verify_detached, Decrypted,
    Notation, SignatureCheck, SignatureStatus,
};
pub use passphrase::{Passphrase, PassphraseSource};

use sequoia_openpgp::policy::StandardPolicy;

/// The one policy every validity decision uses.
pub(crate) static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Lower-cases an address the way key look-ups compare it.
pub fn normalize_email(email: &str) -> String {
    email.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase()
}
