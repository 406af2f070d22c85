//! Interoperability with real GnuPG, both directions: GnuPG must open what
//! Sealpost writes, and Sealpost must open what GnuPG (and Thunderbird's
//! layout) produce.

mod common;

use common::*;

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Cc: carol@example.com\r\n\
Bcc: dave@example.com\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and plans\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <interop-1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Let's meet at 8. Gr\xc3\xbc\xc3\x9fe\r\n";

/// Key IDs gpg reports the message is encrypted to.
fn encrypted_to(run: &GpgRun) -> Vec<String> {
    let mut ids: Vec<String> = run
        .lines("ENC_TO")
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The key ID of `user`'s encryption subkey.
fn encryption_key_id(user: &User) -> String {
    use sequoia_openpgp::policy::StandardPolicy;
    let policy = StandardPolicy::new();
    let vc = user.key.cert.with_policy(&policy, None).unwrap();
    let id = vc.keys().for_transport_encryption().next().unwrap().key().keyid().to_hex();
    id
}

#[test]
fn gpg_decrypts_and_verifies_every_copy_and_bcc_stays_hidden() {
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    let carol = User::new("carol@example.com");
    let dave = User::new("dave@example.com");
    alice.knows(&[&bob, &carol, &dave]);

    let copies = alice.encrypt(MESSAGE, &["bob@example.net", "carol@example.com", "dave@example.com"]);
    assert_eq!(copies.len(), 2, "one visible copy and one Bcc copy");
    let visible = &copies[0];
    let bcc = &copies[1];
    assert!(!visible.is_bcc && bcc.is_bcc);
    assert_eq!(visible.recipients, vec!["bob@example.net", "carol@example.com"]);
    assert_eq!(bcc.recipients, vec!["dave@example.com"]);

    for copy in &copies {
        // What the provider sees: no subject, no body, no Bcc.
        assert_eq!(header(&copy.message, "Subject").as_deref(), Some("[...]"));
        assert!(!contains(&copy.message, b"meet at 8"));
        assert!(
            !contains(&copy.message, b"dave@example.com"),
            "no copy names the Bcc recipient outside the encryption"
        );
        assert!(!contains(&copy.message, b"Bcc:"));
        assert!(header(&copy.message, "Autocrypt")
            .unwrap()
            .starts_with("addr=alice@example.org; keydata="));
    }

    let bob_gpg = gpg_for(&bob, &[&alice]);
    let carol_gpg = gpg_for(&carol, &[&alice]);
    let dave_gpg = gpg_for(&dave, &[&alice]);
    let alice_gpg = gpg_for(&alice, &[]);

    let visible_block = armored_part(&visible.message);
    for gpg in [&bob_gpg, &carol_gpg, &alice_gpg] {
        let run = gpg.decrypt(&visible_block);
        assert!(run.ok && run.has("DECRYPTION_OKAY"), "{}", run.stderr);
        assert!(run.has("GOODSIG"), "signature by Alice verifies: {:?}", run.status);
        // SEIPDv1 with MDC (method 2) and AES-256 (algorithm 9).
        assert!(
            run.lines("DECRYPTION_INFO")[0].starts_with("DECRYPTION_INFO 2 9"),
            "{:?}",
            run.status
        );
        let payload = &run.stdout;
        assert!(contains(payload, b"protected-headers=\"v1\""));
        assert!(contains(payload, b"hp=\"cipher\""));
        assert!(contains(payload, b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and plans\r\n"));
        assert!(contains(payload, b"HP-Outer: Subject: [...]\r\n"));
        assert!(contains(payload, b"Autocrypt-Gossip: addr=bob@example.net;"));
        assert!(contains(payload, b"Autocrypt-Gossip: addr=carol@example.com;"));
        assert!(
            !contains(payload, b"dave@example.com"),
            "Bcc recipient must not appear in the visible copy"
        );
        // The root is the message's own: its text/plain entity, marked,
        // with the body as written (no wrapper).
        let root = sealpost::mime::Entity::parse(payload);
        assert!(root.content_type().is("text/plain"), "{}", String::from_utf8_lossy(payload));
        assert_eq!(root.content_type().param("charset"), Some("utf-8"));
        assert_eq!(root.body, sealpost::mime::Entity::parse(MESSAGE).body);
    }
    let run = bob_gpg.decrypt(&visible_block);
    let mut expected = vec![encryption_key_id(&alice), encryption_key_id(&bob), encryption_key_id(&carol)];
    expected.sort();
    assert_eq!(encrypted_to(&run), expected);
    assert!(!dave_gpg.decrypt(&visible_block).ok, "Dave cannot read the visible copy");

    let bcc_block = armored_part(&bcc.message);
    let run = dave_gpg.decrypt(&bcc_block);
    assert!(run.ok && run.has("GOODSIG"), "{}", run.stderr);
    let mut expected = vec![encryption_key_id(&alice), encryption_key_id(&dave)];
    expected.sort();
    assert_eq!(
        encrypted_to(&run),
        expected,
        "the Bcc copy is encrypted to Dave and the sender only"
    );
    assert!(!bob_gpg.decrypt(&bcc_block).ok, "Bob cannot read Dave's copy");
}

#[test]
fn gpg_decrypts_and_verifies_a_copy_sealed_for_self() {
    let alice = User::new("alice@example.org");
    let sealed = sealpost::message::seal_for_self(MESSAGE, "alice@example.org", &alice.key).unwrap();
    let run = gpg_for(&alice, &[]).decrypt(&armored_part(&sealed));
    assert!(run.ok && run.has("GOODSIG"), "{} {:?}", run.stderr, run.status);
    // The notation is not critical: gpg reports it and still verifies.
    assert!(
        run.lines("NOTATION_NAME").iter().any(|l| l.ends_with("self-copy@sealpost.invalid")),
        "{:?}",
        run.status
    );
    // Readers other than Sealpost find the protected headers as usual.
    let root = sealpost::mime::Entity::parse(&run.stdout);
    assert_eq!(root.content_type().param("protected-headers"), Some("v1"));
    assert_eq!(root.content_type().param("hp"), Some("cipher"));
    assert!(contains(&run.stdout, b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and plans\r\n"));
    assert!(
        contains(&run.stdout, b"Bcc: dave@example.com\r\n"),
        "the owner's copy keeps the Bcc"
    );
    assert!(contains(&run.stdout, b"HP-Outer: Subject: [...]\r\n"));
    assert_eq!(root.body, sealpost::mime::Entity::parse(MESSAGE).body);
    // And Sealpost shows it back exactly.
    assert_eq!(alice.decrypt(&sealed).message, MESSAGE.to_vec());
}

#[test]
fn gpg_verifies_sign_only_messages() {
    let alice = User::new("alice@example.org");
    let signed = sealpost::message::sign_message(MESSAGE, "alice@example.org", &alice.key).unwrap();
    let entity = sealpost::mime::Entity::parse(&signed);
    let ct = entity.content_type();
    assert!(ct.is("multipart/signed"));
    assert_eq!(ct.param("micalg"), Some("pgp-sha256"));
    assert_eq!(ct.param("protocol"), Some("application/pgp-signature"));
    assert!(signed.iter().all(|&b| b < 0x80), "signed mail is 7-bit clean");
    let parts = entity.parts().unwrap();
    assert_eq!(parts.len(), 2);

    let gpg = Gpg::new();
    gpg.import(&alice.public_key());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sig = dir.path().join("sig.asc");
    std::fs::write(&data, parts[0]).unwrap();
    std::fs::write(&sig, sealpost::mime::Entity::parse(parts[1]).body).unwrap();
    let run = gpg.run(&["--verify", sig.to_str().unwrap(), data.to_str().unwrap()], b"");
    assert!(run.ok && run.has("GOODSIG"), "{}", run.stderr);

    // And Sealpost itself reports it.
    let mut bob = User::new("bob@example.net");
    bob.knows(&[&alice]);
    let out = bob.decrypt(&signed);
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert!(status.starts_with("signed; signature=good; signer="), "{status}");
}

/// Gary uses GnuPG only; his key is made by gpg and imported (with its
/// secret, as a user moving to Sealpost would) into a Sealpost store.
struct GnupgUser {
    gpg: Gpg,
    sealpost: User,
}

fn gnupg_user_and_sealpost_alice() -> (GnupgUser, User) {
    let alice = User::new("alice@example.org");
    let gpg = Gpg::new();
    gpg.generate("Gary <gary@example.net>");
    gpg.import(&alice.secret_key());
    // Gary's Sealpost: his gpg secret key imported, Alice's public key.
    let mut gary = User::new("gary-spare@example.net");
    gary.store.import(&gpg.export_secret("gary@example.net"), "gpg export").unwrap();
    gary.store.import(&alice.public_key(), "alice").unwrap();
    let own = gary.store.own_key("gary@example.net").unwrap();
    gary.key = gary
        .store
        .unlock(own, &sealpost::pgp::PassphraseSource::Env(PASSPHRASE.into()))
        .unwrap();
    gary.email = "gary@example.net".into();
    (GnupgUser { gpg, sealpost: gary }, alice)
}

impl GnupgUser {
    /// `gpg --encrypt --sign` from Alice to Gary.
    fn encrypt_from_alice(&self, data: &[u8], extra: &[&str]) -> Vec<u8> {
        let mut args = vec![
            "--armor",
            "--encrypt",
            "-r",
            "gary@example.net",
            "--local-user",
            "alice@example.org",
        ];
        args.extend_from_slice(extra);
        let run = self.gpg.run(&args, data);
        assert!(run.ok, "{}", run.stderr);
        run.stdout
    }
}

#[test]
fn sealpost_opens_gpg_pgp_mime_combined_and_two_layer() {
    let (gary, alice) = gnupg_user_and_sealpost_alice();
    let payload = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSecret plans \xc3\xa9t\xc3\xa9\r\n";

    // RFC 3156 §6.2: one OpenPGP message, signed and encrypted.
    let armored = gary.encrypt_from_alice(payload, &["--sign"]);
    let msg = pgp_mime(&["From: alice@example.org", "To: gary@example.net", "Subject: combined"], &armored);
    let out = gary.sealpost.decrypt(&msg);
    let status = header(&out.message, "Sealpost-Status").unwrap();
    let alice_fpr = alice.key.cert.fingerprint().to_hex();
    assert_eq!(status, format!("decrypted; signature=good; signer={alice_fpr}"));
    assert!(contains(&out.message, b"Secret plans \xc3\xa9t\xc3\xa9\r\n"));
    assert_eq!(header(&out.message, "Subject").as_deref(), Some("combined"));

    // RFC 3156 §6.1: multipart/signed inside the encryption.
    let sig = gary
        .gpg
        .run(&["--armor", "--detach-sign", "--local-user", "alice@example.org"], payload);
    assert!(sig.ok, "{}", sig.stderr);
    let mut signed =
        b"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n protocol=\"application/pgp-signature\"; boundary=\"SIG\"\r\n\r\n--SIG\r\n"
            .to_vec();
    signed.extend_from_slice(payload);
    signed.extend_from_slice(b"\r\n--SIG\r\nContent-Type: application/pgp-signature\r\n\r\n");
    signed.extend_from_slice(&sig.stdout);
    signed.extend_from_slice(b"\r\n--SIG--\r\n");
    let armored = gary.encrypt_from_alice(&signed, &[]);
    let msg = pgp_mime(
        &["From: alice@example.org", "To: gary@example.net", "Subject: two layers"],
        &armored,
    );
    let out = gary.sealpost.decrypt(&msg);
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert_eq!(status, format!("decrypted; signature=good; signer={alice_fpr}"));
    assert!(contains(&out.message, b"Secret plans"));
}

#[test]
fn sealpost_opens_inline_pgp_from_gpg() {
    let (gary, alice) = gnupg_user_and_sealpost_alice();
    let armored = gary.encrypt_from_alice("Grüße aus Köln\n".as_bytes(), &["--sign"]);
    let mut msg =
        b"From: alice@example.org\r\nTo: gary@example.net\r\nSubject: inline\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
            .to_vec();
    msg.extend_from_slice(&armored);
    let out = gary.sealpost.decrypt(&msg);
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert_eq!(
        status,
        format!("decrypted; format=inline; signature=good; signer={}", alice.key.cert.fingerprint())
    );
    assert!(contains(&out.message, "Grüße aus Köln\r\n".as_bytes()));
    assert!(contains(&out.message, b"charset=\"utf-8\""));
    assert!(!contains(&out.message, b"BEGIN PGP MESSAGE"));
}

#[test]
fn sealpost_opens_thunderbird_layout_and_flags_spoofed_from() {
    let (gary, alice) = gnupg_user_and_sealpost_alice();
    // Exactly what Thunderbird puts inside the encryption.
    let payload = b"Content-Type: multipart/mixed; boundary=\"------------INNER\";\r\n protected-headers=\"v1\"\r\n\
Subject: The real subject\r\nFrom: Alice <alice@example.org>\r\nTo: Gary <gary@example.net>\r\n\
Message-ID: <tb-1@example.org>\r\n\r\n--------------INNER\r\n\
Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
Hello from Thunderbird\r\n\r\n--------------INNER--\r\n";
    let armored = gary.encrypt_from_alice(payload, &["--sign"]);
    let msg = pgp_mime(
        &[
            "From: Alice <alice@example.org>",
            "To: Gary <gary@example.net>",
            "Subject: ...",
            "Message-ID: <tb-1@example.org>",
        ],
        &armored,
    );
    let out = gary.sealpost.decrypt(&msg);
    assert_eq!(header(&out.message, "Subject").as_deref(), Some("The real subject"));
    assert_eq!(
        sealpost::mime::Entity::parse(&out.message)
            .fields
            .iter()
            .filter(|f| f.is("Subject"))
            .count(),
        1,
        "the placeholder subject is replaced, not duplicated"
    );
    assert!(header(&out.message, "Sealpost-Status")
        .unwrap()
        .starts_with("decrypted; signature=good"));
    assert!(contains(&out.message, b"Hello from Thunderbird"));

    // The same payload under a different outer From: a spoofing signal.
    let msg = pgp_mime(
        &["From: Mallory <mallory@example.com>", "To: gary@example.net", "Subject: ..."],
        &armored,
    );
    let status = header(&gary.sealpost.decrypt(&msg).message, "Sealpost-Status").unwrap();
    assert!(
        status.contains("warning=\"protected From <alice@example.org> differs from outer From <mallory@example.com>\""),
        "{status}"
    );
    let _ = alice;
}

#[test]
fn gpg_generated_keys_work_as_recipients() {
    let (gary, alice) = gnupg_user_and_sealpost_alice();
    let mut alice = alice;
    alice.store.import(&gary.gpg.export("gary@example.net"), "gary").unwrap();
    let message = b"From: alice@example.org\r\nTo: gary@example.net\r\nSubject: hi\r\n\r\nfor gpg\r\n";
    let copies = alice.encrypt(message, &["gary@example.net"]);
    let run = gary.gpg.decrypt(&armored_part(&copies[0].message));
    assert!(run.ok && run.has("GOODSIG"), "{} {:?}", run.stderr, run.status);
    assert!(contains(&run.stdout, b"for gpg"));
}

#[test]
fn unprotected_sed_data_is_refused_and_the_original_kept() {
    let (gary, _alice) = gnupg_user_and_sealpost_alice();
    // --rfc2440 makes gpg write a Symmetrically Encrypted Data packet
    // (tag 9), which has no integrity protection.
    let armored = gary.encrypt_from_alice(
        b"Content-Type: text/plain\r\n\r\nold style\r\n",
        &["--rfc2440", "--cipher-algo", "AES256"],
    );
    let msg = pgp_mime(&["From: alice@example.org", "Subject: sed"], &armored);
    let out = gary.sealpost.decrypt(&msg);
    assert!(out.status.is_failure());
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert!(status.contains("no integrity protection"), "{status}");
    assert!(!contains(&out.message, b"old style"));
    let (_, original) = without_status(&out.message);
    assert_eq!(original, msg, "the original comes back untouched");
}

#[test]
fn tampered_ciphertext_is_refused_and_the_original_kept() {
    let alice = User::new("alice@example.org");
    let mut bob = User::new("bob@example.net");
    let mut alice = alice;
    alice.knows(&[&bob]);
    bob.knows(&[&alice]);
    let copies = alice.encrypt(MESSAGE, &["bob@example.net"]);
    let mut tampered = copies[0].message.clone();
    let start = find(&tampered, b"-----BEGIN PGP MESSAGE-----").unwrap();
    let end = find(&tampered, b"-----END PGP MESSAGE-----").unwrap();
    // Past the key packets, inside the encrypted data; skip line breaks.
    let mut pos = (start + end) / 2;
    while tampered[pos] == b'\r' || tampered[pos] == b'\n' {
        pos += 1;
    }
    tampered[pos] = if tampered[pos] == b'A' { b'B' } else { b'A' };
    let out = bob.decrypt(&tampered);
    assert!(out.status.is_failure());
    let status = header(&out.message, "Sealpost-Status").unwrap();
    assert!(status.starts_with("failed; reason="), "{status}");
    assert!(!contains(&out.message, b"meet at 8"));
    let (_, original) = without_status(&out.message);
    assert_eq!(original, tampered);
}
