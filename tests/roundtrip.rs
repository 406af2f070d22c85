//! Round trips of a corpus of real-world-shaped messages: what the
//! recipient's Sealpost shows must carry the sender's structure and body
//! byte for byte and the real headers, for encrypted and for signed-only
//! mail; what the account seals for itself must read back exactly as it
//! was given; and mail stored in the earlier wrapper format must still
//! read as it did.

mod common;

use std::path::Path;

use common::*;
use sealpost::message::{decrypt_message, seal_for_self, Status};
use sealpost::mime::{to_crlf, Entity};
use sealpost::pgp::{encrypt_and_sign, Keystore, Notation, PassphraseSource, SignatureStatus};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::Serialize;

/// The user-facing fields a reader must see as the sender wrote them.
const USER_FACING: [&str; 9] = [
    "Subject",
    "From",
    "To",
    "Cc",
    "Date",
    "Message-ID",
    "References",
    "In-Reply-To",
    "Reply-To",
];

fn users() -> (User, User) {
    let mut alice = User::new("alice@example.org");
    let mut bob = User::new("bob@example.net");
    let carol = User::new("carol@example.com");
    alice.knows(&[&bob, &carol]);
    bob.knows(&[&alice]);
    (alice, bob)
}

/// The parts a reader sees must be the sender's, byte for byte (after the
/// CRLF canonicalisation mail transport applies anyway).
fn assert_same_content(name: &str, original: &[u8], shown: &[u8]) {
    let original = to_crlf(original);
    assert_eq!(leaf_bodies(shown), leaf_bodies(&original), "{name}: body parts changed");
    for field in USER_FACING {
        assert_eq!(header(shown, field), header(&original, field), "{name}: {field} differs");
    }
    let shown_fields = Entity::parse(shown);
    for field in USER_FACING {
        assert!(
            shown_fields.fields.iter().filter(|f| f.is(field)).count() <= 1,
            "{name}: {field} appears twice"
        );
    }
}

#[test]
fn encrypted_round_trip_keeps_every_part_and_header() {
    let (alice, bob) = users();
    for name in common::CORPUS {
        let original = corpus(name);
        let copies = alice.encrypt(&original, &["bob@example.net", "carol@example.com"]);
        assert_eq!(copies.len(), 1, "{name}");
        let sent = &copies[0].message;
        assert_eq!(header(sent, "Subject").as_deref(), Some("[...]"), "{name}");
        let out = bob.decrypt(sent);
        let status = header(&out.message, "Sealpost-Status").unwrap();
        assert!(status.starts_with("decrypted; signature=good; signer="), "{name}: {status}");
        assert!(!status.contains("warning"), "{name}: {status}");
        assert_same_content(name, &original, &out.message);
        // No level added: under the header, the sender's body as written,
        // and the sender's own content type.
        let shown = Entity::parse(&out.message);
        let sent = to_crlf(&original);
        let sent = Entity::parse(&sent);
        assert_eq!(shown.body, sent.body, "{name}: the body differs");
        assert_eq!(shown.content_type().mime_type, sent.content_type().mime_type, "{name}");
        assert_eq!(
            shown.content_type().param("boundary"),
            sent.content_type().param("boundary"),
            "{name}"
        );
        // Decrypted mail is not "protected" any more: it must not be
        // mistaken for a second layer.
        assert!(!contains(&out.message, b"Autocrypt-Gossip"), "{name}: gossip leaks into the view");
    }
}

#[test]
fn signed_round_trip_verifies_even_after_line_ending_conversion() {
    let (alice, bob) = users();
    for name in common::CORPUS {
        let original = corpus(name);
        let signed = sealpost::message::sign_message(&original, "alice@example.org", &alice.key).unwrap();
        assert!(signed.iter().all(|&b| b < 0x80) || name == "utf8-headers.eml", "{name}: not 7-bit");
        let out = bob.decrypt(&signed);
        let status = header(&out.message, "Sealpost-Status").unwrap();
        assert!(status.starts_with("signed; signature=good; signer="), "{name}: {status}");
        // Relaying must not break the signature: LF-only delivery (as some
        // local tools write mail) still verifies.
        let lf_only: Vec<u8> = signed.iter().copied().filter(|&b| b != b'\r').collect();
        let status = header(&bob.decrypt(&lf_only).message, "Sealpost-Status").unwrap();
        assert!(status.starts_with("signed; signature=good"), "{name} with LF endings: {status}");
    }
}

#[test]
fn modified_signed_mail_is_reported_bad() {
    let (alice, bob) = users();
    let signed = sealpost::message::sign_message(&corpus("alternative.eml"), "alice@example.org", &alice.key).unwrap();
    let pos = find(&signed, b"Soup").unwrap();
    let mut modified = signed.clone();
    modified[pos] = b'S' ^ 0x20;
    let status = header(&bob.decrypt(&modified).message, "Sealpost-Status").unwrap();
    assert!(status.starts_with("signed; signature=bad"), "{status}");
}

#[test]
fn own_copies_read_back_exactly_as_sealed() {
    let (alice, bob) = users();
    for name in common::CORPUS {
        let original = corpus(name);
        let sealed = seal_for_self(&original, "alice@example.org", &alice.key).unwrap();
        assert_eq!(header(&sealed, "Subject").as_deref(), Some("[...]"), "{name}");
        let out = alice.decrypt(&sealed);
        assert_eq!(
            String::from_utf8_lossy(&out.message),
            String::from_utf8_lossy(&to_crlf(&original)),
            "{name}: not byte for byte"
        );
        assert!(
            matches!(&out.status, Status::Decrypted { signatures, .. }
            if matches!(signatures.best(), Some(SignatureStatus::Good { .. }))),
            "{name}"
        );
        // Bob cannot read Alice's copy at all.
        assert!(bob.decrypt(&sealed).status.is_failure(), "{name}");
    }
    // Signed-only mail is sealed too (anyone could read it otherwise).
    let signed = sealpost::message::sign_message(&corpus("alternative.eml"), "alice@example.org", &alice.key).unwrap();
    let sealed = seal_for_self(&signed, "alice@example.org", &alice.key).unwrap();
    assert_eq!(alice.decrypt(&sealed).message, signed);
}

#[test]
fn only_the_accounts_own_signature_makes_an_own_copy() {
    let (mut alice, mut bob) = users();
    alice.knows(&[&bob]);
    bob.knows(&[&alice]);
    // Alice's mail to herself through the SMTP path is mail, not a copy.
    let to_self = b"From: alice@example.org\r\nTo: alice@example.org\r\nSubject: note\r\n\r\nhello\r\n";
    let copies = alice.encrypt(to_self, &["alice@example.org"]);
    let out = alice.decrypt(&copies[0].message);
    assert!(header(&out.message, "Sealpost-Status")
        .unwrap()
        .starts_with("decrypted; signature=good"));
    // Bob signs a payload with the self-copy notation and encrypts it to
    // Alice: shown as Bob's mail, with its status, never as Alice's own.
    let payload = b"From: alice@example.org\r\nSubject: forged own copy\r\n\r\nbody\r\n";
    let notation = Notation {
        name: "self-copy@sealpost.invalid".into(),
        value: b"0+0".to_vec(),
    };
    let mut armored = Vec::new();
    sealpost::pgp::encrypt_and_sign_to(&mut &payload[..], &mut armored, &[&alice.key.cert], &bob.key, &[notation]).unwrap();
    let forged = pgp_mime(&["From: alice@example.org", "Subject: [...]"], &armored);
    let out = alice.decrypt(&forged);
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert!(
        status.contains(&format!("signer={}", bob.key.cert.fingerprint().to_hex())),
        "{status}"
    );
    // And Alice's own signature without the notation is not a copy either.
    let armored = encrypt_and_sign(payload, &[&alice.key.cert], &alice.key).unwrap();
    let out = alice.decrypt(&pgp_mime(&["From: alice@example.org"], &armored));
    assert!(header(&out.message, "Sealpost-Status").is_some());
}

/// Mail stored before payloads kept the original root: a draft sealed
/// for itself and a message sent to Bob, in the `multipart/mixed` wrapper
/// Sealpost used to write, with what Sealpost showed for each then
/// (`tests/data/legacy`; the keys never expire).
#[test]
fn messages_stored_in_the_old_wrapper_format_still_read_as_before() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/legacy");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let open = |own: &str, own_email: &str, other: &str| {
        let home = tempfile::tempdir().unwrap();
        let mut store = Keystore::open(home.path()).unwrap();
        store.import(&read(own), own).unwrap();
        let other_cert = sequoia_openpgp::Cert::from_bytes(&read(other)).unwrap();
        let mut public = Vec::new();
        other_cert.armored().serialize(&mut public).unwrap();
        store.import(&public, other).unwrap();
        let key = store
            .unlock(store.own_key(own_email).unwrap(), &PassphraseSource::Env(PASSPHRASE.into()))
            .unwrap();
        (home, store, key)
    };
    let (_a, alice_store, alice) = open("alice.sec.asc", "alice@example.org", "bob.sec.asc");
    let (_b, bob_store, bob) = open("bob.sec.asc", "bob@example.net", "alice.sec.asc");
    for (message, shown, key, store) in [
        ("self-copy.eml", "self-copy.shown", &alice, &alice_store),
        ("to-bob.eml", "to-bob.shown", &bob, &bob_store),
    ] {
        let out = decrypt_message(&read(message), std::slice::from_ref(key), store);
        assert_eq!(
            String::from_utf8_lossy(&out.message),
            String::from_utf8_lossy(&read(shown)),
            "{message}"
        );
    }
}
