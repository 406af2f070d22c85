//! Keys learnt from received mail (Autocrypt Level 1): with `sealpost keys
//! learn`, and through the IMAP proxy, after which the SMTP proxy of the
//! same running Sealpost encrypts to the new correspondent. Imported keys
//! are never silently replaced.

mod common;

use std::process::{Command, Stdio};

use common::proxy::{python, token, Proxy};
use common::stack::{password, stack};
use common::*;

fn sealpost(user: &User, args: &[&str], stdin: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .args(args)
        .env("SEALPOST_DATA_DIR", user.dir.path())
        .env("SEALPOST_PASSPHRASE", PASSPHRASE)
        .env("SEALPOST_LOG__LEVEL", "warn")
        .env_remove("SEALPOST_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A message from `from` to `to` signed by `from`'s Sealpost: it carries
/// `from`'s Autocrypt header.
fn signed_mail(from: &User, to: &str, subject: &str) -> Vec<u8> {
    let plain = format!(
        "From: {}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\nhello\r\n",
        from.email
    );
    sealpost::message::sign_message(plain.as_bytes(), &from.email, &from.key).unwrap()
}

/// The key IDs a message is encrypted to (its PKESK packets).
fn encrypted_to(message: &[u8]) -> Vec<String> {
    let armor = armored_part(message);
    let gpg = Gpg::new();
    let run = gpg.run(&["--list-packets", "--batch"], &armor);
    let mut ids: Vec<String> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter(|l| l.contains("pubkey enc packet"))
        .filter_map(|l| {
            l.split("keyid ")
                .nth(1)
                .map(|s| s.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or_default().to_string())
        })
        .collect();
    ids.sort();
    ids
}

fn encryption_subkey_id(user: &User) -> String {
    let fpr = user.key.cert.keys().subkeys().next().unwrap().key().keyid().to_hex();
    fpr.to_uppercase()
}

#[test]
fn keys_learn_takes_the_senders_autocrypt_key_and_the_next_message_is_encrypted() {
    let alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    let mail = signed_mail(&alice, &bob.email, "learn-cli");
    let (ok, out) = sealpost(
        &bob,
        &["encrypt", "--from", &bob.email, "--to", &alice.email],
        b"From: bob@example.net\r\nTo: alice@example.org\r\n\r\nx\r\n",
    );
    assert!(!ok && out.contains("no OpenPGP key"), "no key before learning: {out}");

    let (ok, out) = sealpost(&bob, &["keys", "learn"], &mail);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "alice@example.org {} (autocrypt): new",
            alice.key.cert.fingerprint().to_hex()
        )),
        "{out}"
    );
    let (_, again) = sealpost(&bob, &["keys", "learn"], &mail);
    assert!(again.contains("nothing new"), "{again}");

    let (ok, list) = sealpost(&bob, &["keys", "list"], b"");
    assert!(ok && list.contains("autocrypt") && list.contains("Autocrypt peers:"), "{list}");
    let (ok, encrypted) = sealpost(
        &bob,
        &["encrypt", "--from", &bob.email, "--to", &alice.email],
        b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: back\r\n\r\nreply\r\n",
    );
    assert!(ok, "{encrypted}");
    assert!(encrypted_to(encrypted.as_bytes()).contains(&encryption_subkey_id(&alice)));
}

#[test]
fn an_imported_key_is_never_replaced_by_a_learnt_one() {
    let alice = User::new("alice@example.org");
    // Someone else claims alice's address in an Autocrypt header.
    let mallory = User::new("alice@example.org");
    let mut bob = User::new("bob@example.net");
    bob.knows(&[&alice]);
    let (ok, out) = sealpost(&bob, &["keys", "learn"], &signed_mail(&mallory, &bob.email, "learn-conflict"));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "kept but not used: the key {} from a more trusted source stays in use",
            alice.key.cert.fingerprint().to_hex()
        )),
        "{out}"
    );
    let (_, list) = sealpost(&bob, &["keys", "list"], b"");
    let mallory_line = list.lines().find(|l| l.contains(&mallory.key.cert.fingerprint().to_hex())).unwrap();
    assert!(
        mallory_line.contains(&format!("no: imported key {}", alice.key.cert.fingerprint().to_hex())),
        "{list}"
    );
    let (ok, encrypted) = sealpost(
        &bob,
        &["encrypt", "--from", &bob.email, "--to", &alice.email],
        b"From: bob@example.net\r\nTo: alice@example.org\r\n\r\nx\r\n",
    );
    assert!(ok);
    let ids = encrypted_to(encrypted.as_bytes());
    assert!(
        ids.contains(&encryption_subkey_id(&alice)) && !ids.contains(&encryption_subkey_id(&mallory)),
        "{ids:?}"
    );
}

#[test]
fn gossip_inside_encrypted_mail_teaches_the_other_recipients_keys() {
    let carol = User::new("carol@example.com");
    let dave = User::new("dave@example.com");
    let mut bob = User::new("bob@example.net");
    let mut alice = User::new("alice@example.org");
    alice.knows(&[&bob, &carol, &dave]);
    bob.knows(&[&alice]);
    let plain = b"From: alice@example.org\r\nTo: bob@example.net, carol@example.com, dave@example.com\r\nSubject: team\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhi all\r\n";
    let copies = alice.encrypt(plain, &["bob@example.net", "carol@example.com", "dave@example.com"]);
    let (ok, out) = sealpost(&bob, &["keys", "learn"], &copies[0].message);
    assert!(ok, "{out}");
    for user in [&carol, &dave] {
        assert!(
            out.contains(&format!("{} {} (gossip): new", user.email, user.key.cert.fingerprint().to_hex())),
            "{out}"
        );
    }
}

#[test]
fn a_key_seen_through_the_imap_proxy_is_used_by_the_smtp_proxy_of_the_same_sealpost() {
    let stack = stack();
    let erin = User::new("erin@example.org");
    let newcomer = User::new("dave@example.com");
    let tok = token("learn-imap");
    // Dave writes to Erin for the first time; his Autocrypt header comes
    // along.
    let mail = signed_mail(&newcomer, &erin.email, &tok);
    stack.inject("erin@example.org", &mail);
    stack.wait_for_matching("erin@example.org", tok.as_bytes(), 1, std::time::Duration::from_secs(20));
    let proxy = Proxy::start(&erin, None, "");
    // Erin's client reads it (the whole message, as clients do to show it).
    let script = r#"
port, user, pw, tok = sys.argv[1:5]
m = imap(port, user, pw)
m.select("INBOX")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()[-1]
m.uid("FETCH", uid, "(BODY.PEEK[])")
m.logout()
"#;
    python(script, &[&proxy.imap.port().to_string(), &erin.email, &password(&erin.email), &tok]);
    // Then answers through the SMTP proxy of the same Sealpost: encrypted
    // to Dave's learnt key.
    let reply_token = token("learn-reply");
    let send = r#"
port, user, pw, tok = sys.argv[1:5]
s = connect(port); s.login(user, pw)
s.sendmail(user, ["dave@example.com"], f"From: {user}\r\nTo: dave@example.com\r\nSubject: Re\r\nMessage-ID: <{tok}@example.org>\r\n\r\nThanks!\r\n".encode())
s.quit()
"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy.metrics_text().contains("sealpost_keys_learned_total{source=\"autocrypt\"} 1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was not learnt:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    python(
        send,
        &[&proxy.smtp.port().to_string(), &erin.email, &password(&erin.email), &reply_token],
    );
    let delivered = stack.wait_for_matching("dave@example.com", reply_token.as_bytes(), 1, std::time::Duration::from_secs(20));
    assert!(contains(&delivered[0], b"multipart/encrypted"), "the reply went out encrypted");
    assert!(encrypted_to(&delivered[0]).contains(&encryption_subkey_id(&newcomer)));
}

#[test]
fn outgoing_autocrypt_headers_say_mutual_when_configured() {
    let stack = stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    let proxy = Proxy::start_with(
        &alice,
        common::proxy::Setup {
            keys: Some("wkd = false\nprefer_encrypt = \"mutual\""),
            ..Default::default()
        },
    );
    let tok = token("mutual");
    let send = r#"
port, user, pw, tok = sys.argv[1:5]
s = connect(port); s.login(user, pw)
s.sendmail(user, ["bob@example.net"], f"From: {user}\r\nTo: bob@example.net\r\nSubject: hi\r\nMessage-ID: <{tok}@example.org>\r\n\r\nhello\r\n".encode())
s.quit()
"#;
    python(send, &[&proxy.smtp.port().to_string(), &alice.email, &password(&alice.email), &tok]);
    let delivered = stack.wait_for_matching("bob@example.net", tok.as_bytes(), 1, std::time::Duration::from_secs(20));
    let autocrypt = header(&delivered[0], "Autocrypt").unwrap();
    assert!(
        autocrypt.starts_with("addr=alice@example.org; prefer-encrypt=mutual; keydata="),
        "{autocrypt}"
    );
}
