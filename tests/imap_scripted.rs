//! The IMAP proxy against a scripted upstream, for what the real Dovecot
//! cannot show: extensions it does not have (Gmail's X-GM-*, OBJECTID)
//! must pass byte for byte, and a server without STARTTLS must get no
//! credentials. The script is a small Python server using the test
//! stack's certificate; everything it receives is logged for the test.

mod common;

use std::process::Child;
use std::time::Duration;

use common::proxy::{scripted_server, Proxy, Setup};
use common::raw::Raw;
use common::stack::stack;
use common::User;

/// A scripted IMAP server: argv = port, log file, certificate, key, mode
/// (`tls` for implicit TLS, `plain-no-starttls` for a server that never
/// offers STARTTLS). Answers a fixed conversation.
const SCRIPT: &str = r#"
import socket, ssl, sys
log, cert, key, mode = sys.argv[1:5]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(4)
print("ready", srv.getsockname()[1], flush=True)
caps = b"IMAP4rev1 LITERAL+ AUTH=PLAIN X-GM-EXT-1 ESEARCH OBJECTID COMPRESS=DEFLATE BINARY AUTH=SCRAM-SHA-256-PLUS"
while True:
    conn, _ = srv.accept()
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
        conn = ctx.wrap_socket(conn, server_side=True)
    f = conn.makefile("rwb", buffering=0)
    out = open(log, "ab")
    def send(b):
        f.write(b)
    greeting_caps = caps if mode == "tls" else b"IMAP4rev1 AUTH=PLAIN"
    send(b"* OK [CAPABILITY " + greeting_caps + b"] scripted ready\r\n")
    while True:
        line = f.readline()
        if not line:
            break
        out.write(line); out.flush()
        tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
        cmd = rest.upper()
        if cmd.startswith(b"CAPABILITY"):
            send(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
        elif cmd.startswith(b"LOGIN"):
            send(tag + b" OK [CAPABILITY " + caps + b"] logged in\r\n")
        elif cmd.startswith(b"SELECT"):
            send(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n" + tag + b" OK [READ-WRITE] selected\r\n")
        elif cmd.startswith(b"UID FETCH"):
            send(b"* 1 FETCH (UID 1 X-GM-LABELS (\\Inbox \"with space\") X-GM-MSGID 1278455344230334865 EMAILID (M6d99ac3275bb4e) FLAGS (\\Seen) MODSEQ (42))\r\n" + tag + b" OK fetched\r\n")
        elif cmd.startswith(b"UID SEARCH"):
            send(b"* ESEARCH (TAG \"" + tag + b"\") UID ALL 1:3\r\n" + tag + b" OK searched\r\n")
        elif cmd.startswith(b"X-WEIRD"):
            send(b"+ go on\r\n")
            data = f.read(5); out.write(data)
            rest = f.readline(); out.write(rest); out.flush()
            send(b"* X-WEIRD {3}\r\nabc\r\n" + tag + b" OK weird\r\n")
        elif cmd.startswith(b"LOGOUT"):
            send(b"* BYE bye\r\n" + tag + b" OK out\r\n")
            break
        else:
            send(tag + b" BAD unknown\r\n")
    conn.close()
"#;

struct Scripted {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Scripted {
    fn start(mode: &str) -> Scripted {
        let stack = stack();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.log");
        let (child, port) = scripted_server(
            SCRIPT,
            &[
                log.to_str().unwrap(),
                stack.server_cert.to_str().unwrap(),
                stack.server_key.to_str().unwrap(),
                mode,
            ],
        );
        Scripted {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy_to(user: &User, url: &str) -> Proxy {
    Proxy::start_with(
        user,
        Setup {
            imap_upstream: Some(url),
            account: "trust = \"ca\"\n",
            ..Setup::default()
        },
    )
}

#[test]
fn unknown_extensions_pass_byte_for_byte() {
    let upstream = Scripted::start("tls");
    let dave = User::new("dave@example.com");
    let proxy = proxy_to(&dave, &format!("imaps://localhost:{}", upstream.port));
    let mut c = Raw::connect(proxy.imap);

    let login = c.command("a1", "LOGIN dave@example.com secret");
    // Only what the proxy cannot honour is hidden.
    assert_eq!(
        login,
        "a1 OK [CAPABILITY IMAP4REV1 LITERAL+ AUTH=PLAIN X-GM-EXT-1 ESEARCH OBJECTID BINARY] Logged in through Sealpost\r\n"
    );
    assert_eq!(
        c.command("a2", "CAPABILITY"),
        "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN X-GM-EXT-1 ESEARCH OBJECTID BINARY\r\na2 OK done\r\n"
    );
    c.command("a3", "SELECT INBOX");
    assert_eq!(
        c.command("a4", "UID FETCH 1 (X-GM-LABELS X-GM-MSGID EMAILID FLAGS MODSEQ)"),
        "* 1 FETCH (UID 1 X-GM-LABELS (\\Inbox \"with space\") X-GM-MSGID 1278455344230334865 EMAILID (M6d99ac3275bb4e) FLAGS (\\Seen) MODSEQ (42))\r\na4 OK fetched\r\n"
    );
    // Gmail's own search syntax would show the server what the user looks
    // for: refused, never relayed.
    let refused = c.command("a5", "UID SEARCH RETURN (ALL) X-GM-RAW \"has:attachment\"");
    assert!(refused.starts_with("a5 NO [CANNOT] Sealpost does not send X-GM-RAW"), "{refused}");
    // A command the proxy has never heard of, with a synchronizing
    // literal: the server's `+` reaches the client, the data the server.
    c.send(b"a6 X-WEIRD {5}\r\n");
    assert_eq!(c.line(), "+ go on\r\n");
    c.send(b"hello tail\r\n");
    assert_eq!(c.until("a6"), "* X-WEIRD {3}\r\nabc\r\na6 OK weird\r\n");
    // COMPRESS would put a deflate stream under the proxy: refused, and
    // the session goes on uncompressed.
    assert!(c.command("a7", "COMPRESS DEFLATE").starts_with("a7 NO [CANNOT]"));
    assert_eq!(c.command("a8", "LOGOUT"), "* BYE bye\r\na8 OK out\r\n");

    let received = upstream.received();
    for line in [
        "a4 UID FETCH 1 (X-GM-LABELS X-GM-MSGID EMAILID FLAGS MODSEQ)\r\n",
        "a6 X-WEIRD {5}\r\nhello tail\r\n",
        "a8 LOGOUT\r\n",
    ] {
        assert!(received.contains(line), "the server did not get {line:?} as sent:\n{received}");
    }
    assert!(!received.contains("COMPRESS"));
    assert!(!received.contains("has:attachment"));
}

#[test]
fn a_server_without_starttls_gets_no_credentials() {
    let upstream = Scripted::start("plain-no-starttls");
    let dave = User::new("dave@example.com");
    let proxy = proxy_to(&dave, &format!("imap://localhost:{}", upstream.port));
    let mut c = Raw::connect(proxy.imap);
    let answer = c.command("a1", "LOGIN dave@example.com secret");
    assert_eq!(
        answer,
        format!(
            "a1 NO [UNAVAILABLE] Sealpost: localhost:{} does not offer STARTTLS; refusing to send anything without TLS\r\n",
            upstream.port
        )
    );
    std::thread::sleep(Duration::from_millis(200));
    let received = upstream.received();
    assert!(
        !received.contains("secret") && !received.to_ascii_uppercase().contains("LOGIN"),
        "{received}"
    );
}
