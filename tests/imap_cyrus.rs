//! The IMAP proxy against the test stack's second IMAP server, Cyrus IMAP
//! 3.6, which differs from Dovecot where proxies break: it ends TLS after
//! LOGOUT without close_notify, announces LOGINDISABLED before STARTTLS,
//! and normalises what it stores. Login (LOGIN and AUTHENTICATE) and
//! LOGOUT byte for byte, uploads stored encrypted and read back through
//! every FETCH form, IDLE.

mod common;

use base64::Engine;
use common::proxy::{proxy_to_cyrus, python, token};
use common::raw::Raw;
use common::stack::{password, stack};
use common::User;

#[test]
fn logout_ends_with_cyrus_tagged_ok_although_cyrus_skips_close_notify() {
    let bob = User::new("bob@example.net");
    let proxy = proxy_to_cyrus(&bob);
    let addr = proxy.imap;
    let sessions: Vec<_> = (0..16)
        .map(|n| {
            std::thread::spawn(move || {
                let mut c = Raw::connect(addr);
                let pw = password("bob@example.net");
                // Half log in with LOGIN, half with AUTHENTICATE PLAIN.
                let login = if n % 2 == 0 {
                    format!("LOGIN bob@example.net {pw}")
                } else {
                    let response = base64::engine::general_purpose::STANDARD.encode(format!("\0bob@example.net\0{pw}"));
                    format!("AUTHENTICATE PLAIN {response}")
                };
                let answer = c.command("a1", &login);
                assert!(answer.contains("a1 OK "), "{answer}");
                c.send(b"a2 LOGOUT\r\n");
                String::from_utf8(c.rest()).unwrap()
            })
        })
        .collect();
    for session in sessions {
        // Cyrus's two lines, then the end: no BYE of Sealpost's after the
        // tagged OK, and no TLS library's text.
        assert_eq!(session.join().unwrap(), "* BYE LOGOUT received\r\na2 OK Completed\r\n");
    }
}

/// Through the proxy: an upload to a fresh mailbox is announced to a
/// client in IDLE there, stored encrypted at Cyrus, and read back whole
/// and in parts. Prints JSON: what Cyrus stored, and the proxy's answers.
const UPLOAD_AND_READ: &str = r#"
import socket, time
proxy, cyrus, host, ca, user, pw, mailbox = sys.argv[1:8]
message = base64.b64decode(sys.argv[8])
a = imaplib.IMAP4("127.0.0.1", int(proxy)); a.login(user, pw)
assert a.create(mailbox)[0] == "OK"
b = imaplib.IMAP4("127.0.0.1", int(proxy)); b.login(user, pw)
assert b.select(mailbox)[0] == "OK"
b.send(b"i1 IDLE\r\n")
assert b.readline().startswith(b"+"), "IDLE not accepted"
assert a.append(mailbox, None, None, message)[0] == "OK"
b.sock.settimeout(10)
announced = b""
while b" EXISTS" not in announced:
    announced += b.readline()
b.send(b"DONE\r\n")
while not b.readline().startswith(b"i1 "):
    pass
def value(m, items):
    typ, d = m.uid("FETCH", "1", items)
    assert typ == "OK", (items, d)
    return [p[1] for p in d if isinstance(p, tuple)]
direct = imaplib.IMAP4(host, int(cyrus)); direct.starttls(ssl.create_default_context(cafile=ca)); direct.login(user, pw)
assert direct.select(mailbox, readonly=True)[0] == "OK"
out = {"announced": announced.decode(), "stored": value(direct, "(BODY.PEEK[])")[0]}
assert a.select(mailbox)[0] == "OK"
for name, items in [("whole", "(BODY.PEEK[])"), ("text", "(BODY.PEEK[TEXT])"), ("subject", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
                    ("part1", "(BODY.PEEK[1])"), ("part2", "(BODY.PEEK[2])"), ("partial", "(BODY.PEEK[]<0.30>)")]:
    out[name] = value(a, items)[0]
typ, d = a.uid("FETCH", "1", "(RFC822.SIZE BODYSTRUCTURE ENVELOPE)")
out["meta"] = d[0] if isinstance(d[0], bytes) else d[0][0]
a.logout(); b.logout(); direct.logout()
print(json.dumps({k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in out.items()}))
"#;

#[test]
fn uploads_are_stored_encrypted_and_read_back_with_idle_announcing_them() {
    let carol = User::new("carol@example.com");
    let proxy = proxy_to_cyrus(&carol);
    let mailbox = token("cyrus");
    let secret = token("secret-body");
    let message = format!(
        "From: carol@example.com\r\nTo: carol@example.com\r\nSubject: Cyrus draft {secret}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{secret} first part\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsecond part\r\n--b1--\r\n"
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(&message);
    let out = python(
        UPLOAD_AND_READ,
        &[
            &proxy.imap.port().to_string(),
            &stack().cyrus_imap_port.to_string(),
            &stack().tls_name,
            stack().ca_file.to_str().unwrap(),
            "carol@example.com",
            &password("carol@example.com"),
            &mailbox,
            &encoded,
        ],
    );
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let field = |name: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(json[name].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };

    assert!(field("announced").contains("* 1 EXISTS"), "{}", field("announced"));
    // Cyrus holds ciphertext only.
    let stored = field("stored");
    assert!(stored.contains("-----BEGIN PGP MESSAGE-----"), "{stored}");
    assert!(!stored.contains(&secret), "the provider can read the upload:\n{stored}");
    // The client reads back exactly what it uploaded.
    let whole = field("whole");
    assert_eq!(whole, message);
    assert_eq!(field("subject"), format!("Subject: Cyrus draft {secret}\r\n\r\n"));
    assert!(field("text").contains(&format!("{secret} first part")), "{}", field("text"));
    assert!(field("partial").len() == 30 && whole.starts_with(&field("partial")));
    let meta = field("meta");
    let size: usize = meta
        .split("RFC822.SIZE ")
        .nth(1)
        .unwrap()
        .split([' ', ')'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(size, whole.len(), "{meta}");
    assert!(meta.to_ascii_lowercase().contains("\"plain\""), "{meta}");
    assert!(
        meta.contains(&format!("Cyrus draft {secret}")),
        "ENVELOPE shows the real subject: {meta}"
    );
    assert_eq!(field("part1"), format!("{secret} first part"));
    assert_eq!(field("part2"), "second part");
}
