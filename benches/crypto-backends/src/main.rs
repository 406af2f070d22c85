//! Times what Sealpost does per message with sequoia-openpgp on the
//! backend this build was made with: sign (Ed25519) and encrypt
//! (X25519, AES-256) a 10 KB message, armored; decrypt and verify it.
//! Prints one JSON line: microseconds per operation (the median of
//! several rounds).

use std::io::{Read, Write};
use std::time::Instant;

use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::*;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;

const ROUNDS: usize = 7;
const PER_ROUND: usize = 200;

fn main() -> openpgp::Result<()> {
    let policy = StandardPolicy::new();
    let (dave, _) = CertBuilder::general_purpose(Some("dave@example.com"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()?;
    let (alice, _) = CertBuilder::general_purpose(Some("alice@example.org"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()?;
    let payload: Vec<u8> = (0..10_000).map(|i| b"Line of the test message.\r\n"[i % 27]).collect();

    let signer = alice
        .keys()
        .with_policy(&policy, None)
        .secret()
        .for_signing()
        .next()
        .expect("a signing key")
        .key()
        .clone()
        .into_keypair()?;
    let encrypt = || -> openpgp::Result<Vec<u8>> {
        // As Sealpost does per message: the recipients from the certificate.
        let recipients: Vec<Recipient> = dave
            .keys()
            .with_policy(&policy, None)
            .for_transport_encryption()
            .map(Into::into)
            .collect();
        let mut out = Vec::new();
        let message = Message::new(&mut out);
        let message = Armorer::new(message).build()?;
        let message = Encryptor::for_recipients(message, recipients)
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()?;
        let message = Signer::new(message, signer.clone())?.build()?;
        let mut literal = LiteralWriter::new(message).build()?;
        literal.write_all(&payload)?;
        literal.finalize()?;
        Ok(out)
    };
    let ciphertext = encrypt()?;

    let decryptor_key = dave
        .keys()
        .with_policy(&policy, None)
        .secret()
        .for_transport_encryption()
        .next()
        .expect("an encryption key")
        .key()
        .clone()
        .into_keypair()?;
    let decrypt = || -> openpgp::Result<Vec<u8>> {
        let helper = Helper {
            signer: &alice,
            key: decryptor_key.clone(),
            good: false,
        };
        let mut d = DecryptorBuilder::from_bytes(&ciphertext)?.with_policy(&policy, None, helper)?;
        let mut plaintext = Vec::new();
        d.read_to_end(&mut plaintext)?;
        assert!(d.helper_ref().good, "the signature must verify");
        Ok(plaintext)
    };
    assert_eq!(decrypt()?, payload);

    let time = |op: &dyn Fn() -> openpgp::Result<Vec<u8>>| -> openpgp::Result<f64> {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..PER_ROUND {
                op()?;
            }
            rounds.push(started.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64);
        }
        rounds.sort_by(f64::total_cmp);
        Ok(rounds[ROUNDS / 2])
    };
    let sign_encrypt = time(&encrypt)?;
    let decrypt_verify = time(&decrypt)?;
    println!(
        "{{\"sign_encrypt_us\":{sign_encrypt:.1},\"decrypt_verify_us\":{decrypt_verify:.1},\"ciphertext_bytes\":{}}}",
        ciphertext.len()
    );
    Ok(())
}

struct Helper<'a> {
    signer: &'a Cert,
    key: openpgp::crypto::KeyPair,
    good: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.signer.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                self.good = results.iter().any(Result::is_ok);
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
        for pkesk in pkesks {
            if let Some((algo, sk)) = pkesk.decrypt(&mut self.key, sym_algo) {
                if decrypt(algo, &sk) {
                    return Ok(None);
                }
            }
        }
        Err(openpgp::Error::InvalidOperation("no key decrypts the message".into()).into())
    }
}
