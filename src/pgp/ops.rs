//! The OpenPGP operations on byte strings: sign+encrypt in one layer
//! (RFC 3156 §6.2), detached signatures (§5), decryption with
//! verification, and the minimal key Autocrypt carries.

use std::io::{Read, Write};

use openpgp::armor;
use openpgp::crypto::SessionKey;
use openpgp::packet::signature::subpacket::NotationDataFlags;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::serialize::Serialize;
use openpgp::types::{HashAlgorithm, SignatureType, SymmetricAlgorithm};
use openpgp::{Cert, Fingerprint, KeyHandle};
use sequoia_openpgp as openpgp;

use super::{normalize_email, KeyError, Keystore, UnlockedKey, POLICY};

/// Signs `payload` with `signer` and encrypts it to every key in
/// `recipients`, producing ASCII armor. AES-256 and SHA-256; SEIPDv1
/// unless every recipient key advertises SEIPDv2 (sequoia's rule).
pub fn encrypt_and_sign(payload: &[u8], recipients: &[&Cert], signer: &UnlockedKey) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(payload.len() * 4 / 3 + 1024);
    encrypt_and_sign_to(&mut &payload[..], &mut out, recipients, signer, &[])?;
    Ok(out)
}

/// A notation (RFC 9580 §5.2.3.24) in a signature's hashed area: covered
/// by the signature, so only the signer can have put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notation {
    /// `name@domain` (the user namespace).
    pub name: String,
    /// The value, as signed.
    pub value: Vec<u8>,
}

/// [`encrypt_and_sign`] from a reader to a writer, holding only buffers:
/// large messages stream from and to spool files. The armor is written
/// with CRLF line endings, as mail needs it. `notations` go into the
/// signature, marked not critical so that other implementations that do
/// not know them still accept the signature.
pub fn encrypt_and_sign_to(
    payload: &mut dyn Read,
    out: &mut (dyn Write + Send + Sync),
    recipients: &[&Cert],
    signer: &UnlockedKey,
    notations: &[Notation],
) -> Result<(), KeyError> {
    let signing_pair = signer
        .signer
        .clone()
        .ok_or_else(|| KeyError::Crypto(format!("key {} has no valid signing key", signer.cert.fingerprint())))?;
    let mut encryption_keys: Vec<Recipient> = Vec::new();
    for cert in recipients {
        let vc = cert.with_policy(&POLICY, None).map_err(KeyError::crypto)?;
        let before = encryption_keys.len();
        for ka in vc.keys().supported().alive().revoked(false).for_transport_encryption() {
            encryption_keys.push(ka.into());
        }
        if encryption_keys.len() == before {
            return Err(KeyError::Crypto(format!("key {} has no valid encryption key", cert.fingerprint())));
        }
    }
    let mut crlf = CrlfWriter { inner: out };
    let message = Message::new(&mut crlf);
    let message = Armorer::new(message).build().map_err(KeyError::crypto)?;
    let message = Encryptor::for_recipients(message, encryption_keys)
        .symmetric_algo(SymmetricAlgorithm::AES256)
        .build()
        .map_err(KeyError::crypto)?;
    let mut template = SignatureBuilder::new(SignatureType::Binary);
    for notation in notations {
        let flags = NotationDataFlags::empty().set_human_readable();
        template = template
            .add_notation(&notation.name, &notation.value, flags, false)
            .map_err(KeyError::crypto)?;
    }
    let message = Signer::with_template(message, signing_pair, template)
        .map_err(KeyError::crypto)?
        .hash_algo(HashAlgorithm::SHA256)
        .map_err(KeyError::crypto)?
        .build()
        .map_err(KeyError::crypto)?;
    let mut literal = LiteralWriter::new(message).build().map_err(KeyError::crypto)?;
    std::io::copy(payload, &mut literal).map_err(KeyError::crypto)?;
    literal.finalize().map_err(KeyError::crypto)?;
    Ok(())
}

/// Turns the armor writer's LF line endings into CRLF on the way out.
struct CrlfWriter<'a> {
    inner: &'a mut (dyn Write + Send + Sync),
}

impl Write for CrlfWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                self.inner.write_all(&buf[start..i])?;
                self.inner.write_all(b"\r\n")?;
                start = i + 1;
            }
        }
        self.inner.write_all(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An armored detached SHA-256 signature over `data`.
pub fn sign_detached(data: &[u8], signer: &UnlockedKey) -> Result<Vec<u8>, KeyError> {
    let signing_pair = signer
        .signer
        .clone()
        .ok_or_else(|| KeyError::Crypto(format!("key {} has no valid signing key", signer.cert.fingerprint())))?;
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message)
            .kind(armor::Kind::Signature)
            .build()
            .map_err(KeyError::crypto)?;
        let mut message = Signer::new(message, signing_pair)
            .map_err(KeyError::crypto)?
            .detached()
            .hash_algo(HashAlgorithm::SHA256)
            .map_err(KeyError::crypto)?
            .build()
            .map_err(KeyError::crypto)?;
        message.write_all(data).map_err(KeyError::crypto)?;
        message.finalize().map_err(KeyError::crypto)?;
    }
    Ok(out)
}

/// The outcome of checking one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Cryptographically good, by a valid key of a known certificate.
    Good {
        /// The signer's certificate fingerprint.
        signer: String,
        /// The normalised addresses in the signer's valid user IDs.
        signer_emails: Vec<String>,
    },
    /// Made by a key we do not have.
    UnknownKey {
        /// The issuer key ID or fingerprint named in the signature.
        issuer: String,
    },
    /// Does not verify, or the key was not valid for signing then.
    Bad {
        /// Why.
        reason: String,
    },
}

/// All signatures found on a message (possibly none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureCheck {
    /// One entry per signature.
    pub signatures: Vec<SignatureStatus>,
}

impl SignatureCheck {
    /// The most favourable signature: a good one if any, then unknown-key,
    /// then bad.
    pub fn best(&self) -> Option<&SignatureStatus> {
        self.signatures
            .iter()
            .find(|s| matches!(s, SignatureStatus::Good { .. }))
            .or_else(|| self.signatures.iter().find(|s| matches!(s, SignatureStatus::UnknownKey { .. })))
            .or_else(|| self.signatures.first())
    }
}

/// A decrypted OpenPGP message.
#[derive(Debug)]
pub struct Decrypted {
    /// The literal data.
    pub plaintext: Vec<u8>,
    /// True when there was an encryption layer (false for a message that
    /// was only signed).
    pub was_encrypted: bool,
    /// The signatures inside.
    pub signatures: SignatureCheck,
    /// The notations of the good signatures, with the fingerprint of the
    /// certificate that made each (bad and unverifiable signatures say
    /// nothing).
    pub notations: Vec<(String, Notation)>,
}

/// sequoia's look-ahead while decrypting.
const DECRYPT_BUFFER: usize = 256 * 1024;

/// Decrypts (and verifies) an OpenPGP message, armored or binary, with our
/// unlocked keys; signer certificates come from `keystore`. Unprotected
/// (SED) data and data whose MDC fails are refused.
pub fn decrypt(message: &[u8], keys: &[UnlockedKey], keystore: &Keystore) -> Result<Decrypted, String> {
    // sequoia-openpgp 2.4.2 panics on some truncated encrypted packets
    // (an unwrap in its parser). A damaged message must give a status,
    // never take the process or session down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decrypt_unguarded(message, keys, Some(keystore))))
        .unwrap_or_else(|_| Err("the OpenPGP data is truncated or corrupt".into()))
}

/// Decrypts data Sealpost encrypted to one of its own keys for itself
/// (with [`encrypt_and_sign`], recipient and signer both `key`), such as
/// the message cache's key file. Signatures are checked against `key`'s
/// certificate alone, so no key store is needed; the caller decides which
/// [`SignatureStatus`] it accepts.
pub fn decrypt_own(message: &[u8], key: &UnlockedKey) -> Result<Decrypted, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decrypt_unguarded(message, std::slice::from_ref(key), None)
    }))
    .unwrap_or_else(|_| Err("the OpenPGP data is truncated or corrupt".into()))
}

/// Signer certificates come from `keystore`, or with `None` from `keys`
/// themselves.
fn decrypt_unguarded(message: &[u8], keys: &[UnlockedKey], keystore: Option<&Keystore>) -> Result<Decrypted, String> {
    let helper = Helper {
        keys,
        keystore,
        signatures: SignatureCheck::default(),
        notations: Vec::new(),
        was_encrypted: false,
    };
    // The whole plaintext is collected and used only after the final
    // integrity and signature checks pass, so sequoia need not hold back
    // its own (default 25 MiB) copy until then.
    let mut decryptor = DecryptorBuilder::from_bytes(message)
        .map_err(|e| format!("not an OpenPGP message: {e}"))?
        .buffer_size(DECRYPT_BUFFER)
        .with_policy(&POLICY, None, helper)
        .map_err(describe_decrypt_error)?;
    let mut plaintext = Vec::with_capacity(message.len());
    decryptor
        .read_to_end(&mut plaintext)
        .map_err(|e| describe_decrypt_error(e.into()))?;
    if !decryptor.message_processed() {
        return Err("the OpenPGP message is incomplete".into());
    }
    let helper = decryptor.into_helper();
    Ok(Decrypted {
        plaintext,
        was_encrypted: helper.was_encrypted,
        signatures: helper.signatures,
        notations: helper.notations,
    })
}

/// Verifies a detached signature over `data` against the certificates in
/// `keystore`.
pub fn verify_detached(data: &[u8], signature: &[u8], keystore: &Keystore) -> Result<SignatureCheck, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_unguarded(data, signature, keystore)))
        .unwrap_or_else(|_| Err("the OpenPGP signature is truncated or corrupt".into()))
}

fn verify_unguarded(data: &[u8], signature: &[u8], keystore: &Keystore) -> Result<SignatureCheck, String> {
    let helper = Helper {
        keys: &[],
        keystore: Some(keystore),
        signatures: SignatureCheck::default(),
        notations: Vec::new(),
        was_encrypted: false,
    };
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature)
        .map_err(|e| format!("not an OpenPGP signature: {e}"))?
        .with_policy(&POLICY, None, helper)
        .map_err(|e| e.to_string())?;
    verifier.verify_bytes(data).map_err(|e| e.to_string())?;
    Ok(verifier.into_helper().signatures)
}

fn describe_decrypt_error(e: anyhow::Error) -> String {
    for cause in e.chain() {
        match cause.downcast_ref::<openpgp::Error>() {
            Some(openpgp::Error::ManipulatedMessage) => return "the message was modified in transit (integrity check failed)".into(),
            Some(openpgp::Error::PolicyViolation(what, _)) if what.contains("SED") || what.contains("Symmetrically Encrypted Data") => {
                return "the message uses unprotected encryption (no integrity protection) and is refused".into()
            }
            Some(openpgp::Error::PolicyViolation(what, _)) => {
                return format!("the message uses {what}, which is considered insecure and is refused")
            }
            _ => {}
        }
    }
    format!("{e:#}")
}

struct Helper<'a> {
    keys: &'a [UnlockedKey],
    /// Where signer certificates come from; `None`: only `keys`' own.
    keystore: Option<&'a Keystore>,
    signatures: SignatureCheck,
    notations: Vec<(String, Notation)>,
    was_encrypted: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        let mut certs: Vec<Cert> = Vec::new();
        for id in ids {
            let found = match self.keystore {
                Some(keystore) => keystore.certs_with_key(id),
                None => self
                    .keys
                    .iter()
                    .filter(|k| k.cert.keys().any(|ka| ka.key().key_handle().aliases(id)))
                    .map(|k| k.cert.clone())
                    .collect(),
            };
            for cert in found {
                if !certs.iter().any(|c| c.fingerprint() == cert.fingerprint()) {
                    certs.push(cert);
                }
            }
        }
        Ok(certs)
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => self.was_encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    for result in results {
                        self.signatures.signatures.push(match result {
                            Ok(good) => {
                                let cert = good.ka.cert();
                                // sequoia reads notations from the hashed
                                // area only, which the signature covers.
                                for n in good.sig.notation_data() {
                                    self.notations.push((
                                        cert.fingerprint().to_hex(),
                                        Notation {
                                            name: n.name().to_string(),
                                            value: n.value().to_vec(),
                                        },
                                    ));
                                }
                                let signer_emails = cert
                                    .userids()
                                    .filter_map(|u| u.userid().email_normalized().ok().flatten())
                                    .collect();
                                SignatureStatus::Good {
                                    signer: cert.fingerprint().to_hex(),
                                    signer_emails,
                                }
                            }
                            Err(VerificationError::MissingKey { sig }) => SignatureStatus::UnknownKey {
                                issuer: sig.get_issuers().first().map(|h| h.to_hex()).unwrap_or_else(|| "unknown".into()),
                            },
                            Err(other) => SignatureStatus::Bad { reason: other.to_string() },
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        // Addressed PKESKs first, then wildcard ones (anonymous recipients)
        // against every key we hold.
        for pkesk in pkesks {
            let Some(recipient) = pkesk.recipient() else { continue };
            for key in self.keys {
                for pair in &key.decryptors {
                    if !pair.public().key_handle().aliases(&recipient) {
                        continue;
                    }
                    let mut pair = pair.clone();
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                        if decrypt(algo, &sk) {
                            return Ok(Some(key.cert.clone()));
                        }
                    }
                }
            }
        }
        for pkesk in pkesks.iter().filter(|p| p.recipient().is_none()) {
            for key in self.keys {
                for pair in &key.decryptors {
                    let mut pair = pair.clone();
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                        if decrypt(algo, &sk) {
                            return Ok(Some(key.cert.clone()));
                        }
                    }
                }
            }
        }
        let ids: Vec<String> = pkesks
            .iter()
            .map(|p| p.recipient().map(|r| r.to_hex()).unwrap_or_else(|| "anonymous".into()))
            .collect();
        Err(anyhow::anyhow!(
            "no secret key for this message (it is encrypted to {}); import the matching secret key with 'sealpost keys import'",
            ids.join(", ")
        ))
    }
}

/// The certificate reduced to what Autocrypt allows in `keydata`: the
/// primary key, the user ID for `email` with its self-signature, one valid
/// encryption subkey with its binding, serialised in binary.
pub fn minimal_autocrypt_key(cert: &Cert, email: &str) -> Result<Vec<u8>, KeyError> {
    let email = normalize_email(email);
    let vc = cert.with_policy(&POLICY, None).map_err(KeyError::crypto)?;
    let uid = vc
        .userids()
        .find(|u| u.userid().email_normalized().ok().flatten().as_deref() == Some(email.as_str()))
        .map(|u| u.userid().clone())
        .ok_or_else(|| KeyError::NotFound(email.clone()))?;
    let subkey: Option<Fingerprint> = vc
        .keys()
        .subkeys()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .next()
        .map(|ka| ka.key().fingerprint());
    let minimal = cert
        .clone()
        .strip_secret_key_material()
        .retain_userids(|u| u.userid() == &uid)
        .retain_subkeys(|k| Some(k.key().fingerprint()) == subkey);
    // Keep only the newest self-signature per component (the policy-valid
    // binding); older superseded ones only add bytes.
    let mut out = Vec::new();
    let vc = minimal.with_policy(&POLICY, None).map_err(KeyError::crypto)?;
    let primary = vc.primary_key();
    openpgp::Packet::from(primary.key().clone())
        .serialize(&mut out)
        .map_err(KeyError::crypto)?;
    if let Ok(direct) = vc.direct_key_signature() {
        openpgp::Packet::from(direct.clone())
            .serialize(&mut out)
            .map_err(KeyError::crypto)?;
    }
    for u in vc.userids() {
        openpgp::Packet::from(u.userid().clone())
            .serialize(&mut out)
            .map_err(KeyError::crypto)?;
        openpgp::Packet::from(u.binding_signature().clone())
            .serialize(&mut out)
            .map_err(KeyError::crypto)?;
    }
    for k in vc.keys().subkeys() {
        openpgp::Packet::from(k.key().clone().role_into_subordinate())
            .serialize(&mut out)
            .map_err(KeyError::crypto)?;
        openpgp::Packet::from(k.binding_signature().clone())
            .serialize(&mut out)
            .map_err(KeyError::crypto)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::PassphraseSource;
    use openpgp::PacketPile;

    fn seipd_version(armored: &[u8]) -> u8 {
        let pile = PacketPile::from_bytes(armored).unwrap();
        let version = pile
            .children()
            .find_map(|p| match p {
                openpgp::Packet::SEIP(seip) => Some(seip.version()),
                _ => None,
            })
            .expect("an encrypted data packet");
        version
    }

    #[test]
    fn seipdv2_only_when_every_recipient_advertises_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Keystore::open(dir.path()).unwrap();
        store.generate("v6@x.test", None, true).unwrap();
        store.generate("v4@x.test", None, false).unwrap();
        store.generate("other6@x.test", None, true).unwrap();
        let signer = store.unlock(store.own_key("v6@x.test").unwrap(), &PassphraseSource::None).unwrap();
        let v4 = store.recipient("v4@x.test").unwrap().clone();
        let v6 = store.recipient("other6@x.test").unwrap().clone();

        let all_v6 = encrypt_and_sign(b"x", &[&signer.cert, &v6], &signer).unwrap();
        assert_eq!(seipd_version(&all_v6), 2);
        let mixed = encrypt_and_sign(b"x", &[&signer.cert, &v4], &signer).unwrap();
        assert_eq!(seipd_version(&mixed), 1);
    }
}
