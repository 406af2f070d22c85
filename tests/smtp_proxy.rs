//! The SMTP submission proxy end to end: real clients (swaks, Python
//! smtplib) submit through `sealpost serve` to the test stack's Postfix,
//! which delivers into Dovecot; the tests read what was delivered.

mod common;

use std::time::Duration;

use common::proxy::{python, s, swaks, temp_file, token, Proxy};
use common::stack::{password, stack};
use common::*;

/// How long delivery may take; generous because CI machines are slow and
/// Postfix retries LMTP delivery on its own schedule.
const WAIT: Duration = Duration::from_secs(120);

/// The key IDs a message is encrypted to, as `gpg --list-packets` shows
/// them to someone holding none of the keys.
fn listed_key_ids(message: &[u8]) -> Vec<String> {
    let run = Gpg::new().run(&["--list-packets"], &armored_part(message));
    let text = String::from_utf8_lossy(&run.stdout).into_owned() + &run.stderr;
    let mut ids: Vec<String> = text
        .lines()
        .filter(|l| l.contains(":pubkey enc packet:"))
        .filter_map(|l| l.split("keyid ").nth(1))
        .map(|id| id.trim().to_string())
        .collect();
    ids.sort();
    ids
}

fn encryption_key_id(user: &User) -> String {
    let policy = sequoia_openpgp::policy::StandardPolicy::new();
    let vc = user.key.cert.with_policy(&policy, None).unwrap();
    let id = vc.keys().for_transport_encryption().next().unwrap().key().keyid().to_hex();
    id
}

fn submit_with_swaks(proxy: &Proxy, recipients: &str, message: &[u8], extra: &[&str]) -> String {
    let (_dir, file) = temp_file(message);
    let server = proxy.smtp.to_string();
    let pass = password("alice@example.org");
    let mut args = vec![
        "--server",
        &server,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        &pass,
        "--from",
        "alice@example.org",
        "--to",
        recipients,
        "--data",
        s(&file),
    ];
    args.extend_from_slice(extra);
    let (ok, transcript) = swaks(&args);
    assert!(ok, "swaks failed:\n{transcript}\n{}", proxy.log_text());
    transcript
}

#[test]
fn each_recipient_gets_a_copy_only_they_can_read_and_bcc_stays_separate() {
    let stack = stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    let carol = User::new("carol@example.com");
    let dave = User::new("dave@example.com");
    alice.knows(&[&bob, &carol, &dave]);
    let proxy = Proxy::start(&alice, None, "");

    let tag = token("bcc");
    let secret_subject = format!("subject-{tag}-secret");
    let secret_body = format!("body-{tag}-secret");
    let message = format!(
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nCc: carol@example.com\r\n\
Subject: {secret_subject}\r\nMessage-ID: <{tag}@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n{secret_body}\r\n"
    );
    let transcript = submit_with_swaks(
        &proxy,
        "bob@example.net,carol@example.com,dave@example.com",
        message.as_bytes(),
        &["--pipeline"],
    );
    assert!(
        transcript.contains("250 2.0.0 Delivered to 3 recipients in 2 separately encrypted copies"),
        "{transcript}"
    );

    let delivered = |user: &str| stack.wait_for_matching(user, tag.as_bytes(), 1, WAIT).remove(0);
    let (to_bob, to_carol, to_dave) = (
        delivered("bob@example.net"),
        delivered("carol@example.com"),
        delivered("dave@example.com"),
    );
    for copy in [&to_bob, &to_carol, &to_dave] {
        assert!(!contains(copy, secret_subject.as_bytes()) && !contains(copy, secret_body.as_bytes()));
        assert_eq!(header(copy, "Subject").as_deref(), Some("[...]"));
    }
    for (user, copy) in [(&bob, &to_bob), (&carol, &to_carol), (&dave, &to_dave)] {
        let run = gpg_for(user, &[&alice]).decrypt(&armored_part(copy));
        assert!(run.ok && run.has("GOODSIG"), "{} cannot read its copy: {}", user.email, run.stderr);
        assert!(contains(&run.stdout, secret_body.as_bytes()));
        assert!(contains(&run.stdout, format!("Subject: {secret_subject}").as_bytes()));
    }
    let mut visible = vec![encryption_key_id(&alice), encryption_key_id(&bob), encryption_key_id(&carol)];
    visible.sort();
    assert_eq!(listed_key_ids(&to_bob), visible, "the visible copy names no Bcc key");
    let mut bcc = vec![encryption_key_id(&alice), encryption_key_id(&dave)];
    bcc.sort();
    assert_eq!(listed_key_ids(&to_dave), bcc);
    assert!(
        !gpg_for(&bob, &[]).decrypt(&armored_part(&to_dave)).ok,
        "Bob cannot read Dave's copy"
    );

    // Nothing readable anywhere on the provider's side.
    for needle in [secret_subject.as_bytes(), secret_body.as_bytes()] {
        assert!(stack.queue_files_containing(needle).is_empty());
        assert!(!contains(&std::fs::read(&stack.postfix_log).unwrap(), needle));
        assert!(!contains(proxy.log_text().as_bytes(), needle), "the proxy logged content");
    }
    assert!(proxy
        .metrics_text()
        .contains("sealpost_smtp_messages_total{outcome=\"encrypted\"} 1"));
}

#[test]
fn policy_refuses_at_rcpt_and_signs_when_a_key_is_missing() {
    let stack = stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    let proxy = Proxy::start(&alice, None, "[policy]\nrequire_encryption_for = [\"example.com\"]\n");
    let tag = token("policy");
    let script = r#"
port, tag, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = connect(port); s.login("alice@example.org", pw)
s.mail("alice@example.org")
print("carol", *s.rcpt("carol@example.com"))
print("erin", *s.rcpt("erin@example.org"))
msg = f"From: alice@example.org\r\nTo: erin@example.org\r\nSubject: signed {tag}\r\nMessage-ID: <{tag}@example.org>\r\n\r\nsigned body {tag}\r\n"
print("data", *s.data(msg.encode()))
s.quit()
"#;
    let out = python(script, &[&proxy.smtp.port().to_string(), &tag, &password("alice@example.org")]);
    assert!(
        out.contains("carol 550 b\"5.7.1 <carol@example.com>: encryption required but no OpenPGP key found; import one with 'sealpost keys import'\""),
        "{out}"
    );
    assert!(out.contains("erin 250"), "{out}");
    assert!(out.contains("data 250"), "{out}");

    let delivered = stack.wait_for_matching("erin@example.org", tag.as_bytes(), 1, WAIT).remove(0);
    let entity = sealpost::mime::Entity::parse(&delivered);
    assert!(entity.content_type().is("multipart/signed"), "erin gets a signed message");
    let parts = entity.parts().unwrap();
    let gpg = Gpg::new();
    gpg.import(&alice.public_key());
    let dir = tempfile::tempdir().unwrap();
    let (data, sig) = (dir.path().join("data"), dir.path().join("sig.asc"));
    // Dovecot stores LF line endings; RFC 3156 verifies the CRLF form.
    std::fs::write(&data, sealpost::mime::to_crlf(parts[0])).unwrap();
    std::fs::write(&sig, sealpost::mime::Entity::parse(parts[1]).body).unwrap();
    let run = gpg.run(&["--verify", s(&sig), s(&data)], b"");
    assert!(run.ok && run.has("GOODSIG"), "gpg --verify: {}", run.stderr);
    let metrics = proxy.metrics_text();
    assert!(metrics.contains("sealpost_smtp_policy_rejections_total 1"), "{metrics}");
    assert!(metrics.contains("sealpost_smtp_messages_total{outcome=\"signed\"} 1"), "{metrics}");
}

#[test]
fn provider_refusals_reach_the_client_and_tls_is_never_downgraded() {
    stack();
    let alice = User::new("alice@example.org");
    let proxy = Proxy::start(&alice, None, "");
    let login = r#"
s = connect(int(sys.argv[1]))
try:
    s.login("alice@example.org", sys.argv[2]); print("ok")
except smtplib.SMTPAuthenticationError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPServerDisconnected as e:
    print("disconnected", e)
except smtplib.SMTPResponseException as e:
    print("error", e.smtp_code, e.smtp_error.decode())
"#;
    let out = python(login, &[&proxy.smtp.port().to_string(), "wrong password"]);
    assert!(out.starts_with("refused 535"), "the provider's 535 reaches the client: {out}");
    let out = python(login, &[&proxy.smtp.port().to_string(), &password("alice@example.org")]);
    assert_eq!(out.trim(), "ok");

    // An upstream that offers no STARTTLS: refused before any credential.
    let stack = stack();
    let plain = Proxy::start(&alice, Some(&format!("smtp://{}:{}", stack.tls_name, stack.plainauth_port)), "");
    let raw_auth = r#"
s = connect(int(sys.argv[1])); s.ehlo()
code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.org\0" + sys.argv[2].encode()).decode())
print("error", code, text.decode())
"#;
    let out = python(raw_auth, &[&plain.smtp.port().to_string(), &password("alice@example.org")]);
    assert!(out.starts_with("error 421"), "{out}");
    assert!(out.contains("4.7.0") && out.contains("does not offer STARTTLS"), "{out}");
    assert!(plain
        .metrics_text()
        .contains("sealpost_upstream_failures_total{kind=\"starttls\"} 1"));

    // Implicit TLS upstream (smtps) works as well.
    let implicit = Proxy::start(&alice, Some(&format!("smtps://{}:{}", stack.tls_name, stack.submissions_port)), "");
    let out = python(login, &[&implicit.smtp.port().to_string(), &password("alice@example.org")]);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn an_upstream_that_dies_mid_message_gives_4xx_not_250() {
    stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    let upstream = common::fault::DyingUpstream::start();
    let proxy = Proxy::start(&alice, Some(&format!("smtp://localhost:{}", upstream.port)), "");
    let script = r#"
s = connect(int(sys.argv[1])); s.login("alice@example.org", "x")
try:
    s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: x\r\n\r\nbody\r\n"); print("accepted")
except smtplib.SMTPResponseException as e:
    print("refused", e.smtp_code)
except smtplib.SMTPServerDisconnected as e:
    print("disconnected")
"#;
    let out = python(script, &[&proxy.smtp.port().to_string()]);
    assert!(out.starts_with("refused 4"), "{out}\n{}", proxy.log_text());
}

#[test]
fn pipelining_big_attachments_8bit_and_smtputf8() {
    let stack = stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    let mut bob = bob;
    bob.knows(&[&alice]);
    let proxy = Proxy::start(&alice, None, "");
    let tag = token("big");
    let script = r#"
port, tag, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
payload = base64.encodebytes(os.urandom(20 * 1024 * 1024)).replace(b"\n", b"\r\n")
msg = (f"From: Zoë <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: Größe {tag}\r\n"
       f"Message-ID: <{tag}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
       "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n"
       "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + payload + b"--b--\r\n"
s = connect(port); s.login("alice@example.org", pw)
code = s.sendmail("alice@example.org", ["bob@example.net"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
print("sent", len(msg))
open(sys.argv[4], "wb").write(msg)
"#;
    let dir = tempfile::tempdir().unwrap();
    let sent_file = dir.path().join("sent.eml");
    let out = python(
        script,
        &[&proxy.smtp.port().to_string(), &tag, &password("alice@example.org"), s(&sent_file)],
    );
    assert!(out.starts_with("sent"), "{out}");
    let delivered = stack.wait_for_matching("bob@example.net", tag.as_bytes(), 1, WAIT).remove(0);
    let shown = bob.decrypt(&delivered);
    assert!(header(&shown.message, "Sealpost-Status")
        .unwrap()
        .starts_with("decrypted; signature=good"));
    let sent = std::fs::read(&sent_file).unwrap();
    assert_eq!(leaf_bodies(&shown.message), leaf_bodies(&sent), "every part arrives byte for byte");
    // The sender's structure, with no level added: the same body under the
    // header, the same multipart root.
    let (shown_entity, sent_entity) = (sealpost::mime::Entity::parse(&shown.message), sealpost::mime::Entity::parse(&sent));
    assert!(shown_entity.body == sent_entity.body, "the body arrives as sent, not wrapped");
    assert_eq!(shown_entity.content_type().param("boundary"), Some("b"));
    assert!(contains(&shown.message, "Subject: Größe".as_bytes()));
    assert!(
        contains(&shown.message, "From: Zoë <alice@example.org>".as_bytes()),
        "the original header inside"
    );
    // Outside, the provider got plain ASCII headers (RFC 2047), which is
    // why the SMTPUTF8 message could be delivered by an LMTP server that
    // does not offer SMTPUTF8.
    let outer = sealpost::mime::Entity::parse(&delivered);
    assert!(outer.header.is_ascii());
    stack.remove_matching("bob@example.net", tag.as_bytes());
}

/// A raw conversation on the loopback listener (no TLS needed there for
/// AUTH, as with local bridges); each reply is checked as a client sees it.
struct Raw {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Raw {
    fn connect(proxy: &Proxy) -> Raw {
        let tcp = std::net::TcpStream::connect(proxy.smtp).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Raw {
            reader: std::io::BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
        };
        assert!(raw.reply().starts_with("220 "));
        raw
    }

    /// Reads one (multi-line) reply.
    fn reply(&mut self) -> String {
        use std::io::BufRead;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.writer.write_all(bytes).unwrap();
    }

    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn protocol_errors_get_rfc_replies_and_the_session_goes_on() {
    stack();
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    let proxy = Proxy::start(&alice, None, "[smtp]\nmax_message_size = 100000\n");
    let mut c = Raw::connect(&proxy);
    assert!(
        c.command("MAIL FROM:<alice@example.org>").starts_with("530 5.7.0"),
        "MAIL before AUTH"
    );
    assert!(c.command("BOGUS").starts_with("500 5.5.2"));
    assert!(c.command(&"X".repeat(1500)).starts_with("500 5.5.2 Line too long"));
    assert!(c.command("MAIL FROM:broken<").starts_with("501 5.5.4"));
    let ehlo = c.command("EHLO client.test");
    assert!(ehlo.contains("250-STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0alice@example.org\0{}", password("alice@example.org")));
    assert!(
        c.command(&format!("AUTH PLAIN {credentials}")).starts_with("235 "),
        "AUTH in clear on loopback"
    );
    assert!(c.command("AUTH PLAIN xyz").starts_with("503 5.5.1"));
    assert!(c.command("RCPT TO:<bob@example.net>").starts_with("503 5.5.1"), "RCPT before MAIL");
    assert!(c.command("DATA").starts_with("503 5.5.1"), "DATA before MAIL");
    assert!(
        c.command("MAIL FROM:<alice@example.org> SIZE=200000").starts_with("552 5.3.4"),
        "SIZE over the limit"
    );
    assert!(c.command("MAIL FROM:<alice@example.org> FOO=1").starts_with("555 5.5.4"));
    assert!(c.command("MAIL FROM:<alice@example.org>").starts_with("250"));
    assert!(c.command("DATA").starts_with("554 5.5.1"), "DATA without an accepted RCPT");
    assert!(c.command("RCPT TO:<bob@example.net>").starts_with("250"));
    assert!(c.command("DATA").starts_with("354"));
    c.send(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(150_000)).as_bytes());
    assert!(c.reply().starts_with("552 5.3.4"), "oversized data is read, then refused");
    assert!(c.command("NOOP").starts_with("250"), "the session goes on");
    assert!(c.command("QUIT").starts_with("221"));
}

#[test]
fn the_client_is_timed_out_when_silent() {
    stack();
    let alice = User::new("alice@example.org");
    let proxy = Proxy::start(&alice, None, "[smtp]\ncommand_timeout = 1\n");
    let mut c = Raw::connect(&proxy);
    assert!(c.reply().starts_with("421 4.4.2"), "a silent client is told and dropped");
}
