//! The IMAP proxy against the test stack's real Dovecot, with Python's
//! imaplib as the client: encrypted messages read decrypted and
//! consistently in every FETCH item, plaintext passes byte for byte,
//! uploads are stored encrypted, pinning and TLS rules hold.

mod common;

use std::collections::HashMap;

use base64::Engine;
use common::proxy::{python, token, Proxy};
use common::stack::{password, stack};
use common::*;
use sealpost::mime::to_crlf;

/// Fetches, for the message whose Message-ID contains argv[4] in mailbox
/// argv[5], every item the tests compare, and prints them as JSON
/// (base64 values). Item values are what follows the item name in the
/// answer; literals are their contents.
const PROBE: &str = r#"
import re
port, user, pw, tok, mailbox = sys.argv[1:6]
m = imap(port, user, pw)
typ, _ = m.select(mailbox)
assert typ == "OK", typ
typ, d = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)
uids = d[0].split()
assert uids, "no message with " + tok
uid = uids[-1]
def raw(items):
    typ, d = m.uid("FETCH", uid, items)
    assert typ == "OK", (items, d)
    out = b""
    for part in d:
        out += part[0] + b"\r\n" + part[1] if isinstance(part, tuple) else part
    return out
def value(items, name):
    typ, d = m.uid("FETCH", uid, items)
    for part in d:
        if isinstance(part, tuple) and name.upper().encode() in part[0].upper():
            return part[1]
    text = b"".join(p if isinstance(p, bytes) else p[0] for p in d)
    i = text.upper().index(name.upper().encode() + b" ") + len(name) + 1
    v = text[i:]
    return v[:-1] if v.endswith(b")") else v
out = {}
out["whole"] = value("(BODY.PEEK[])", "BODY[]")
out["size"] = re.search(rb"RFC822.SIZE (\d+)", raw("(RFC822.SIZE)")).group(1)
chunks, offset = b"", 0
while True:
    piece = value("(BODY.PEEK[]<%d.1000>)" % offset, "BODY[]<%d>" % offset)
    chunks += piece
    offset += 1000
    if len(piece) < 1000:
        break
out["chunks"] = chunks
for name, item in [("header", "HEADER"), ("text", "TEXT"), ("part1", "1"), ("part1mime", "1.MIME"), ("part2", "2"),
                   ("part11", "1.1"), ("fields", "HEADER.FIELDS (Subject From)"), ("notfields", "HEADER.FIELDS.NOT (Subject Received Return-Path Delivered-To)")]:
    out[name] = value("(BODY.PEEK[%s])" % item, "BODY[%s]" % item)
out["partial"] = value("(BODY.PEEK[1]<5.40>)", "BODY[1]<5>")
for item in ["BODYSTRUCTURE", "BODY", "ENVELOPE"]:
    out[item] = value("(%s)" % item, item)
out["preview"] = value("(PREVIEW)", "PREVIEW")
out["preview_lazy"] = value("(PREVIEW (LAZY))", "PREVIEW")
out["binary1"] = value("(BINARY.PEEK[1])", "BINARY[1]")
out["binary2"] = value("(BINARY.PEEK[2])", "BINARY[2]")
out["binary2size"] = re.search(rb"BINARY.SIZE\[2\] (\d+)", raw("(BINARY.SIZE[2])")).group(1)
out["flags"] = raw("(FLAGS)")
print(json.dumps({k: base64.b64encode(v).decode() for k, v in out.items()}))
m.logout()
"#;

type Items = HashMap<String, Vec<u8>>;

/// Runs [`PROBE`] on `port` (the proxy's, or Dovecot's directly).
fn probe(port: u16, user: &str, token: &str, mailbox: &str) -> Items {
    let out = python(PROBE, &[&port.to_string(), user, &password(user), token, mailbox]);
    let map: HashMap<String, String> = serde_json::from_str(out.trim()).expect("probe output is JSON");
    map.into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.decode(v).unwrap()))
        .collect()
}

/// Appends `message` to `mailbox` directly at Dovecot (no Sealpost).
fn append_directly(user: &str, mailbox: &str, message: &[u8]) {
    let script = r#"
port, user, pw, mailbox = sys.argv[1:5]
m = imap(port, user, pw)
m.create(mailbox)
typ, d = m.append(mailbox, None, None, sys.stdin.buffer.read())
assert typ == "OK", d
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{}{script}", common::proxy::prelude()))
        .args([&stack().imap_port.to_string(), user, &password(user), mailbox])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(message).unwrap();
    assert!(child.wait().unwrap().success());
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Alice and Carol, each with the other's public key.
fn correspondents() -> (User, User) {
    let mut alice = User::new("alice@example.org");
    let mut carol = User::new("carol@example.com");
    carol.knows(&[&alice]);
    alice.knows(&[&carol]);
    (alice, carol)
}

/// Encrypts `message` from Alice to Carol, delivers it to Carol's
/// mailbox at the stack and returns what Dovecot stored (found by `tok`).
fn deliver_to_carol(alice: &User, message: &[u8], tok: &str, within_secs: u64) -> Vec<u8> {
    let copies = alice.encrypt(message, &["carol@example.com"]);
    let stack = stack();
    stack.inject("carol@example.com", &copies[0].message);
    let stored = stack.wait_for_matching("carol@example.com", tok.as_bytes(), 1, std::time::Duration::from_secs(within_secs));
    stored.into_iter().next().expect("waited for one")
}

/// A plaintext message with a token in its Message-ID.
fn plain_message(token: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: Carol <carol@example.com>\r\nSubject: {subject}\r\nMessage-ID: <{token}@example.org>\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n\
--b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b1--\r\n"
    )
    .into_bytes()
}

#[test]
fn encrypted_messages_read_decrypted_and_consistent_in_every_item() {
    let stack = stack();
    let (alice, carol) = correspondents();
    let proxy = Proxy::start(&carol, None, "");

    let tok = token("imap-dec");
    let plain = plain_message(&tok, "Quarterly numbers \u{e9}t\u{e9}", "The real figures: 42.\r\nSecond line.");
    let stored = deliver_to_carol(&alice, &plain, &tok, 20);
    assert!(!contains(&stored, b"The real figures"), "the provider holds ciphertext only");

    let through = probe(proxy.imap.port(), "carol@example.com", &tok, "INBOX");
    // What the client sees is what the OpenPGP core makes of the stored
    // message, byte for byte.
    let expected = to_crlf(&carol.decrypt(&stored).message).into_owned();
    assert_eq!(text(&through["whole"]), text(&expected));
    assert!(header(&through["whole"], "Sealpost-Status")
        .unwrap()
        .starts_with("decrypted; signature=good"));
    assert_eq!(header(&through["whole"], "Subject").unwrap(), "Quarterly numbers \u{e9}t\u{e9}");
    // Every way of reading it agrees.
    assert_eq!(text(&through["size"]), through["whole"].len().to_string());
    assert_eq!(through["chunks"], through["whole"]);
    assert_eq!([through["header"].clone(), through["text"].clone()].concat(), through["whole"]);
    assert_eq!(text(&through["part1"]), "The real figures: 42.\r\nSecond line.");
    assert_eq!(text(&through["partial"]), "eal figures: 42.\r\nSecond line.");
    assert_eq!(text(&through["part2"]), "AAECAwQFBgcICQ==");
    assert!(
        text(&through["ENVELOPE"]).contains("Quarterly numbers"),
        "{}",
        text(&through["ENVELOPE"])
    );
    assert!(!text(&through["ENVELOPE"]).contains("[...]"));
    // The preview a client shows under the subject is the start of the
    // decrypted text, the same whether asked lazily or not; BINARY gives
    // the attachment decoded.
    let preview = text(&through["preview"]);
    assert_eq!(preview, "\"The real figures: 42. Second line.\"");
    assert!(!preview.contains("PGP") && !preview.contains("[...]") && !preview.contains("-----"));
    assert_eq!(through["preview_lazy"], through["preview"]);
    assert_eq!(text(&through["binary1"]), "The real figures: 42.\r\nSecond line.");
    assert_eq!(through["binary2"], (0u8..10).collect::<Vec<u8>>());
    assert_eq!(text(&through["binary2size"]), "10");

    // The differential check: the same decrypted message stored in plain
    // text at Dovecot gets the same answers from Dovecot itself.
    let mailbox = format!("Plain-{tok}");
    append_directly("carol@example.com", &mailbox, &through["whole"]);
    let direct = probe(stack.imap_port, "carol@example.com", &tok, &mailbox);
    for item in [
        "whole",
        "size",
        "header",
        "text",
        "part1",
        "part1mime",
        "part2",
        "part11",
        "fields",
        "notfields",
        "partial",
        "BODYSTRUCTURE",
        "BODY",
        "ENVELOPE",
        "preview",
        "binary1",
        "binary2",
        "binary2size",
    ] {
        assert_eq!(
            text(&through[item]),
            text(&direct[item]),
            "{item} differs from Dovecot's answer for the plaintext"
        );
    }
    drop(proxy);
}

#[test]
fn plaintext_passes_byte_for_byte() {
    let stack = stack();
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-plain");
    stack.inject(
        "carol@example.com",
        &plain_message(&tok, "Plain =?utf-8?q?caf=C3=A9?=", "Nothing secret here."),
    );
    stack.wait_for_matching("carol@example.com", tok.as_bytes(), 1, std::time::Duration::from_secs(20));
    let through = probe(proxy.imap.port(), "carol@example.com", &tok, "INBOX");
    let direct = probe(stack.imap_port, "carol@example.com", &tok, "INBOX");
    // FLAGS may differ: \Recent goes to the first session that sees it.
    for (item, value) in through.iter().filter(|(k, _)| *k != "flags") {
        assert_eq!(text(value), text(&direct[item]), "{item} differs from a direct session");
    }
    assert!(header(&through["whole"], "Sealpost-Status").is_none());
}

#[test]
fn undecryptable_mail_is_shown_as_stored_with_the_reason() {
    let stack = stack();
    let alice = User::new("alice@example.org");
    let stranger = User::new("carol@example.com");
    let mut alice = alice;
    alice.knows(&[&stranger]);
    // Carol's proxy has a different key than the one the mail was
    // encrypted to.
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-undecryptable");
    deliver_to_carol(&alice, &plain_message(&tok, "For another key", "secret"), &tok, 20);
    let through = probe(proxy.imap.port(), "carol@example.com", &tok, "INBOX");
    let direct = probe(stack.imap_port, "carol@example.com", &tok, "INBOX");
    let (status, original) = without_status(&through["whole"]);
    assert!(status.starts_with("failed; reason="), "{status}");
    assert_eq!(text(&original), text(&direct["whole"]));
    assert_eq!(text(&through["size"]), through["whole"].len().to_string());
}

#[test]
fn uploads_are_stored_encrypted_and_read_back_in_clear() {
    let stack = stack();
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-draft");
    let marker = format!("draft-marker-{tok}");
    let draft = format!(
        "From: carol@example.com\r\nTo: bob@example.net\r\nBcc: dave@example.com\r\nSubject: Draft {marker}\r\nMessage-ID: <{tok}@example.com>\r\n\r\nUnfinished {marker}\r\n"
    );
    let script = r#"
port, user, pw, mailbox = sys.argv[1:5]
m = imap(port, user, pw)
m.create(mailbox)
typ, d = m.append(mailbox, "(\\Draft)", None, sys.stdin.buffer.read())
print(typ, d[0].decode())
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{}{script}", common::proxy::prelude()))
        .args([
            &proxy.imap.port().to_string(),
            "carol@example.com",
            &password("carol@example.com"),
            "Drafts",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(draft.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let answer = text(&out.stdout);
    assert!(answer.starts_with("OK [APPENDUID "), "{answer}");

    // On the provider's disk: ciphertext, the subject hidden.
    let stored: Vec<Vec<u8>> = stack
        .mailbox_messages("carol@example.com", "Drafts")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .filter(|m| contains(m, tok.as_bytes()))
        .collect();
    assert_eq!(stored.len(), 1);
    assert!(!contains(&stored[0], marker.as_bytes()), "the marker never reaches the provider");
    assert!(!contains(&stored[0], b"dave@example.com"), "neither does the Bcc");
    assert!(contains(&stored[0], b"multipart/encrypted"));

    // Through Sealpost: the draft exactly as written, Bcc included, with
    // no status and no wrapper.
    let through = probe(proxy.imap.port(), "carol@example.com", &tok, "Drafts");
    assert_eq!(text(&through["whole"]), draft);
    assert_eq!(text(&through["text"]), format!("Unfinished {marker}\r\n"));
    assert_eq!(text(&through["size"]), draft.len().to_string());
    assert!(text(&through["BODYSTRUCTURE"]).starts_with("(\"text\" \"plain\" (\"charset\" \"us-ascii\")"));
    assert!(text(&through["flags"]).contains("\\Draft"));
}

#[test]
fn an_own_copy_moved_by_copy_and_delete_keeps_its_ciphertext() {
    let stack = stack();
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-own-move");
    let draft = plain_message(&tok, "Own copy", "my own words");
    let (drafts, archive) = (format!("Own-{tok}"), format!("Moved-{tok}"));
    let script = r#"
port, user, pw, tok, drafts, archive, draft = sys.argv[1:8]
draft = base64.b64decode(draft)
m = imap(port, user, pw)
m.create(drafts); m.create(archive)
typ, d = m.append(drafts, None, None, draft)
assert typ == "OK", d
m.select(drafts)
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()[-1]
shown = m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
assert shown == draft, shown
typ, d = m.append(archive, None, None, shown)
assert typ == "OK", d
"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&draft);
    let port = proxy.imap.port().to_string();
    python(
        script,
        &[
            &port,
            "carol@example.com",
            &password("carol@example.com"),
            &tok,
            &drafts,
            &archive,
            &encoded,
        ],
    );
    let stored = |mailbox: &str| -> Vec<Vec<u8>> {
        stack
            .mailbox_messages("carol@example.com", mailbox)
            .iter()
            .map(|p| to_crlf(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    };
    let (original, moved) = (stored(&drafts), stored(&archive));
    assert_eq!((original.len(), moved.len()), (1, 1));
    assert!(contains(&original[0], b"multipart/encrypted") && !contains(&original[0], b"my own words"));
    assert_eq!(text(&moved[0]), text(&original[0]), "the moved copy is the original ciphertext");
    assert!(proxy
        .metrics_text()
        .contains("sealpost_imap_appends_total{outcome=\"original-ciphertext\"} 1"));
}

#[test]
fn reading_sets_seen_as_without_sealpost_and_peeking_does_not() {
    let (alice, carol) = correspondents();
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-seen");
    deliver_to_carol(&alice, &plain_message(&tok, "Seen or not", "text"), &tok, 20);
    let script = r#"
port, user, pw, tok = sys.argv[1:5]
m = imap(port, user, pw)
m.select("INBOX")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()[-1]
def flags():
    return m.uid("FETCH", uid, "(FLAGS)")[1][0].decode()
m.uid("FETCH", uid, "(BODY.PEEK[] BODYSTRUCTURE)")
print("after peek:", flags())
d = m.uid("FETCH", uid, "(BODY[TEXT])")[1]
print("answer:", d[-1].decode() if isinstance(d[-1], bytes) else "")
print("after read:", flags())
"#;
    let out = python(
        script,
        &[
            &proxy.imap.port().to_string(),
            "carol@example.com",
            &password("carol@example.com"),
            &tok,
        ],
    );
    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string();
    assert!(!line("after peek:").contains("\\Seen"), "{out}");
    assert!(line("after read:").contains("\\Seen"), "{out}");
}

#[test]
fn a_20_mb_encrypted_attachment_reads_whole_and_consistent() {
    use sha2::Digest;
    let stack = stack();
    let (alice, carol) = correspondents();
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-20mb");
    let line = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJ\r\n";
    let attachment = line.repeat(20 * 1024 * 1024 / line.len());
    let mut message = plain_message(&tok, "Big one", "See attachment.");
    let end = message.len() - b"--b1--\r\n".len();
    message.truncate(end);
    message.extend_from_slice(
        format!("--b1\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}--b1--\r\n")
            .as_bytes(),
    );
    let stored = deliver_to_carol(&alice, &message, &tok, 60);
    let expected = to_crlf(&carol.decrypt(&stored).message).into_owned();
    let script = r#"
import hashlib, re
port, user, pw, tok = sys.argv[1:5]
m = imap(port, user, pw)
m.select("INBOX")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()[-1]
size = re.search(rb"RFC822.SIZE (\d+)", m.uid("FETCH", uid, "(RFC822.SIZE)")[1][0]).group(1).decode()
whole = m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
part3 = m.uid("FETCH", uid, "(BODY.PEEK[3])")[1][0][1]
print(size, len(whole), hashlib.sha256(whole).hexdigest(), hashlib.sha256(part3).hexdigest())
"#;
    let out = python(
        script,
        &[
            &proxy.imap.port().to_string(),
            "carol@example.com",
            &password("carol@example.com"),
            &tok,
        ],
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    let hex = |b: &[u8]| sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(fields[0], expected.len().to_string(), "RFC822.SIZE");
    assert_eq!(fields[1], expected.len().to_string(), "BODY[] length");
    assert_eq!(fields[2], hex(&expected), "BODY[] is the decrypted message");
    assert_eq!(
        fields[3],
        hex(attachment.trim_end().as_bytes()),
        "the attachment part, byte for byte"
    );
    stack.remove_matching("carol@example.com", tok.as_bytes());
}

#[test]
fn a_restart_reads_decrypted_messages_from_the_encrypted_cache() {
    let (alice, carol) = correspondents();
    let tok = token("imap-cache");
    let marker = format!("cached-text-{tok}");
    deliver_to_carol(&alice, &plain_message(&tok, "Cache me", &marker), &tok, 20);

    let first = Proxy::start(&carol, None, "");
    let before = probe(first.imap.port(), "carol@example.com", &tok, "INBOX");
    let metrics = first.metrics_text();
    assert!(metrics.contains("sealpost_imap_messages_total{outcome=\"decrypted\"} 1"));
    assert!(
        metrics.contains("sealpost_imap_cache_lookups_total{result=\"miss\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("sealpost_imap_cache_bytes 0\n"), "{metrics}");
    // The client's commands were timed at the server (the first one is
    // LOGIN's, which the proxy sends itself).
    assert!(
        !metrics.contains("sealpost_upstream_command_seconds_count{protocol=\"imap\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealpost_upstream_command_seconds_count{protocol=\"imap\"}"),
        "{metrics}"
    );
    drop(first);
    // Nothing of the message is readable in the cache directory.
    let mut cached = Vec::new();
    for entry in walk(&carol.dir.path().join("cache")) {
        cached.push(std::fs::read(entry).unwrap());
    }
    assert!(!cached.is_empty());
    assert!(cached.iter().all(|c| !contains(c, marker.as_bytes()) && !contains(c, b"Cache me")));

    let second = Proxy::start(&carol, None, "");
    let after = probe(second.imap.port(), "carol@example.com", &tok, "INBOX");
    assert_eq!(text(&after["whole"]), text(&before["whole"]));
    let metrics = second.metrics_text();
    assert!(
        !metrics.contains("sealpost_imap_messages_total{outcome=\"decrypted\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sealpost_imap_messages_total{outcome=\"cached\"}"), "{metrics}");
    assert!(metrics.contains("sealpost_imap_cache_lookups_total{result=\"hit\"}"), "{metrics}");
    assert!(!metrics.contains("sealpost_imap_cache_lookups_total{result=\"miss\"}"), "{metrics}");
    assert!(!metrics.contains("sealpost_imap_cache_bytes 0\n"), "{metrics}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn append_policy_names_the_mailboxes_whose_uploads_are_encrypted() {
    let stack = stack();
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "[imap]\nappend_encrypt = [\"Drafts\"]\n");
    let tok = token("imap-policy");
    let script = r#"
port, user, pw, tok = sys.argv[1:5]
m = imap(port, user, pw)
for mailbox in ["Drafts", "Notes"]:
    m.create(mailbox)
    msg = f"From: carol@example.com\r\nSubject: {mailbox} {tok}\r\nMessage-ID: <{mailbox}-{tok}@example.com>\r\n\r\nbody of {mailbox} {tok}\r\n"
    typ, d = m.append(mailbox, None, None, msg.encode())
    assert typ == "OK", d
"#;
    python(
        script,
        &[
            &proxy.imap.port().to_string(),
            "carol@example.com",
            &password("carol@example.com"),
            &tok,
        ],
    );
    let stored = |mailbox: &str| -> Vec<u8> {
        stack
            .mailbox_messages("carol@example.com", mailbox)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .find(|m| contains(m, format!("{mailbox}-{tok}").as_bytes()))
            .unwrap_or_else(|| panic!("no message in {mailbox}"))
    };
    assert!(
        !contains(&stored("Drafts"), format!("body of Drafts {tok}").as_bytes()),
        "Drafts is encrypted"
    );
    assert!(
        contains(&stored("Notes"), format!("body of Notes {tok}").as_bytes()),
        "Notes is not in the list"
    );
    assert!(proxy.metrics_text().contains("sealpost_imap_appends_total{outcome=\"passed\"} 1"));
}

#[test]
fn every_login_form_reaches_the_account() {
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let script = r#"
import socket
port, tls_port, pw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
user = "carol@example.com"
def outcome(f):
    try:
        return f()[0]
    except imaplib.IMAP4.error as e:
        m = e.args[0]
        return "NO " + (m.decode() if isinstance(m, bytes) else str(m))
m = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=local_tls())
print("imaps login:", outcome(lambda: m.login(user, pw)))
m = imaplib.IMAP4("127.0.0.1", port); m.starttls(ssl_context=local_tls())
print("plain:", outcome(lambda: m.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + pw.encode())))
print("select:", m.select("INBOX")[0])
m = imaplib.IMAP4("127.0.0.1", port)
answers = iter([user.encode(), pw.encode()])
print("login mechanism:", outcome(lambda: m.authenticate("LOGIN", lambda _: next(answers))))
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rwb", buffering=0)
f.readline()
f.write(b"x1 AUTHENTICATE PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()) + b"\r\n")
print("sasl-ir:", f.readline().decode().split(" ")[1])
m = imaplib.IMAP4("127.0.0.1", port)
print("wrong password:", outcome(lambda: m.login(user, "not-the-password")))
m = imaplib.IMAP4("127.0.0.1", port)
print("unknown account:", outcome(lambda: m.login("mallory@example.com", "x")))
"#;
    let out = python(
        script,
        &[
            &proxy.imap.port().to_string(),
            &proxy.imaps.port().to_string(),
            &password("carol@example.com"),
        ],
    );
    for expected in [
        "imaps login: OK",
        "plain: OK",
        "select: OK",
        "login mechanism: OK",
        "sasl-ir: OK",
        "wrong password: NO [AUTHENTICATIONFAILED]",
        "unknown account: NO [AUTHENTICATIONFAILED] Sealpost has no account for this login",
    ] {
        assert!(out.lines().any(|l| l.starts_with(expected)), "expected {expected:?} in:\n{out}");
    }
}

#[test]
fn a_shown_message_uploaded_back_is_stored_as_its_original_ciphertext() {
    let stack = stack();
    let (alice, carol) = correspondents();
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-move");
    let original = deliver_to_carol(&alice, &plain_message(&tok, "Move me", "moving text"), &tok, 20);
    // What Outlook-style clients do for a move: fetch, upload elsewhere
    // (then delete the source).
    let archive = format!("Archive-{tok}");
    let script = r#"
port, user, pw, tok, archive = sys.argv[1:6]
m = imap(port, user, pw)
m.select("INBOX")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()[-1]
shown = m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
assert b"Sealpost-Status: decrypted" in shown
m.create(archive)
typ, d = m.append(archive, None, None, shown)
assert typ == "OK", d
edited = shown.replace(b"moving text", b"moving text, edited")
typ, d = m.append(archive, None, None, edited)
assert typ == "OK", d
"#;
    python(
        script,
        &[
            &proxy.imap.port().to_string(),
            "carol@example.com",
            &password("carol@example.com"),
            &tok,
            &archive,
        ],
    );
    let stored: Vec<Vec<u8>> = stack
        .mailbox_messages("carol@example.com", &archive)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(stored.len(), 2);
    let normalize = |m: &[u8]| to_crlf(m).into_owned();
    assert!(
        stored.iter().any(|m| normalize(m) == normalize(&original)),
        "the unchanged copy is the original ciphertext, byte for byte"
    );
    let edited = stored.iter().find(|m| normalize(m) != normalize(&original)).unwrap();
    assert!(
        !contains(edited, b"moving text"),
        "an edited copy is encrypted anew, never stored in clear"
    );
    assert!(contains(edited, b"multipart/encrypted"));
    assert!(proxy
        .metrics_text()
        .contains("sealpost_imap_appends_total{outcome=\"original-ciphertext\"} 1"));
}

#[test]
fn everyday_commands_answer_as_the_server_does() {
    let stack = stack();
    let carol = User::new("carol@example.com");
    let proxy = Proxy::start(&carol, None, "");
    let tok = token("imap-everyday");
    for n in 0..3 {
        stack.inject(
            "carol@example.com",
            &plain_message(&format!("{tok}-{n}"), &format!("Everyday {n}"), "hello"),
        );
    }
    stack.wait_for_matching("carol@example.com", tok.as_bytes(), 3, std::time::Duration::from_secs(20));
    // The same session, once through Sealpost and once directly; each
    // run works in its own pair of mailboxes. Answers are compared with
    // the mailbox names, UIDs and tags that differ between runs removed.
    let script = r#"
import re
port, user, pw, tok, run = sys.argv[1:6]
m = imap(port, user, pw)
src, dst = f"ev-{run}-{tok}", f"ev-{run}-{tok}-dst"
out = []
def note(name, r):
    typ, data = r
    text = b" ".join(x if isinstance(x, bytes) else b"|".join(x) for x in data if x is not None).decode(errors="replace")
    text = text.replace(src, "SRC").replace(dst, "DST")
    text = re.sub(r"\b\d{6,}\b", "N", text)
    text = re.sub(r" \([0-9.+ ]+ secs\)", "", text)
    out.append(f"{name}: {typ} {text}")
note("namespace", m.namespace())
# (imaplib's enable() checks the capabilities seen before login, which
# are Sealpost's own; the command itself goes to the server.)
typ, _ = m._simple_command("ENABLE", "CONDSTORE")
note("enable", (typ, m.untagged_responses.pop("ENABLED", [b""])))
m.create(src); m.create(dst)
typ, d = m.select("INBOX")
uids = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)[1][0].split()
note("search count", ("OK", [str(len(uids)).encode()]))
note("copy", m.uid("COPY", b",".join(uids).decode(), src))
m.select(src)
note("select src", m.response("EXISTS"))
note("status", m.status(src, "(MESSAGES UNSEEN)"))
note("list", m.list('""', src))
note("fetch flags modseq", m.fetch("1:*", "(FLAGS)"))
note("store", m.store("1", "+FLAGS", "(\\Flagged)"))
note("sort", m.sort("(SUBJECT)", "UTF-8", "ALL"))
note("thread", m.thread("REFERENCES", "UTF-8", "ALL"))
note("move", m._simple_command("UID", "MOVE", m.uid("SEARCH", None, "ALL")[1][0].split()[0].decode(), dst))
m.select(dst)
note("moved", m.response("EXISTS"))
note("expunge", (m.store("1:*", "+FLAGS", "(\\Deleted)")[0], [b""]))
note("close", m.close())
m.delete(src); m.delete(dst)
note("logout", m.logout())
print("\n".join(out))
"#;
    let pw = password("carol@example.com");
    let through = python(script, &[&proxy.imap.port().to_string(), "carol@example.com", &pw, &tok, "p"]);
    let direct = python(script, &[&stack.imap_port.to_string(), "carol@example.com", &pw, &tok, "d"]);
    assert_eq!(through, direct);
    for expected in [
        "copy: OK",
        "status: OK SRC (MESSAGES 3 UNSEEN 3)",
        "sort: OK 1 2 3",
        "move: OK",
        "moved: EXISTS 1",
    ] {
        assert!(through.contains(expected), "{expected:?} in\n{through}");
    }
}

/// One FETCH about many encrypted messages (and some plaintext ones among
/// them) decrypts them side by side, yet every answer reaches the client
/// in the server's order, each with its own message: whole messages (the
/// ciphertext is in the answer) and header downloads (Thunderbird's
/// `BODY.PEEK[HEADER.FIELDS (...)]`, the ciphertext fetched aside).
#[test]
fn a_fetch_of_many_encrypted_messages_answers_in_order() {
    use common::raw::Raw;
    use common::rawimap::Imap;
    let user = "dave@example.com";
    let dave = User::new(user);
    let proxy = Proxy::start(&dave, None, "");
    let mailbox = token("ordered");
    let mut direct = Imap::connect(user);
    direct.command(format!("CREATE {mailbox}").as_bytes());
    const COUNT: usize = 40;
    for i in 1..=COUNT {
        let message = format!(
            "From: a@example.org\r\nTo: {user}\r\nSubject: number {i:02}\r\nMessage-ID: <n{i}@example.org>\r\n\r\nBody of message {i:02}.\r\n"
        );
        let stored = if i % 7 == 0 {
            message.into_bytes()
        } else {
            dave.encrypt(message.as_bytes(), &[user]).remove(0).message
        };
        assert_eq!(direct.append(&mailbox, &stored).expect("stored"), i as u32);
    }
    let mut client = Raw::connect(proxy.imap);
    assert!(client.command("a1", &format!("LOGIN {user} {}", password(user))).contains("a1 OK"));
    assert!(client.command("a2", &format!("SELECT {mailbox}")).contains("a2 OK"));
    for (tag, items, shown) in [
        ("a3", "UID BODY.PEEK[]", "Body of message "),
        ("a4", "UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "Subject: number "),
    ] {
        let answer = client.command(tag, &format!("UID FETCH 1:* ({items})"));
        assert!(answer.contains(&format!("{tag} OK")), "{answer}");
        let starts: Vec<usize> = answer.match_indices(" FETCH (").map(|(at, _)| at).collect();
        assert_eq!(starts.len(), COUNT, "{answer}");
        for (n, window) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(answer.len());
            let one = &answer[*window..end];
            let i = n + 1;
            assert!(answer[..*window].ends_with(&format!("* {i}")), "answer {i} out of place: {one}");
            assert!(one.contains(&format!("UID {i}")), "{one}");
            assert!(one.contains(&format!("{shown}{i:02}")), "answer {i} shows another message: {one}");
        }
    }
    client.command("a5", &format!("DELETE {mailbox}"));
}
