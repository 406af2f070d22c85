//! Round trips of a corpus of real-world-shaped messages: what the
//! recipient's Sealpost shows must carry the sender's body parts byte for
//! byte and the real headers, for encrypted and for signed-only mail.

mod common;

use common::*;
use sealpost::message::PROTECTED_FIELDS;
use sealpost::mime::{to_crlf, Entity};

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
    assert_eq!(
        leaf_bodies(shown),
        leaf_bodies(&original),
        "{name}: body parts changed"
    );
    for field in PROTECTED_FIELDS {
        assert_eq!(header(shown, field), header(&original, field), "{name}: {field} differs");
    }
    let shown_fields = Entity::parse(shown);
    for field in PROTECTED_FIELDS {
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
