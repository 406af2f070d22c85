//! A store's master key: 32 random bytes kept in a file, encrypted to the
//! account's own certificate and signed by it (OpenPGP), so that only the
//! unlocked account key opens it and a file planted by someone who knows
//! only the public certificate is refused. Working keys are derived from
//! it per purpose; the master key itself never leaves memory in clear.

use std::fs;
use std::io;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sequoia_openpgp::crypto::mem::Protected;

use super::{io_error, StoreError};
use crate::pgp::{SignatureStatus, UnlockedKey};

const MASTER_KEY_LEN: usize = 32;

/// Where one store keeps its master key, and how its plaintext starts.
pub(super) struct KeyFile {
    /// The file name inside the store's directory.
    pub(super) name: &'static str,
    /// What the plaintext starts with (the master key follows): a file of
    /// one store is never taken for another's.
    pub(super) magic: &'static [u8],
    /// The store's name in error messages ("message cache").
    pub(super) store: &'static str,
}

/// An unwrapped master key (zeroed when dropped).
pub(super) struct MasterKey(Protected);

impl MasterKey {
    /// Opens the key file `file` in `dir` with `key`, or, when there is
    /// none, makes a new master key and writes it wrapped for `key`. The
    /// flag is true for a new key: whatever the store held is unreadable.
    pub(super) fn open_or_create(dir: &Path, file: &KeyFile, key: &UnlockedKey) -> Result<(MasterKey, bool), StoreError> {
        let path = dir.join(file.name);
        match fs::read(&path) {
            Ok(wrapped) => Ok((unwrap(dir, file, &wrapped, key)?, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((create(dir, file, key)?, true)),
            Err(e) => Err(io_error(&path, "read")(e)),
        }
    }

    /// A working key for one purpose: HMAC-SHA256(master, label).
    pub(super) fn derive(&self, label: &[u8]) -> Protected {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        Protected::from(hmac::sign(&key, label).as_ref())
    }
}

fn create(dir: &Path, file: &KeyFile, key: &UnlockedKey) -> Result<MasterKey, StoreError> {
    let failed = |reason: String| StoreError::KeyCreation {
        store: file.store,
        dir: dir.to_path_buf(),
        fingerprint: key.cert.fingerprint().to_hex(),
        reason,
    };
    let mut master = Protected::new(MASTER_KEY_LEN);
    SystemRandom::new()
        .fill(&mut master)
        .map_err(|_| failed("the system random number generator failed".into()))?;
    let mut plaintext = Protected::new(file.magic.len() + MASTER_KEY_LEN);
    plaintext[..file.magic.len()].copy_from_slice(file.magic);
    plaintext[file.magic.len()..].copy_from_slice(&master);
    let wrapped = crate::pgp::encrypt_and_sign(&plaintext, &[&key.cert], key).map_err(|e| failed(e.to_string()))?;
    let path = dir.join(file.name);
    crate::files::write_private_file(&path, &wrapped).map_err(io_error(&path, "write"))?;
    tracing::info!(dir = %dir.display(), store = file.store, "created a new store key");
    Ok(MasterKey(master))
}

/// Opens a key file: it must be encrypted to `key` and carry a good
/// signature by `key` itself.
fn unwrap(dir: &Path, file: &KeyFile, wrapped: &[u8], key: &UnlockedKey) -> Result<MasterKey, StoreError> {
    let fingerprint = key.cert.fingerprint().to_hex();
    let name = file.name;
    let refused = |reason: String| StoreError::KeyUnreadable {
        store: file.store,
        dir: dir.to_path_buf(),
        fingerprint: fingerprint.clone(),
        reason,
    };
    let decrypted = crate::pgp::decrypt_own(wrapped, key).map_err(|e| refused(format!("{name}: {e}")))?;
    let plaintext = Protected::from(decrypted.plaintext);
    if !decrypted.was_encrypted {
        return Err(refused(format!("{name} is not encrypted")));
    }
    match decrypted.signatures.best() {
        Some(SignatureStatus::Good { signer, .. }) if *signer == fingerprint => {}
        Some(SignatureStatus::Good { signer, .. }) => return Err(refused(format!("{name} is signed by {signer}, not by the account key"))),
        Some(SignatureStatus::UnknownKey { issuer }) => {
            return Err(refused(format!("{name} is signed by {issuer}, not by the account key")))
        }
        Some(SignatureStatus::Bad { reason }) => return Err(refused(format!("{name} has a bad signature ({reason})"))),
        None => return Err(refused(format!("{name} is not signed"))),
    }
    if plaintext.len() != file.magic.len() + MASTER_KEY_LEN || !plaintext.starts_with(file.magic) {
        return Err(refused(format!("{name} is not a Sealpost {} key", file.store)));
    }
    Ok(MasterKey(Protected::from(&plaintext[file.magic.len()..])))
}
