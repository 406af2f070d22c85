//! The key store: one binary OpenPGP file per certificate under
//! `data_dir/keys/`, plus `meta.toml` recording where each came from.
//!
//! Secret key material is stored exactly as OpenPGP protects it (S2K with
//! the key's own passphrase); the store never writes it unprotected unless
//! the user generated or imported it that way. Files are 0600 in a 0700
//! directory and written atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::cert::{CertBuilder, CertParser, CipherSuite};
use openpgp::crypto::KeyPair;
use openpgp::packet::{key, Key, UserID};
use openpgp::parse::Parse;
use openpgp::serialize::Serialize;
use openpgp::types::{Features, KeyFlags, RevocationStatus};
use openpgp::{Cert, KeyHandle, Profile};
use sequoia_openpgp as openpgp;
use serde::{Deserialize, Serialize as SerdeSerialize};

use super::{normalize_email, KeyError, PassphraseSource, POLICY};

/// How long generated keys stay valid before they must be extended.
const GENERATED_KEY_VALIDITY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);

/// Where a certificate in the store came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, SerdeSerialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Made by `sealpost keys generate`.
    Generated,
    /// Brought in by `sealpost keys import`.
    Imported,
    /// Found in the recipient domain's Web Key Directory.
    Wkd,
    /// Found on a keyserver (VKS).
    Keyserver,
    /// Sent by its owner in an `Autocrypt:` header.
    Autocrypt,
    /// Passed on by a third party in an `Autocrypt-Gossip:` header.
    Gossip,
}

impl KeySource {
    /// How much a key from this source is trusted for its address, lower
    /// first: keys the user brought beat the Web Key Directory, which
    /// beats keyservers, which beat Autocrypt, which beats gossip.
    pub fn rank(self) -> u8 {
        match self {
            KeySource::Generated | KeySource::Imported => 0,
            KeySource::Wkd => 1,
            KeySource::Keyserver => 2,
            KeySource::Autocrypt => 3,
            KeySource::Gossip => 4,
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Generated => "generated",
            KeySource::Imported => "imported",
            KeySource::Wkd => "wkd",
            KeySource::Keyserver => "keyserver",
            KeySource::Autocrypt => "autocrypt",
            KeySource::Gossip => "gossip",
        })
    }
}

/// What [`Keystore::learn`] did with a discovered certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// A certificate the store did not have.
    New,
    /// A certificate it had, with updates merged in (new subkeys,
    /// extended expiry, revocations).
    Updated,
    /// Nothing new.
    Unchanged,
    /// Stored, but not used for its address: a key from a more trusted
    /// source (this fingerprint) stays in use. A discovered key never
    /// silently replaces one the user imported.
    Shadowed {
        /// The key that stays in use.
        by: String,
    },
}

/// Whether a certificate can be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Valid under the standard policy, alive, not revoked.
    Valid,
    /// Past its expiration time.
    Expired,
    /// Revoked by its owner.
    Revoked,
    /// Rejected by the policy (weak algorithms, broken self-signatures).
    Invalid(String),
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyState::Valid => f.write_str("valid"),
            KeyState::Expired => f.write_str("expired"),
            KeyState::Revoked => f.write_str("revoked"),
            KeyState::Invalid(_) => f.write_str("invalid"),
        }
    }
}

#[derive(Debug, Clone, SerdeSerialize, Deserialize)]
struct Meta {
    source: KeySource,
    /// Seconds since the epoch when the key entered the store.
    added: u64,
}

/// One certificate in the store with its metadata.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The certificate, with secret key material when it is one of ours.
    pub cert: Cert,
    /// Where it came from.
    pub source: KeySource,
    /// When it entered the store.
    pub added: SystemTime,
}

impl StoredKey {
    /// True when the store holds secret key material for it (an own key).
    pub fn is_own(&self) -> bool {
        self.cert.is_tsk()
    }

    /// The fingerprint as upper-case hex.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// Every normalised address in the certificate's user IDs.
    pub fn emails(&self) -> Vec<String> {
        let mut emails: Vec<String> = self
            .cert
            .userids()
            .filter_map(|u| u.userid().email_normalized().ok().flatten())
            .collect();
        emails.dedup();
        emails
    }

    fn has_email(&self, email: &str) -> bool {
        self.emails().iter().any(|e| e == email)
    }

    /// Whether the certificate is usable now.
    pub fn state(&self) -> KeyState {
        match self.cert.with_policy(&POLICY, None) {
            Err(e) => KeyState::Invalid(e.to_string()),
            Ok(vc) => {
                if let RevocationStatus::Revoked(_) = vc.revocation_status() {
                    KeyState::Revoked
                } else if vc.alive().is_err() {
                    KeyState::Expired
                } else {
                    KeyState::Valid
                }
            }
        }
    }

    /// When the primary key expires, if it does.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.cert
            .with_policy(&POLICY, None)
            .ok()
            .and_then(|vc| vc.primary_key().key_expiration_time())
    }

    /// A short algorithm description: primary key / encryption subkey.
    pub fn algorithm(&self) -> String {
        let primary = algorithm_name(self.cert.primary_key().key());
        let encryption = self.cert.with_policy(&POLICY, None).ok().and_then(|vc| {
            vc.keys()
                .subkeys()
                .for_transport_encryption()
                .next()
                .map(|ka| algorithm_name(ka.key()))
        });
        match encryption {
            Some(e) => format!("{primary}/{e}"),
            None => primary,
        }
    }

    /// Checks that this certificate can encrypt to `email` now, saying
    /// precisely why not.
    fn check_encryption_to(&self, email: &str) -> Result<(), KeyError> {
        let fingerprint = self.fingerprint();
        let email_owned = email.to_string();
        let vc = self.cert.with_policy(&POLICY, None).map_err(|e| KeyError::Unusable {
            email: email_owned.clone(),
            fingerprint: fingerprint.clone(),
            reason: e.to_string(),
        })?;
        match self.state() {
            KeyState::Revoked => {
                return Err(KeyError::Revoked {
                    email: email_owned,
                    fingerprint,
                })
            }
            KeyState::Expired => {
                return Err(KeyError::Expired {
                    email: email_owned,
                    fingerprint,
                })
            }
            _ => {}
        }
        let uid_valid = vc.userids().any(|u| {
            u.userid().email_normalized().ok().flatten().as_deref() == Some(email)
                && !matches!(u.revocation_status(), RevocationStatus::Revoked(_))
        });
        if !uid_valid {
            return Err(KeyError::Unusable {
                email: email_owned,
                fingerprint,
                reason: "the user ID for this address is revoked or not validly signed".into(),
            });
        }
        let usable = vc
            .keys()
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .next()
            .is_some();
        if !usable {
            let any_expired = vc.keys().for_transport_encryption().revoked(false).next().is_some();
            if any_expired {
                return Err(KeyError::Expired {
                    email: email_owned,
                    fingerprint,
                });
            }
            return Err(KeyError::Unusable {
                email: email_owned,
                fingerprint,
                reason: "no valid encryption-capable subkey".into(),
            });
        }
        Ok(())
    }
}

fn algorithm_name<P: key::KeyParts, R: key::KeyRole>(key: &Key<P, R>) -> String {
    use openpgp::crypto::mpi::PublicKey;
    match key.mpis() {
        PublicKey::RSA { n, .. } => format!("rsa{}", n.bits()),
        PublicKey::DSA { p, .. } => format!("dsa{}", p.bits()),
        PublicKey::EdDSA { curve, .. } | PublicKey::ECDSA { curve, .. } | PublicKey::ECDH { curve, .. } => match curve {
            openpgp::types::Curve::Ed25519 => "ed25519".into(),
            openpgp::types::Curve::Cv25519 => "cv25519".into(),
            other => other.to_string().to_lowercase().replace(' ', ""),
        },
        _ => key.pk_algo().to_string().to_lowercase(),
    }
}

/// A secret key unlocked for use: the signing key pair and every
/// decryption key pair of one of our certificates.
#[derive(Clone)]
pub struct UnlockedKey {
    /// The certificate (public parts are what signatures refer to).
    pub cert: Cert,
    /// The valid signing-capable key, if the certificate has one.
    pub signer: Option<KeyPair>,
    /// Every secret encryption-capable key, expired ones included so that
    /// old mail still decrypts.
    pub decryptors: Vec<KeyPair>,
    /// The owner's Autocrypt setting: their `Autocrypt:` headers say
    /// `prefer-encrypt=mutual` (off unless the account configures it).
    pub prefer_encrypt_mutual: bool,
}

/// The on-disk key store.
#[derive(Clone)]
pub struct Keystore {
    dir: PathBuf,
    keys: Vec<StoredKey>,
}

impl Keystore {
    /// Opens (creating if needed) the store under `data_dir/keys`.
    pub fn open(data_dir: &Path) -> Result<Keystore, KeyError> {
        let dir = data_dir.join("keys");
        create_private_dir(&dir)?;
        let meta = read_meta(&dir)?;
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(KeyError::io(&dir))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pgp"))
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(KeyError::io(&path))?;
            let cert = Cert::from_bytes(&bytes).map_err(|e| KeyError::Parse {
                source_name: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let m = meta.get(&cert.fingerprint().to_hex()).cloned().unwrap_or(Meta {
                source: KeySource::Imported,
                added: 0,
            });
            keys.push(StoredKey {
                cert,
                source: m.source,
                added: UNIX_EPOCH + Duration::from_secs(m.added),
            });
        }
        Ok(Keystore { dir, keys })
    }

    /// Every certificate, in fingerprint order.
    pub fn keys(&self) -> &[StoredKey] {
        &self.keys
    }

    /// Generates an Ed25519/Cv25519 key for `email`. The primary key
    /// certifies and signs, one subkey encrypts: the shape Autocrypt
    /// requires. `v6` selects RFC 9580 keys (which GnuPG cannot read); the
    /// default v4 key advertises only SEIPDv1 so that peers encrypt to it in
    /// a form GnuPG 2.2 and Thunderbird can read too.
    pub fn generate(&mut self, email: &str, passphrase: Option<super::Passphrase>, v6: bool) -> Result<&StoredKey, KeyError> {
        let email = normalize_email(email);
        let uid = UserID::from(format!("<{email}>"));
        if uid.email_normalized().ok().flatten().as_deref() != Some(email.as_str()) {
            return Err(KeyError::Crypto(format!("'{email}' is not a valid e-mail address")));
        }
        let (profile, features) = if v6 {
            (Profile::RFC9580, Features::sequoia())
        } else {
            (Profile::RFC4880, Features::empty().set_seipdv1())
        };
        let (cert, _revocation) = CertBuilder::new()
            .set_profile(profile)
            .map_err(KeyError::crypto)?
            .set_features(features)
            .map_err(KeyError::crypto)?
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_validity_period(GENERATED_KEY_VALIDITY)
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_userid(uid)
            .add_subkey(KeyFlags::empty().set_transport_encryption().set_storage_encryption(), None, None)
            .set_password(passphrase)
            .generate()
            .map_err(KeyError::crypto)?;
        let fpr = self.store(cert, KeySource::Generated)?;
        tracing::info!(fingerprint = %fpr, %email, v6, "generated key");
        Ok(self.get(&fpr).expect("just stored"))
    }

    /// Imports every certificate in `bytes` (armored or binary, public or
    /// secret, any number). A certificate already present is merged, so
    /// updates (new subkeys, extended expiry, revocations) are kept and
    /// secret material is never lost. Returns the fingerprints touched.
    pub fn import(&mut self, bytes: &[u8], source_name: &str) -> Result<Vec<String>, KeyError> {
        let parse_error = |reason: String| KeyError::Parse {
            source_name: source_name.to_string(),
            reason,
        };
        let parser = CertParser::from_bytes(bytes).map_err(|e| parse_error(e.to_string()))?;
        let mut certs = Vec::new();
        for cert in parser {
            certs.push(cert.map_err(|e| parse_error(e.to_string()))?);
        }
        if certs.is_empty() {
            return Err(parse_error("no certificate found".into()));
        }
        let mut touched = Vec::new();
        for cert in certs {
            let secret = cert.is_tsk();
            let fpr = self.store(cert, KeySource::Imported)?;
            tracing::info!(fingerprint = %fpr, secret, source = source_name, "imported key");
            touched.push(fpr);
        }
        Ok(touched)
    }

    /// Stores a certificate found by discovery (Autocrypt, gossip, WKD, a
    /// keyserver) for `email`, public parts only. A certificate already
    /// present is merged (updates kept) and keeps its more trusted source.
    /// The result says whether the key is now the one used for `email` or
    /// is shadowed by a more trusted one; the caller logs and counts that.
    pub fn learn(&mut self, cert: Cert, source: KeySource, email: &str) -> Result<Learned, KeyError> {
        let email = normalize_email(email);
        let cert = cert.strip_secret_key_material();
        let fpr = cert.fingerprint().to_hex();
        if self.knows(&cert, source) {
            return Ok(Learned::Unchanged);
        }
        let before = self.get(&fpr).map(|k| k.cert.clone());
        self.store(cert, source)?;
        let used = self.recipient_key(&email).ok().map(StoredKey::fingerprint);
        Ok(match used {
            Some(by) if by != fpr => Learned::Shadowed { by },
            _ if before.is_some() => Learned::Updated,
            _ => Learned::New,
        })
    }

    /// True when the store has `cert` with nothing new in it, from
    /// `source` or a more trusted one: learning it would change nothing.
    pub fn knows(&self, cert: &Cert, source: KeySource) -> bool {
        self.get(&cert.fingerprint().to_hex()).is_some_and(|k| {
            k.source.rank() <= source.rank() && k.cert.clone().merge_public(cert.clone()).is_ok_and(|merged| merged == k.cert)
        })
    }

    /// Removes the certificate with this fingerprint (hex, any case,
    /// spaces allowed).
    pub fn remove(&mut self, fingerprint: &str) -> Result<StoredKey, KeyError> {
        let wanted: String = fingerprint
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let index = self
            .keys
            .iter()
            .position(|k| k.fingerprint() == wanted)
            .ok_or_else(|| KeyError::UnknownFingerprint(wanted.clone()))?;
        let path = self.dir.join(format!("{wanted}.pgp"));
        std::fs::remove_file(&path).map_err(KeyError::io(&path))?;
        let removed = self.keys.remove(index);
        self.write_meta()?;
        tracing::info!(fingerprint = %wanted, "removed key");
        Ok(removed)
    }

    /// The certificate to encrypt to for `email`: among certificates with a
    /// user ID for that address, from the most trusted source first
    /// ([`KeySource::rank`]) and the newest within a source, the first that
    /// is valid, alive, not revoked and encryption-capable. When none is
    /// usable, the error says why the best candidate is not.
    pub fn recipient(&self, email: &str) -> Result<&Cert, KeyError> {
        self.recipient_key(email).map(|k| &k.cert)
    }

    /// Like [`Keystore::recipient`], with the stored key's metadata.
    pub fn recipient_key(&self, email: &str) -> Result<&StoredKey, KeyError> {
        let email = normalize_email(email);
        let mut candidates = self.newest_first(|k| k.has_email(&email));
        candidates.sort_by_key(|k| k.source.rank());
        let mut first_error = None;
        for candidate in &candidates {
            match candidate.check_encryption_to(&email) {
                Ok(()) => return Ok(candidate),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(KeyError::NotFound(email)))
    }

    /// Our own key for `email` (one holding secret material), newest valid
    /// first.
    pub fn own_key(&self, email: &str) -> Result<&StoredKey, KeyError> {
        let email = normalize_email(email);
        let candidates = self.newest_first(|k| k.is_own() && k.has_email(&email));
        candidates
            .iter()
            .find(|k| k.state() == KeyState::Valid)
            .or(candidates.first())
            .copied()
            .ok_or(KeyError::NoOwnKey(email))
    }

    /// Every own key.
    pub fn own_keys(&self) -> impl Iterator<Item = &StoredKey> {
        self.keys.iter().filter(|k| k.is_own())
    }

    /// Certificates with a key (primary or subkey) matching `handle`.
    pub fn certs_with_key(&self, handle: &KeyHandle) -> Vec<Cert> {
        self.keys
            .iter()
            .filter(|k| k.cert.keys().any(|ka| ka.key().key_handle().aliases(handle)))
            .map(|k| k.cert.clone().strip_secret_key_material())
            .collect()
    }

    /// Every certificate stored for `email`, valid or not.
    pub fn certs_for(&self, email: &str) -> Vec<&StoredKey> {
        let email = normalize_email(email);
        self.newest_first(|k| k.has_email(&email))
    }

    /// Unlocks one of our keys, asking `passphrases` once if it is
    /// protected.
    pub fn unlock(&self, key: &StoredKey, passphrases: &PassphraseSource) -> Result<UnlockedKey, KeyError> {
        let fingerprint = key.fingerprint();
        let locked = |reason: String| KeyError::Locked {
            fingerprint: fingerprint.clone(),
            reason,
        };
        let needs_passphrase = key.cert.keys().secret().any(|ka| !ka.key().has_unencrypted_secret());
        let passphrase = if needs_passphrase {
            let label = key.emails().first().cloned().unwrap_or_else(|| fingerprint.clone());
            Some(passphrases.get(&fingerprint, &format!("<{label}> ({fingerprint})"), false)?)
        } else {
            None
        };
        let to_pair = |k: Key<key::SecretParts, key::UnspecifiedRole>| -> Result<KeyPair, KeyError> {
            let k = match (&passphrase, k.has_unencrypted_secret()) {
                (Some(p), false) => k.decrypt_secret(p).map_err(|_| locked("wrong passphrase".into()))?,
                _ => k,
            };
            k.into_keypair().map_err(|e| locked(e.to_string()))
        };
        let signing_fpr = key.cert.with_policy(&POLICY, None).ok().and_then(|vc| {
            vc.keys()
                .secret()
                .alive()
                .revoked(false)
                .for_signing()
                .next()
                .map(|ka| ka.key().fingerprint())
        });
        let mut signer = None;
        let mut decryptors = Vec::new();
        for ka in key.cert.keys().secret() {
            let is_signing = Some(ka.key().fingerprint()) == signing_fpr;
            let can_encrypt = ka.key().pk_algo().for_encryption();
            if !is_signing && !can_encrypt {
                continue;
            }
            let pair = to_pair(ka.key().clone())?;
            if can_encrypt {
                decryptors.push(pair.clone());
            }
            if is_signing {
                signer = Some(pair);
            }
        }
        Ok(UnlockedKey {
            cert: key.cert.clone().strip_secret_key_material(),
            signer,
            decryptors,
            prefer_encrypt_mutual: false,
        })
    }

    /// The certificate with this fingerprint (upper-case hex).
    pub fn get(&self, fingerprint: &str) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.fingerprint() == fingerprint)
    }

    fn newest_first(&self, keep: impl Fn(&StoredKey) -> bool) -> Vec<&StoredKey> {
        let mut found: Vec<&StoredKey> = self.keys.iter().filter(|k| keep(k)).collect();
        found.sort_by(|a, b| {
            b.cert
                .primary_key()
                .key()
                .creation_time()
                .cmp(&a.cert.primary_key().key().creation_time())
                .then_with(|| a.fingerprint().cmp(&b.fingerprint()))
        });
        found
    }

    /// Writes `cert` (merged with any stored copy) and its metadata.
    fn store(&mut self, cert: Cert, source: KeySource) -> Result<String, KeyError> {
        let fpr = cert.fingerprint().to_hex();
        let (cert, source, added) = match self.keys.iter().position(|k| k.fingerprint() == fpr) {
            Some(i) => {
                let old = self.keys.remove(i);
                let merged = old.cert.merge_public_and_secret(cert).map_err(KeyError::crypto)?;
                let source = if source.rank() < old.source.rank() { source } else { old.source };
                (merged, source, old.added)
            }
            None => (cert, source, SystemTime::now()),
        };
        let mut bytes = Vec::new();
        cert.as_tsk().serialize(&mut bytes).map_err(KeyError::crypto)?;
        write_private_file(&self.dir.join(format!("{fpr}.pgp")), &bytes)?;
        self.keys.push(StoredKey { cert, source, added });
        self.keys.sort_by_key(|k| k.fingerprint());
        self.write_meta()?;
        Ok(fpr)
    }

    fn write_meta(&self) -> Result<(), KeyError> {
        let meta: BTreeMap<String, Meta> = self
            .keys
            .iter()
            .map(|k| {
                let added = k.added.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                (k.fingerprint(), Meta { source: k.source, added })
            })
            .collect();
        let path = self.dir.join("meta.toml");
        let text = toml::to_string(&meta).map_err(|e| KeyError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private_file(&path, text.as_bytes())
    }
}

fn read_meta(dir: &Path) -> Result<BTreeMap<String, Meta>, KeyError> {
    let path = dir.join("meta.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| KeyError::Metadata {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(KeyError::Io { path, source: e }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    crate::files::create_private_dir(dir).map_err(KeyError::io(dir))
}

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    crate::files::write_private_file(path, bytes).map_err(KeyError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::Preferences;

    fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path()).unwrap();
        (dir, ks)
    }

    #[test]
    fn generated_key_has_autocrypt_shape_and_seipdv1_only() {
        let (_d, mut ks) = store();
        let k = ks.generate("Alice@Example.org", None, false).unwrap();
        assert!(k.is_own());
        assert_eq!(k.emails(), vec!["alice@example.org"]);
        assert_eq!(k.algorithm(), "ed25519/cv25519");
        assert_eq!(k.cert.primary_key().key().version(), 4);
        let vc = k.cert.with_policy(&POLICY, None).unwrap();
        assert!(vc.primary_key().for_signing());
        assert_eq!(vc.keys().subkeys().count(), 1);
        let features = vc.features().unwrap();
        assert!(features.supports_seipdv1());
        assert!(!features.supports_seipdv2());
        assert!(k.expiry().is_some());
    }

    #[test]
    fn store_survives_reopen_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let (d, mut ks) = store();
        let fpr = ks.generate("a@x.test", Some("pw".into()), false).unwrap().fingerprint();
        let reopened = Keystore::open(d.path()).unwrap();
        assert_eq!(reopened.keys().len(), 1);
        assert_eq!(reopened.keys()[0].source, KeySource::Generated);
        let file = d.path().join("keys").join(format!("{fpr}.pgp"));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(d.path().join("keys")).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // The secret is S2K-protected on disk.
        let cert = Cert::from_file(&file).unwrap();
        assert!(cert.keys().secret().all(|ka| !ka.key().has_unencrypted_secret()));
    }

    #[test]
    fn unlock_needs_the_right_passphrase() {
        let (_d, mut ks) = store();
        ks.generate("a@x.test", Some("right".into()), false).unwrap();
        let key = ks.own_key("a@x.test").unwrap();
        let err = ks.unlock(key, &PassphraseSource::Env("wrong".into())).err().unwrap();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let err = ks.unlock(key, &PassphraseSource::None).err().unwrap();
        assert!(err.to_string().contains("SEALPOST_PASSPHRASE"), "{err}");
        let unlocked = ks.unlock(key, &PassphraseSource::Env("right".into())).unwrap();
        assert!(unlocked.signer.is_some());
        assert_eq!(unlocked.decryptors.len(), 1);
    }

    #[test]
    fn lookup_reports_missing_expired_and_revoked() {
        let (_d, mut ks) = store();
        assert!(matches!(ks.recipient("nobody@x.test"), Err(KeyError::NotFound(_))));

        let long_ago = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
        let (expired, _) = CertBuilder::general_purpose(Some("<old@x.test>"))
            .set_creation_time(long_ago)
            .set_validity_period(Duration::from_secs(24 * 3600))
            .generate()
            .unwrap();
        let mut armored = Vec::new();
        expired.armored().serialize(&mut armored).unwrap();
        ks.import(&armored, "test").unwrap();
        assert!(matches!(ks.recipient("old@x.test"), Err(KeyError::Expired { .. })));

        let (cert, revocation) = CertBuilder::general_purpose(Some("<gone@x.test>")).generate().unwrap();
        let revoked = cert.insert_packets(revocation).unwrap().0;
        let mut bytes = Vec::new();
        revoked.serialize(&mut bytes).unwrap();
        ks.import(&bytes, "test").unwrap();
        let err = ks.recipient("GONE@x.test").err().unwrap();
        assert!(matches!(err, KeyError::Revoked { .. }), "{err}");
        assert!(err.to_string().contains("revoked"));
    }

    #[test]
    fn newest_valid_key_wins_and_import_merges() {
        let (_d, mut ks) = store();
        let older = SystemTime::now() - Duration::from_secs(3600);
        let (a, _) = CertBuilder::general_purpose(Some("<p@x.test>"))
            .set_creation_time(older)
            .generate()
            .unwrap();
        let (b, _) = CertBuilder::general_purpose(Some("<p@x.test>")).generate().unwrap();
        for c in [&a, &b] {
            let mut bytes = Vec::new();
            c.serialize(&mut bytes).unwrap();
            ks.import(&bytes, "t").unwrap();
        }
        assert_eq!(ks.recipient("p@x.test").unwrap().fingerprint(), b.fingerprint());
        // Importing the same key again (with secrets) merges into one entry.
        let mut tsk = Vec::new();
        b.as_tsk().serialize(&mut tsk).unwrap();
        ks.import(&tsk, "t").unwrap();
        assert_eq!(ks.keys().len(), 2);
        assert!(ks.own_key("p@x.test").unwrap().is_own());
    }

    #[test]
    fn import_rejects_garbage_with_the_source_name() {
        let (_d, mut ks) = store();
        let err = ks.import(b"not a key", "junk.asc").err().unwrap();
        assert!(err.to_string().starts_with("junk.asc: not a readable OpenPGP key"), "{err}");
    }

    #[test]
    fn remove_by_fingerprint() {
        let (_d, mut ks) = store();
        let fpr = ks.generate("a@x.test", None, false).unwrap().fingerprint();
        assert!(matches!(ks.remove("00"), Err(KeyError::UnknownFingerprint(_))));
        ks.remove(&fpr.to_lowercase()).unwrap();
        assert!(ks.keys().is_empty());
    }
}
