//! Real IMAP clients read a real Dovecot through the IMAP proxy: mbsync
//! (isync) mirrors a mailbox once directly and once through Sealpost, curl
//! fetches one message by UID, Python's imaplib waits in IDLE. What a user
//! checks: plaintext mail arrives exactly as the provider stores it,
//! encrypted mail arrives readable (and says so in `Sealpost-Status`), mail
//! that cannot be opened arrives as stored with the reason, and new mail
//! is announced while the client idles.
//!
//! Every message carries a token of this run in its `Message-ID`, so mail
//! of other tests and earlier runs in the same Maildirs does not matter.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{python, token, Proxy};
use common::stack::{password, stack};
use common::*;
use sealpost::mime::to_crlf;

/// The mailbox owner in every test here.
const DAVE: &str = "dave@example.com";
/// The correspondent who writes to Dave and signs her mail.
const ALICE: &str = "alice@example.org";

/// Dave with a Sealpost key store that knows Alice's key (so her
/// signatures verify), Alice with both keys, and her GnuPG home (her
/// secret key, Dave's public key).
struct People {
    dave: User,
    alice: User,
    alice_gpg: Gpg,
}

fn people() -> People {
    let mut dave = User::new(DAVE);
    let mut alice = User::new(ALICE);
    // Someone whose key Dave's store does not hold: mail Alice encrypts
    // only to her cannot be opened by Dave.
    let erin = User::new("erin@example.org");
    alice.knows(&[&dave, &erin]);
    dave.knows(&[&alice]);
    let alice_gpg = gpg_for(&alice, &[&dave]);
    People { dave, alice, alice_gpg }
}

// ------------------------------------------------------------ messages

/// `message` with its top-level `To` and `Message-ID` fields replaced
/// (the new ones first, in the message's own line ending).
fn readdress(message: &[u8], to: &str, message_id: &str) -> Vec<u8> {
    let eol: &[u8] = if find(message, b"\r\n").is_some_and(|i| Some(i) <= find(message, b"\n")) {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = Vec::new();
    for line in [format!("Message-ID: <{message_id}>"), format!("To: {to}")] {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(eol);
    }
    let mut rest = message;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if !continuation {
            let lower = line.to_ascii_lowercase();
            dropping = lower.starts_with(b"to:") || lower.starts_with(b"message-id:");
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        rest = &rest[end..];
    }
    out
}

/// How a message must look after a trip through the proxy.
enum Expect {
    /// Byte for byte what the provider stores.
    AsStored,
    /// Decrypted: these leaf bodies, this Subject, a good signature by
    /// this fingerprint; `inline` for inline PGP.
    Decrypted {
        bodies: Vec<Vec<u8>>,
        subject: String,
        signer: String,
        inline: bool,
    },
    /// As stored plus a `Sealpost-Status: failed; ...` field.
    Failed,
}

struct TestMessage {
    label: String,
    message_id: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn message_id(token: &str, label: &str) -> String {
    format!("{token}-{label}@example.org")
}

/// Alice's Sealpost encrypts `original` (already addressed) to Dave.
fn sealpost_encrypted(p: &People, original: &[u8], to: &str) -> Vec<u8> {
    let copies = p.alice.encrypt(original, &[to]);
    assert_eq!(copies.len(), 1);
    let sent = copies[0].message.clone();
    assert_eq!(header(&sent, "Subject").as_deref(), Some("[...]"), "the provider sees no subject");
    sent
}

/// `gpg --encrypt --sign --armor` from Alice to Dave.
fn gpg_encrypted(p: &People, data: &[u8]) -> Vec<u8> {
    let run = p
        .alice_gpg
        .run(&["--armor", "--encrypt", "--sign", "-r", DAVE, "--local-user", ALICE], data);
    assert!(run.ok, "gpg --encrypt --sign failed: {}", run.stderr);
    run.stdout
}

/// The corpus of the mbsync test: every kind of mail a mailbox holds.
fn corpus_for(p: &People, token: &str) -> Vec<TestMessage> {
    let alice_fpr = p.alice.key.cert.fingerprint().to_hex();
    let mut out = Vec::new();
    let to_dave = "Dave <dave@example.com>";

    // Plaintext mail of every shape, untouched by the proxy.
    for (i, name) in common::CORPUS.iter().enumerate() {
        let label = format!("plain{i}-{}", name.trim_end_matches(".eml"));
        let id = message_id(token, &label);
        out.push(TestMessage {
            label,
            bytes: readdress(&corpus(name), to_dave, &id),
            message_id: id,
            expect: Expect::AsStored,
        });
    }

    // Signed only (RFC 3156 multipart/signed): nothing to decrypt.
    let id = message_id(token, "signed");
    let original = readdress(&corpus("alternative.eml"), to_dave, &id);
    out.push(TestMessage {
        label: "signed".into(),
        bytes: sealpost::message::sign_message(&original, ALICE, &p.alice.key).unwrap(),
        message_id: id,
        expect: Expect::AsStored,
    });

    // Encrypted by Alice's Sealpost (PGP/MIME, protected headers).
    let id = message_id(token, "sealpost");
    let original = readdress(&corpus("nested.eml"), to_dave, &id);
    out.push(TestMessage {
        label: "sealpost".into(),
        bytes: sealpost_encrypted(p, &original, DAVE),
        expect: Expect::Decrypted {
            bodies: leaf_bodies(&to_crlf(&original)),
            subject: header(&original, "Subject").unwrap(),
            signer: alice_fpr.clone(),
            inline: false,
        },
        message_id: id,
    });

    // PGP/MIME made by GnuPG, with Thunderbird's protected headers inside
    // and its placeholder subject outside.
    let id = message_id(token, "gpg-pgpmime");
    let payload = format!(
        "Content-Type: multipart/mixed; boundary=\"------------INNER\";\r\n protected-headers=\"v1\"\r\n\
Subject: Quarterly numbers, from GnuPG\r\nFrom: Alice <alice@example.org>\r\nTo: {to_dave}\r\n\
Message-ID: <{id}>\r\n\r\n--------------INNER\r\n\
Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Revenue is up 12 %, costs are down. Gr\u{fc}\u{df}e, Alice\r\n\r\n--------------INNER--\r\n"
    );
    let armored = gpg_encrypted(p, payload.as_bytes());
    let date = "Date: Fri, 27 Nov 2026 10:00:00 +0000";
    let message_id_field = format!("Message-ID: <{id}>");
    let to_field = format!("To: {to_dave}");
    out.push(TestMessage {
        label: "gpg-pgpmime".into(),
        bytes: pgp_mime(
            &[
                "From: Alice <alice@example.org>",
                &to_field,
                "Subject: ...",
                date,
                &message_id_field,
            ],
            &armored,
        ),
        expect: Expect::Decrypted {
            bodies: leaf_bodies(payload.as_bytes()),
            subject: "Quarterly numbers, from GnuPG".into(),
            signer: alice_fpr.clone(),
            inline: false,
        },
        message_id: id,
    });

    // Inline PGP from GnuPG in a text/plain body.
    let id = message_id(token, "gpg-inline");
    let text = "Inline PGP from GnuPG.\r\nMeet me at the K\u{f6}ln station at 8.\r\n";
    let armored = gpg_encrypted(p, text.as_bytes());
    let mut bytes = format!(
        "From: Alice <alice@example.org>\r\nTo: {to_dave}\r\nSubject: Inline from gpg\r\n{date}\r\nMessage-ID: <{id}>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    )
    .into_bytes();
    bytes.extend_from_slice(&to_crlf(&armored));
    out.push(TestMessage {
        label: "gpg-inline".into(),
        bytes,
        expect: Expect::Decrypted {
            bodies: vec![text.as_bytes().to_vec()],
            subject: "Inline from gpg".into(),
            signer: alice_fpr.clone(),
            inline: true,
        },
        message_id: id,
    });

    // Encrypted to Erin only (and Alice): Dave cannot open it.
    let id = message_id(token, "undecryptable");
    let original = readdress(&corpus("forwarded.eml"), "Erin <erin@example.org>", &id);
    out.push(TestMessage {
        label: "undecryptable".into(),
        bytes: sealpost_encrypted(p, &original, "erin@example.org"),
        message_id: id,
        expect: Expect::Failed,
    });
    out
}

// ------------------------------------------------------------ the stack

/// Reads one SMTP reply (all its lines); panics unless its code is `code`.
fn smtp_reply(reader: &mut impl BufRead, code: &str, what: &str) -> String {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the inject port closed the connection after {what}: {reply}");
        reply.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    }
    assert!(reply.starts_with(code), "{what}: expected {code}, got {reply}");
    reply
}

/// Delivers `message` to `to` through the stack's plain SMTP inject port,
/// the way mail from the Internet arrives.
fn deliver(to: &str, message: &[u8]) {
    let stack = stack();
    let mut stream = TcpStream::connect(stack.addr(stack.smtp_inject_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    smtp_reply(&mut reader, "220", "connecting");
    stream.write_all(b"EHLO clients.test\r\n").unwrap();
    smtp_reply(&mut reader, "250", "EHLO");
    // No SMTPUTF8: Dovecot's LMTP does not offer it, so Postfix would
    // bounce such mail; raw UTF-8 headers pass as 8-bit data without it.
    stream
        .write_all(format!("MAIL FROM:<{ALICE}> BODY=8BITMIME\r\n").as_bytes())
        .unwrap();
    smtp_reply(&mut reader, "250", "MAIL");
    stream.write_all(format!("RCPT TO:<{to}>\r\n").as_bytes()).unwrap();
    smtp_reply(&mut reader, "250", "RCPT");
    stream.write_all(b"DATA\r\n").unwrap();
    smtp_reply(&mut reader, "354", "DATA");
    let mut data = Vec::new();
    let crlf = to_crlf(message);
    for line in crlf.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    stream.write_all(&data).unwrap();
    smtp_reply(&mut reader, "250", "end of data");
    stream.write_all(b"QUIT\r\n").unwrap();
}

/// Runs a Python snippet with the prelude's `imap()` against Dovecot
/// itself (not through the proxy) as Dave: `args` follow port, user and
/// password in `sys.argv`.
fn dovecot_python(script: &str, args: &[&str]) -> String {
    let stack = stack();
    let port = stack.imap_port.to_string();
    let pw = password(DAVE);
    let mut all = vec![port.as_str(), DAVE, pw.as_str()];
    all.extend_from_slice(args);
    python(script, &all)
}

/// Moves Dave's INBOX messages whose Message-ID contains `token` into a
/// new mailbox `mailbox` (directly at Dovecot), so that the clients under
/// test see exactly this run's messages. Returns how many moved.
fn move_to_own_mailbox(token: &str, mailbox: &str) -> usize {
    let out = dovecot_python(
        r#"
m = imap(sys.argv[1], sys.argv[2], sys.argv[3])
box, token = sys.argv[4], sys.argv[5]
typ, data = m.create(box)
assert typ == 'OK', data
typ, data = m.select('INBOX')
assert typ == 'OK', data
typ, data = m.uid('SEARCH', 'HEADER', 'Message-ID', token)
assert typ == 'OK', data
uids = data[0].split()
if uids:
    typ, data = m.uid('MOVE', b','.join(uids).decode(), box)
    assert typ == 'OK', data
m.logout()
print(len(uids))
"#,
        &[mailbox, token],
    );
    out.trim().parse().unwrap()
}

/// Deletes Dave's mailbox `mailbox` (directly at Dovecot).
fn delete_mailbox(mailbox: &str) {
    dovecot_python(
        r#"
m = imap(sys.argv[1], sys.argv[2], sys.argv[3])
typ, data = m.delete(sys.argv[4])
assert typ == 'OK', data
m.logout()
"#,
        &[mailbox],
    );
}

/// Expunges Dave's INBOX messages whose Message-ID contains `token`
/// (directly at Dovecot).
fn expunge_from_inbox(token: &str) {
    dovecot_python(
        r#"
m = imap(sys.argv[1], sys.argv[2], sys.argv[3])
m.select('INBOX')
typ, data = m.uid('SEARCH', 'HEADER', 'Message-ID', sys.argv[4])
uids = data[0].split()
if uids:
    m.uid('STORE', b','.join(uids).decode(), '+FLAGS.SILENT', '(\\Deleted)')
    m.uid('EXPUNGE', b','.join(uids).decode())
m.logout()
"#,
        &[token],
    );
}

/// Removes a test mailbox at the end of a test that passed; one that
/// failed leaves it for inspection.
struct OwnMailbox(String);

impl Drop for OwnMailbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            delete_mailbox(&self.0);
        }
    }
}

/// Runs a command to its end, killing it after `limit` (a hung client
/// must fail the test, not stall it). Returns (success, stdout, stderr).
fn run(command: &mut Command, limit: Duration) -> (bool, Vec<u8>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut b).unwrap();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut b).unwrap();
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let mut stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {limit:?}]"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

/// The last `max` bytes of a transcript, for failure messages.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ------------------------------------------------------------ mbsync

/// What one mbsync run mirrored: messages by Message-ID, and mbsync's
/// transcript (`-Dn`: the IMAP conversation).
struct Mirror {
    messages: BTreeMap<String, Vec<u8>>,
    transcript: String,
}

/// `message` without the `X-TUID` field mbsync adds to every message it
/// stores (a random value, different in each run).
fn without_tuid(message: &[u8]) -> Vec<u8> {
    let start = if message.starts_with(b"X-TUID: ") {
        Some(0)
    } else {
        find(message, b"\nX-TUID: ").map(|i| i + 1)
    };
    match start {
        Some(start) => {
            let end = start
                + message[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(message.len() - start, |i| i + 1);
            [&message[..start], &message[end..]].concat()
        }
        None => message.to_vec(),
    }
}

/// Mirrors Dave's `mailbox` from 127.0.0.1:`port` into a fresh Maildir
/// under `dir` with mbsync (plain IMAP, LOGIN) and reads it back.
fn mbsync(dir: &Path, name: &str, port: u16, mailbox: &str) -> Mirror {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("mail")).unwrap();
    let config = root.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount {name}\nHost 127.0.0.1\nPort {port}\nUser {DAVE}\nPass {pw}\nSSLType None\nAuthMechs LOGIN\n\n\
IMAPStore {name}-far\nAccount {name}\n\n\
MaildirStore {name}-near\nPath {path}/\nInbox {path}/INBOX\nSubFolders Verbatim\n\n\
Channel {name}\nFar :{name}-far:\nNear :{name}-near:\nPatterns {mailbox}\nCreate Near\nSync Pull\nSyncState *\n",
            pw = password(DAVE),
            path = root.join("mail").display(),
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = run(
        Command::new("mbsync").args(["-Dn", "-c"]).arg(&config).arg(name),
        Duration::from_secs(300),
    );
    let transcript = format!("{}{stderr}", String::from_utf8_lossy(&stdout));
    assert!(ok, "mbsync through {name} failed:\n{}", tail(&transcript, 6000));
    let mut messages = BTreeMap::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(root.join("mail").join(mailbox).join(sub)) else {
            continue;
        };
        for entry in entries {
            let bytes = without_tuid(&std::fs::read(entry.unwrap().path()).unwrap());
            let id = header(&bytes, "Message-ID").unwrap_or_default();
            let id = id.trim().trim_start_matches('<').trim_end_matches('>').to_string();
            assert!(
                messages.insert(id.clone(), bytes).is_none(),
                "{name}: two messages with Message-ID {id}"
            );
        }
    }
    Mirror { messages, transcript }
}

/// A message for a failure report, cut after 3000 characters.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 3000 {
        format!(
            "{}\n[... {} bytes in all]",
            &text[..text.char_indices().nth(3000).map_or(text.len(), |(i, _)| i)],
            bytes.len()
        )
    } else {
        text.into_owned()
    }
}

#[test]
fn mbsync_through_sealpost_mirrors_plaintext_exactly_and_encrypted_mail_readable() {
    let p = people();
    let token = token("mbsync");
    let messages = corpus_for(&p, &token);
    for m in &messages {
        deliver(DAVE, &m.bytes);
    }
    let stack = stack();
    stack.wait_for_matching(DAVE, token.as_bytes(), messages.len(), Duration::from_secs(120));
    let mailbox = token.clone();
    let moved = move_to_own_mailbox(&token, &mailbox);
    let _cleanup = OwnMailbox(mailbox.clone());
    assert_eq!(moved, messages.len(), "every delivered message is in the test mailbox");

    let proxy = Proxy::start(&p.dave, None, "");
    let dir = tempfile::tempdir().unwrap();
    let direct = mbsync(dir.path(), "direct", stack.imap_port, &mailbox);
    let through = mbsync(dir.path(), "sealpost", proxy.imap.port(), &mailbox);
    let context = || {
        format!(
            "--- mbsync through Sealpost, transcript (end):\n{}\n--- proxy log (end):\n{}",
            tail(&through.transcript, 4000),
            tail(&proxy.log_text(), 4000)
        )
    };

    assert_eq!(
        direct.messages.keys().collect::<Vec<_>>(),
        through.messages.keys().collect::<Vec<_>>(),
        "both mirrors hold the same messages (by Message-ID)\n{}",
        context()
    );
    assert_eq!(
        direct.messages.len(),
        messages.len(),
        "the mirror holds exactly this run's messages: {:?}",
        direct.messages.keys().collect::<Vec<_>>()
    );

    let mut failures = Vec::new();
    for m in &messages {
        let stored = &direct.messages[&m.message_id];
        let shown = &through.messages[&m.message_id];
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("[{}] {what}", m.label));
            }
        };
        match &m.expect {
            Expect::AsStored => check(
                shown == stored,
                format!(
                    "plaintext changed by the proxy\n--- direct:\n{}\n--- through Sealpost:\n{}",
                    show(stored),
                    show(shown)
                ),
            ),
            Expect::Decrypted {
                bodies,
                subject,
                signer,
                inline,
            } => {
                check(
                    contains(stored, b"-----BEGIN PGP MESSAGE-----"),
                    "the provider stores ciphertext".into(),
                );
                let shown_crlf = to_crlf(shown).into_owned();
                let status = header(&shown_crlf, "Sealpost-Status").unwrap_or_default();
                let format = if *inline { "format=inline; " } else { "" };
                let want = format!("decrypted; {format}signature=good; signer={signer}");
                check(
                    status.starts_with(&want),
                    format!(
                        "Sealpost-Status is {status:?}, wanted {want:?}\n--- through Sealpost:\n{}",
                        show(shown)
                    ),
                );
                check(
                    header(&shown_crlf, "Subject").as_deref() == Some(subject.as_str()),
                    format!("Subject is {:?}, wanted {subject:?}", header(&shown_crlf, "Subject")),
                );
                check(
                    &leaf_bodies(&shown_crlf) == bodies,
                    format!("the body is not the original plaintext\n--- through Sealpost:\n{}", show(shown)),
                );
                check(
                    !contains(shown, b"-----BEGIN PGP MESSAGE-----"),
                    "ciphertext left in what the client sees".into(),
                );
            }
            Expect::Failed => {
                if !contains(shown, b"\nSealpost-Status: ") {
                    check(false, format!("no Sealpost-Status field\n--- through Sealpost:\n{}", show(shown)));
                    continue;
                }
                let (status, rest) = without_status(shown);
                check(status.starts_with("failed; "), format!("Sealpost-Status is {status:?}"));
                check(
                    &rest == stored,
                    format!(
                        "apart from Sealpost-Status, not the stored message\n--- direct:\n{}\n--- through Sealpost:\n{}",
                        show(stored),
                        show(shown)
                    ),
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} messages are wrong through Sealpost:\n{}\n{}",
        failures.len(),
        messages.len(),
        failures.join("\n\n"),
        context()
    );
}

// ------------------------------------------------------------ curl

/// Dave's INBOX UIDs (through `port`, as Dave) of messages whose
/// Message-ID contains `needle`.
fn uids_through(port: u16, needle: &str) -> Vec<u32> {
    let out = python(
        r#"
m = imap(sys.argv[1], sys.argv[2], sys.argv[3])
typ, data = m.select('INBOX')
assert typ == 'OK', data
typ, data = m.uid('SEARCH', 'HEADER', 'Message-ID', sys.argv[4])
assert typ == 'OK', data
print(json.dumps([int(u) for u in data[0].split()]))
m.logout()
"#,
        &[&port.to_string(), DAVE, &password(DAVE), needle],
    );
    parse_list(&out)
}

/// Parses `[1, 2, 3]`.
fn parse_list(text: &str) -> Vec<u32> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn curl_fetches_an_encrypted_message_by_uid_decrypted() {
    let p = people();
    let token = token("curl");
    let id = message_id(&token, "curl");
    let original = readdress(&corpus("alternative.eml"), "Dave <dave@example.com>", &id);
    deliver(DAVE, &sealpost_encrypted(&p, &original, DAVE));
    let stack = stack();
    stack.wait_for_matching(DAVE, token.as_bytes(), 1, Duration::from_secs(120));

    let proxy = Proxy::start(&p.dave, None, "");
    let uids = uids_through(proxy.imap.port(), &token);
    assert_eq!(uids.len(), 1, "SEARCH through Sealpost finds the message once: {uids:?}");
    let url = format!("imap://127.0.0.1:{}/INBOX;UID={}", proxy.imap.port(), uids[0]);
    let (ok, fetched, stderr) = run(
        Command::new("curl")
            .args(["-s", "-S", "-v", "--max-time", "120", "--url", &url, "-u"])
            .arg(format!("{DAVE}:{}", password(DAVE))),
        Duration::from_secs(180),
    );
    let context = format!(
        "curl {url}\n--- curl -v (end):\n{}\n--- fetched:\n{}\n--- proxy log (end):\n{}",
        tail(&stderr, 4000),
        show(&fetched),
        tail(&proxy.log_text(), 4000)
    );
    assert!(ok, "curl failed\n{context}");
    let status = header(&fetched, "Sealpost-Status").unwrap_or_default();
    let want = format!("decrypted; signature=good; signer={}", p.alice.key.cert.fingerprint().to_hex());
    assert!(
        status.starts_with(&want),
        "Sealpost-Status is {status:?}, wanted {want:?}\n{context}"
    );
    assert_eq!(
        header(&fetched, "Subject"),
        header(&original, "Subject"),
        "Subject restored\n{context}"
    );
    assert_eq!(
        leaf_bodies(&to_crlf(&fetched)),
        leaf_bodies(&to_crlf(&original)),
        "the body is the original plaintext\n{context}"
    );
    expunge_from_inbox(&token);
}

// ------------------------------------------------------------ IDLE

#[test]
fn idle_through_sealpost_announces_new_mail() {
    let p = people();
    let token = token("idle");
    let stack = stack();
    let proxy = Proxy::start(&p.dave, None, "");
    let message = format!(
        "From: Alice <alice@example.org>\r\nTo: Dave <dave@example.com>\r\nSubject: while you idle\r\n\
Message-ID: <{}>\r\n\r\nNew mail during IDLE.\r\n",
        message_id(&token, "idle")
    );
    // imaplib has no IDLE (before Python 3.14): the command is written by
    // hand, the new mail delivered while the server idles, and every line
    // read after the `+` recorded.
    let out = python(
        r#"
import re, socket
m = imap(sys.argv[1], sys.argv[2], sys.argv[3])
typ, data = m.select('INBOX')
assert typ == 'OK', data
result = {'select': [d.decode(errors='replace') if isinstance(d, bytes) else str(d) for d in data], 'lines': []}
tag = m._new_tag()
m.send(tag + b' IDLE\r\n')
m.sock.settimeout(20)
try:
    first = m.readline()
    result['continuation'] = first.decode(errors='replace')
    if first.startswith(b'+'):
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[4]))
        s.sendmail('alice@example.org', [sys.argv[2]], sys.argv[5].encode())
        s.quit()
        while True:
            line = m.readline()
            if not line:
                result['lines'].append('<connection closed>')
                break
            result['lines'].append(line.decode(errors='replace'))
            if re.match(rb'\* \d+ EXISTS\r\n', line):
                result['exists'] = line.decode()
                break
    m.send(b'DONE\r\n')
    while True:
        line = m.readline()
        if not line:
            result['lines'].append('<connection closed>')
            break
        result['lines'].append(line.decode(errors='replace'))
        if line.startswith(tag + b' '):
            result['done'] = line.decode(errors='replace')
            break
except (socket.timeout, TimeoutError) as e:
    result['lines'].append('<no more lines after 20 s>')
print(json.dumps(result))
"#,
        &[
            &proxy.imap.port().to_string(),
            DAVE,
            &password(DAVE),
            &stack.smtp_inject_port.to_string(),
            &message,
        ],
    );
    let context = format!(
        "imaplib through Sealpost: {out}\n--- proxy log (end):\n{}",
        tail(&proxy.log_text(), 3000)
    );
    let field = |name: &str| -> Option<String> {
        let key = format!("\"{name}\": \"");
        let start = out.find(&key)? + key.len();
        let end = start + out[start..].find('"')?;
        Some(out[start..end].to_string())
    };
    assert!(
        field("continuation").is_some_and(|c| c.starts_with('+')),
        "the server accepts IDLE with a continuation\n{context}"
    );
    assert!(
        field("exists").is_some(),
        "new mail is announced with * n EXISTS while idling\n{context}"
    );
    assert!(
        field("done").is_some_and(|d| d.contains(" OK")),
        "DONE ends IDLE with a tagged OK\n{context}"
    );
    stack.wait_for_matching(DAVE, token.as_bytes(), 1, Duration::from_secs(60));
    expunge_from_inbox(&token);
}
