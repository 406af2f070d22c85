//! Sessions from their first to their last byte, through a real `sealpost
//! serve` against the test stack: LOGOUT ends exactly as the server ends
//! it, SIGTERM closes sessions cleanly after the grace period (a started
//! upload or DATA completes first) and the process exits 0, listeners turn
//! away connections over their cap, and the side connections that fetch
//! encrypted messages stay within the provider's per-user login limit.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use common::proxy::{python, token, Proxy, Setup};
use common::raw::Raw;
use common::stack::{password, stack, LIMITED_USER};
use common::User;

/// A client logged in on the proxy's plain loopback listener.
fn logged_in(proxy: &Proxy, user: &str) -> Raw {
    let mut c = Raw::connect(proxy.imap);
    assert!(c.greeting.starts_with("* OK "), "{}", c.greeting);
    let answer = c.command("a1", &format!("LOGIN {user} {}", password(user)));
    assert!(answer.contains("a1 OK "), "{answer}");
    c
}

/// What the client hears when a shutdown closes its session.
const SHUTDOWN_BYE: &str = "* BYE [UNAVAILABLE] Sealpost is shutting down\r\n";

#[test]
fn logout_ends_with_the_servers_tagged_ok_and_nothing_after_it() {
    let alice = User::new("alice@example.org");
    let proxy = Proxy::start(&alice, None, "");
    let addr = proxy.imap;
    let sessions: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Raw::connect(addr);
                let answer = c.command("a1", &format!("LOGIN alice@example.org {}", password("alice@example.org")));
                assert!(answer.contains("a1 OK "), "{answer}");
                c.send(b"a2 LOGOUT\r\n");
                String::from_utf8(c.rest()).unwrap()
            })
        })
        .collect();
    let mut sessions_seen = std::collections::HashSet::new();
    for session in sessions {
        let after_logout = session.join().unwrap();
        // Exactly Dovecot's two lines, then the end of the stream: a
        // strict client aborts on anything after the tagged OK.
        let lines: Vec<&str> = after_logout.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 2, "{after_logout:?}");
        assert_eq!(lines[0], "* BYE Logging out\r\n");
        assert!(lines[1].starts_with("a2 OK Logout completed"), "{after_logout:?}");
        assert!(lines[1].ends_with("\r\n"), "{after_logout:?}");
    }
    // Each session's log lines carry its id, protocol, account and server.
    for line in proxy.log_text().lines().filter(|l| l.contains("IMAP client logged in")) {
        let span = line
            .split_once("session{")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(fields, _)| fields);
        let span = span.unwrap_or_else(|| panic!("no session span: {line}"));
        assert!(
            span.contains("protocol=\"imap\"") && span.contains("account=\"alice@example.org\"") && span.contains("upstream="),
            "{line}"
        );
        sessions_seen.insert(span.split(' ').next().unwrap().to_string());
    }
    assert_eq!(sessions_seen.len(), 24, "one session id each");
}

#[test]
fn sigterm_closes_sessions_after_the_grace_period_and_exits_zero() {
    let alice = User::new("alice@example.org");
    let mut proxy = Proxy::start_with(
        &alice,
        Setup {
            listen: "shutdown_grace = 3\n",
            ..Setup::default()
        },
    );
    let mailbox = token("shutdown");

    // A client in IDLE on a mailbox of its own.
    let mut idle = logged_in(&proxy, "alice@example.org");
    assert!(idle.command("a2", &format!("CREATE {mailbox}")).contains("a2 OK"));
    assert!(idle.command("a3", &format!("SELECT {mailbox}")).contains("a3 OK"));
    idle.send(b"a4 IDLE\r\n");
    assert!(idle.line().starts_with("+ "));

    // A client that has not logged in yet.
    let mut fresh = Raw::connect(proxy.imap);

    // An upload under way: literal announced, half of it sent.
    let mut upload = logged_in(&proxy, "alice@example.org");
    let subject = token("uploaded-during-shutdown");
    let message = format!("From: alice@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\nA draft.\r\n");
    upload.send(format!("a2 APPEND {mailbox} {{{}}}\r\n", message.len()).as_bytes());
    assert!(upload.line().starts_with("+ "));
    let (first, rest) = message.as_bytes().split_at(20);
    upload.send(first);

    // SMTP: a client between commands, and one in the middle of DATA.
    let mut smtp_idle = Raw::connect(proxy.smtp);
    assert!(smtp_idle.smtp("EHLO test").starts_with("250"));
    let mut smtp_data = Raw::connect(proxy.smtp);
    assert!(smtp_data.smtp("EHLO test").starts_with("250"));
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0alice@example.org\0{}", password("alice@example.org")));
    assert!(smtp_data.smtp(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    assert!(smtp_data.smtp("MAIL FROM:<alice@example.org>").starts_with("250"));
    assert!(smtp_data.smtp("RCPT TO:<alice@example.org>").starts_with("250"));
    assert!(smtp_data.smtp("DATA").starts_with("354"));
    // The Message-ID stays readable in the encrypted copy; the Subject not.
    let sent_id = token("sent-during-shutdown");
    smtp_data.send(
        format!("From: alice@example.org\r\nTo: alice@example.org\r\nSubject: stopping\r\nMessage-ID: <{sent_id}@example.org>\r\n\r\n")
            .as_bytes(),
    );

    assert!(proxy.http_get("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(proxy.http_get("/readyz").starts_with("HTTP/1.1 200 OK\r\n"));
    proxy.sigterm();
    // No new connections once draining, and the readiness probe says so
    // while the process, still healthy, lets its sessions finish.
    let refused_by = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(proxy.imap).is_ok() {
        assert!(Instant::now() < refused_by, "the IMAP listener still accepts after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = proxy.http_get("/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && ready.ends_with("draining: shutting down\n"),
        "{ready}"
    );
    assert!(proxy.http_get("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    // Past the grace period: the started upload and DATA still complete.
    std::thread::sleep(Duration::from_secs(4));
    upload.send(rest);
    upload.send(b"\r\n");
    let appended = upload.until("a2");
    assert!(appended.contains("a2 OK"), "{appended}");
    assert_eq!(upload.line(), SHUTDOWN_BYE);
    assert!(upload.rest().is_empty());
    smtp_data.send(b"Sent while Sealpost stops.\r\n.\r\n");
    let accepted = smtp_data.smtp_reply();
    assert!(accepted.starts_with("250 "), "{accepted}");
    assert_eq!(
        smtp_data.smtp_reply(),
        "421 4.3.2 localhost Sealpost is shutting down; try again later\r\n"
    );

    // The others heard why they were closed.
    let mut idle_lines = Vec::new();
    loop {
        let line = idle.line();
        assert!(!line.is_empty(), "closed without BYE after {idle_lines:?}");
        if line == SHUTDOWN_BYE {
            break;
        }
        // Only what IDLE announces (the upload arriving) comes before.
        assert!(line.starts_with("* ") && !line.starts_with("* BYE"), "{line:?}");
        idle_lines.push(line);
    }
    assert!(idle.rest().is_empty());
    assert_eq!(fresh.line(), SHUTDOWN_BYE);
    assert_eq!(
        smtp_idle.smtp_reply(),
        "421 4.3.2 localhost Sealpost is shutting down; try again later\r\n"
    );

    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("sealpost serve exits after the grace period");
    assert!(status.success(), "{status}\n{}", proxy.log_text());

    // Nothing was lost: the upload is in the mailbox, the message delivered.
    let direct = python(
        r#"
port, user, pw, mailbox, subject = sys.argv[1:6]
m = imaplib.IMAP4("127.0.0.1", int(port)); m.login(user, pw)
m.select(mailbox)
typ, d = m.search(None, "ALL")
print(len(d[0].split()))
"#,
        &[
            &stack().imap_port.to_string(),
            "alice@example.org",
            &password("alice@example.org"),
            &mailbox,
            &subject,
        ],
    );
    assert_eq!(direct.trim(), "1");
    stack().wait_for_matching("alice@example.org", sent_id.as_bytes(), 1, Duration::from_secs(20));
}

#[test]
fn connections_over_the_cap_are_refused_clearly_and_counted() {
    let alice = User::new("alice@example.org");
    let proxy = Proxy::start_with(
        &alice,
        Setup {
            listen: "max_connections = 2\n",
            ..Setup::default()
        },
    );
    let first = Raw::connect(proxy.imap);
    let _second = Raw::connect(proxy.imap);
    assert!(first.greeting.starts_with("* OK "), "{}", first.greeting);
    let mut third = Raw::connect(proxy.imap);
    assert_eq!(
        third.greeting,
        "* BYE [LIMIT] Sealpost: too many open connections (listen.max_connections); try again later\r\n"
    );
    assert!(third.rest().is_empty());

    // Each listener has its own cap.
    let _smtp = [Raw::connect(proxy.smtp), Raw::connect(proxy.smtp)];
    let mut smtp_third = Raw::connect(proxy.smtp);
    assert_eq!(
        smtp_third.greeting,
        "421 4.7.0 localhost Sealpost: too many open connections (listen.max_connections); try again later\r\n"
    );
    assert!(smtp_third.rest().is_empty());

    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("sealpost_connections_refused_total{protocol=\"imap\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealpost_connections_refused_total{protocol=\"smtp\"} 1"),
        "{metrics}"
    );
    // Refused connections are no sessions.
    assert!(metrics.contains("sealpost_sessions_active{protocol=\"imap\"} 2"), "{metrics}");
    assert!(metrics.contains("sealpost_sessions_active{protocol=\"smtp\"} 2"), "{metrics}");

    // A closed connection frees its place.
    drop(first);
    let freed_by = Instant::now() + Duration::from_secs(5);
    loop {
        let again = Raw::connect(proxy.imap);
        if again.greeting.starts_with("* OK ") {
            break;
        }
        assert!(Instant::now() < freed_by, "still refused: {}", again.greeting);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Eight sessions of one account read encrypted messages the client's
/// commands do not carry whole (header downloads), so Sealpost fetches
/// them on side connections. The account's server is the stack's address
/// that keeps Dovecot's default limit of 10 connections per user and IP:
/// eight sessions and a side connection each would be refused; a shared
/// pool of two fits.
#[test]
fn side_connections_are_pooled_within_the_providers_login_limit() {
    const SESSIONS: usize = 8;
    const PER_SESSION: usize = 3;
    let frank = User::new(LIMITED_USER);
    let mailbox = token("pool");
    let messages: Vec<String> = (0..SESSIONS * PER_SESSION)
        .map(|i| {
            let plain = format!(
                "From: {LIMITED_USER}\r\nTo: {LIMITED_USER}\r\nSubject: pooled secret {i}\r\nMessage-ID: <{mailbox}-{i}@example.com>\r\n\r\nBody {i}.\r\n"
            );
            let copy = frank.encrypt(plain.as_bytes(), &[LIMITED_USER]).remove(0);
            base64::engine::general_purpose::STANDARD.encode(copy.message)
        })
        .collect();
    // Stored straight at the provider, then the connection is closed, so
    // the proxy's sessions have the whole limit to themselves.
    let limited = &stack().imap_strict_host;
    let port = stack().imap_port.to_string();
    let pw = password(LIMITED_USER);
    let mut args = vec![limited.as_str(), port.as_str(), LIMITED_USER, pw.as_str(), mailbox.as_str()];
    args.extend(messages.iter().map(String::as_str));
    python(
        r#"
host, port, user, pw, mailbox = sys.argv[1:6]
m = imaplib.IMAP4(host, int(port)); m.starttls(); m.login(user, pw)
assert m.create(mailbox)[0] == "OK"
for encoded in sys.argv[6:]:
    assert m.append(mailbox, None, None, base64.b64decode(encoded))[0] == "OK"
m.logout()
"#,
        &args,
    );
    let upstream = format!("imap://{limited}:{}", stack().imap_port);
    // Eight sessions and two side connections fill the limit of ten; the
    // background indexer's login would be the eleventh.
    let proxy = Proxy::start_with(
        &frank,
        Setup {
            imap_upstream: Some(&upstream),
            extra: "[imap]\nbackground_indexing = false\n",
            ..Setup::default()
        },
    );
    let read = python(
        r#"
import threading
port, user, pw, mailbox, sessions, per = sys.argv[1:7]
sessions, per = int(sessions), int(per)
results = [None] * sessions
def session(n):
    try:
        m = imaplib.IMAP4("127.0.0.1", int(port)); m.login(user, pw)
        assert m.select(mailbox)[0] == "OK"
        seen = []
        for i in range(n * per + 1, n * per + per + 1):
            typ, d = m.fetch(str(i), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK", d
            seen.append(d[0][1].decode().strip())
        m.logout()
        results[n] = seen
    except Exception as e:
        results[n] = "session %d failed: %r" % (n, e)
threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"#,
        &[
            &proxy.imap.port().to_string(),
            LIMITED_USER,
            &password(LIMITED_USER),
            &mailbox,
            &SESSIONS.to_string(),
            &PER_SESSION.to_string(),
        ],
    );
    let results: Vec<serde_json::Value> = serde_json::from_str(read.trim()).unwrap();
    let mut subjects: Vec<String> = results
        .iter()
        .flat_map(|r| r.as_array().unwrap_or_else(|| panic!("{r}\n{}", proxy.log_text())).clone())
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = (0..SESSIONS * PER_SESSION).map(|i| format!("Subject: pooled secret {i}")).collect();
    expected.sort();
    // A side fetch refused by the provider shows the outer "[...]" instead.
    assert_eq!(subjects, expected, "{}", proxy.log_text());
    let metrics = proxy.metrics_text();
    let opened: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealpost_imap_side_connections_total{event=\"opened\"} "))
        .expect("side connections were used")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&opened), "{opened} side logins\n{metrics}");
    assert!(
        metrics.contains("sealpost_imap_side_connections_total{event=\"reused\"}"),
        "{metrics}"
    );
}
