//! The background indexer: once a client has logged in through Sealpost,
//! mail that arrives in INBOX is indexed without any search asking for
//! it (the indexer IDLEs on INBOX), so the next search answers from the
//! index at once.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{token, Proxy, Setup};
use common::raw::Raw;
use common::rawimap::Imap;
use common::stack::{password, LIMITED_USER};
use common::User;

/// The value of a metric without labels.
fn metric(proxy: &Proxy, name: &str) -> f64 {
    proxy
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `done` every 50 ms for up to `limit`; how long it took.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn new_mail_is_indexed_in_the_background() {
    // Its INBOX is used by no other test.
    let user = LIMITED_USER;
    let frank = User::new(user);
    let proxy = Proxy::start(&frank, None, "");
    let mut client = Raw::connect(proxy.imap);
    let answer = client.command("a1", &format!("LOGIN {user} {}", password(user)));
    assert!(answer.contains("a1 OK "), "{answer}");
    client.command("a2", "SELECT INBOX");
    // The first pass over the account's mailboxes ends with the log line.
    wait_for(Duration::from_secs(60), "the first indexing pass", || {
        proxy.log_text().contains("search index is up to date")
    });
    let before = metric(&proxy, "sealpost_search_indexed_total");

    let marker = format!("lateparrot{}", token("m").to_lowercase().replace(['-', '_'], ""));
    let message = format!("From: a@example.org\r\nTo: {user}\r\nSubject: arriving\r\n\r\nThe {marker} arrives.\r\n");
    let uid = Imap::connect(user).append("INBOX", message.as_bytes()).expect("delivered");
    let took = wait_for(Duration::from_secs(30), "indexing the new message", || {
        metric(&proxy, "sealpost_search_indexed_total") > before
    });
    eprintln!("a new message was indexed {took:?} after it arrived");

    // The search needs no indexing of its own.
    client.command("a3", "NOOP");
    let answer = client.command("a4", &format!("UID SEARCH BODY {marker}"));
    assert!(!answer.contains("Sealpost is indexing"), "{answer}");
    assert!(answer.contains(&format!("* SEARCH {uid}\r\n")), "{answer}");
    let backlog = metric(&proxy, "sealpost_search_backlog");
    assert_eq!(backlog, 0.0);

    // Dovecot offers QRESYNC: the new message was found in the answer to
    // one EXAMINE, not by listing every UID.
    let found = proxy.log_text();
    let found = found.lines().rfind(|l| l.contains("indexing a mailbox in the background")).unwrap();
    assert!(
        found.contains("found_by=\"qresync\"") || found.contains("found_by=qresync"),
        "{found}"
    );
    // An expunge at the server (VANISHED, in IDLE) is followed too.
    let indexed_in_inbox = || -> u64 {
        let (ok, status) = proxy.cli(&["index", "status"]);
        assert!(ok, "{status}");
        let inbox = status.lines().find(|l| l.trim_start().starts_with("INBOX:")).unwrap().to_string();
        inbox.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = indexed_in_inbox();
    let mut direct = Imap::connect(user);
    direct.command(b"SELECT INBOX");
    direct.command(format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)").as_bytes());
    direct.command(format!("UID EXPUNGE {uid}").as_bytes());
    wait_for(Duration::from_secs(30), "forgetting the expunged message", || {
        indexed_in_inbox() == before - 1
    });
    // After a restart, every mailbox the server reports unchanged (its
    // HIGHESTMODSEQ) costs one EXAMINE.
    drop(client);
    drop(proxy);
    let proxy = Proxy::start(&frank, None, "");
    let mut client = Raw::connect(proxy.imap);
    let answer = client.command("a1", &format!("LOGIN {user} {}", password(user)));
    assert!(answer.contains("a1 OK "), "{answer}");
    wait_for(Duration::from_secs(60), "the pass after the restart", || {
        proxy.log_text().contains("search index is up to date")
    });
    let pass = proxy.log_text();
    let pass = pass.lines().find(|l| l.contains("search index is up to date")).unwrap();
    let field = |name: &str| -> u64 {
        let at = pass.find(&format!(" {name}=")).unwrap_or_else(|| panic!("{pass}")) + name.len() + 2;
        pass[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(field("mailboxes") >= 1, "{pass}");
    assert_eq!(field("unchanged"), field("mailboxes"), "{pass}");
    assert_eq!(field("indexed"), 0, "{pass}");
    let message = format!("From: a@example.org\r\nTo: {user}\r\nSubject: again\r\n\r\nThe {marker} is back.\r\n");
    let before = metric(&proxy, "sealpost_search_indexed_total");
    let uid = Imap::connect(user).append("INBOX", message.as_bytes()).expect("delivered");
    wait_for(Duration::from_secs(30), "indexing the message after the restart", || {
        metric(&proxy, "sealpost_search_indexed_total") > before
    });
    client.command("a2", "SELECT INBOX");

    // The administrator's view, beside the running proxy.
    let (ok, status) = proxy.cli(&["index", "status"]);
    assert!(ok, "{status}");
    let inbox = status
        .lines()
        .find(|l| l.trim_start().starts_with("INBOX:"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(inbox.contains(" indexed, 0 missing (server asked "), "{status}");
    assert!(status.starts_with(&format!("{user}: ")), "{status}");
    // A rebuild empties the index; the proxy then indexes again to answer.
    let (ok, rebuilt) = proxy.cli(&["index", "rebuild", user]);
    assert!(ok && rebuilt.contains("index emptied"), "{rebuilt}");
    let (_, status) = proxy.cli(&["index", "status"]);
    assert!(status.contains("nothing indexed yet"), "{status}");
    let answer = client.command("a5", &format!("UID SEARCH BODY {marker}"));
    assert!(answer.contains("Sealpost is indexing"), "{answer}");
    assert!(answer.contains(&format!("* SEARCH {uid}\r\n")), "{answer}");
    let (ok, unknown) = proxy.cli(&["index", "rebuild", "nobody@example.org"]);
    assert!(!ok && unknown.contains("no account nobody@example.org"), "{unknown}");
}

/// Dave's proxy without the background indexer, a client logged in
/// through it, a fresh mailbox (`label`) and a marker word for the run.
struct OnDemand {
    dave: User,
    proxy: Proxy,
    client: Raw,
    mailbox: String,
    marker: String,
}

fn on_demand(label: &str, word: &str) -> OnDemand {
    on_demand_with(label, word, "")
}

/// [`on_demand`] with more `[imap]` settings.
fn on_demand_with(label: &str, word: &str, imap: &str) -> OnDemand {
    let dave = User::new(DAVE);
    let extra = format!("[imap]\nbackground_indexing = false\n{imap}");
    let proxy = Proxy::start_with(
        &dave,
        Setup {
            extra: &extra,
            ..Setup::default()
        },
    );
    let mailbox = token(label);
    let marker = format!("{word}{}", token("m").to_lowercase().replace(['-', '_'], ""));
    let mut client = Raw::connect(proxy.imap);
    assert!(client.command("a1", &format!("LOGIN {DAVE} {}", password(DAVE))).contains("a1 OK"));
    assert!(client.command("a2", &format!("CREATE {mailbox}")).contains("a2 OK"));
    OnDemand {
        dave,
        proxy,
        client,
        mailbox,
        marker,
    }
}

const DAVE: &str = "dave@example.com";

#[test]
fn messages_a_client_fetches_are_indexed_without_a_second_decryption() {
    let OnDemand {
        dave,
        proxy,
        mut client,
        mailbox,
        marker,
    } = on_demand("fetched", "quietheron");
    let user = DAVE;
    // Encrypted by a sender (dave to himself here) and delivered: Sealpost
    // has not seen them in clear.
    let mut direct = Imap::connect(user);
    for (i, word) in [&marker, "other"].iter().enumerate() {
        let message = format!("From: a@example.org\r\nTo: {user}\r\nSubject: number {i}\r\nDate: Mon, 1 Jun 2020 1{i}:00:00 +0000\r\n\r\nThe {word} text.\r\n");
        let sealed = &dave.encrypt(message.as_bytes(), &[user])[0].message;
        // The first arrived last.
        let arrival = if i == 0 {
            "01-Jan-2021 00:00:00 +0000"
        } else {
            "01-Jan-2020 00:00:00 +0000"
        };
        let append = format!("APPEND {mailbox} \"{arrival}\" {{{}+}}\r\n", sealed.len());
        let (_, done) = direct.command(&[append.as_bytes(), sealed.as_slice()].concat());
        assert!(
            done.starts_with(b"OK") || String::from_utf8_lossy(&done).contains(" OK "),
            "{}",
            String::from_utf8_lossy(&done)
        );
    }
    client.command("a4", &format!("SELECT {mailbox}"));
    // No background indexer: reading the first message indexes it.
    assert!(client.command("a5", "UID FETCH 1 (BODY.PEEK[])").contains(&marker));
    wait_for(Duration::from_secs(30), "indexing the fetched message", || {
        metric(&proxy, "sealpost_search_indexed_total") >= 1.0
    });
    assert_eq!(metric(&proxy, "sealpost_search_indexed_total"), 1.0);
    let answer = client.command("a6", &format!("UID SEARCH BODY {marker}"));
    // Only the message never read is indexed now.
    assert!(answer.contains("* OK Sealpost is indexing 1 messages"), "{answer}");
    assert!(answer.contains("* SEARCH 1\r\n"), "{answer}");
    // Its arrival time is asked of the server when a sort needs it.
    let answer = client.command("a7", "UID SORT (ARRIVAL) UTF-8 ALL");
    assert!(answer.contains("* SORT 2 1\r\n"), "{answer}");
    client.command("a8", &format!("DELETE {mailbox}"));
}

#[test]
fn uploads_are_indexed_from_what_the_client_sent() {
    // Every field bound: the user's directory and the proxy live on.
    let OnDemand {
        dave: _dave,
        proxy,
        mut client,
        mailbox,
        marker,
    } = on_demand("uploaded", "draftlynx");
    let user = DAVE;
    let message = format!("From: {user}\r\nSubject: a draft\r\n\r\nThe {marker} draft.\r\n");
    client.send(format!("a3 APPEND {mailbox} (\\Draft) {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
    let appended = client.until("a3");
    assert!(appended.contains("a3 OK [APPENDUID "), "{appended}");
    client.command("a4", &format!("SELECT {mailbox}"));
    wait_for(Duration::from_secs(30), "indexing the upload", || {
        metric(&proxy, "sealpost_search_indexed_total") >= 1.0
    });
    // Stored encrypted: what reached Dovecot holds no marker.
    let mut direct = Imap::connect(user);
    direct.command(format!("EXAMINE {mailbox}").as_bytes());
    let (stored, _) = direct.command(b"UID FETCH 1 (BODY.PEEK[])");
    let stored = stored.concat();
    assert!(common::contains(&stored, b"-----BEGIN PGP MESSAGE-----"));
    assert!(!common::contains(&stored, marker.as_bytes()));
    // Found without fetching and decrypting it.
    let answer = client.command("a5", &format!("UID SEARCH BODY {marker}"));
    assert!(!answer.contains("Sealpost is indexing"), "{answer}");
    assert!(answer.contains("* SEARCH 1\r\n"), "{answer}");
    assert_eq!(metric(&proxy, "sealpost_searches_total"), 1.0);
    client.command("a6", &format!("DELETE {mailbox}"));
}

#[test]
fn modseq_with_content_criteria_answers_as_the_server_does() {
    let OnDemand {
        dave: _dave,
        proxy: _proxy,
        mut client,
        mailbox,
        marker,
    } = on_demand("modseq", "otterglass");
    let user = DAVE;
    for (i, word) in [marker.as_str(), "plain", marker.as_str()].iter().enumerate() {
        let message = format!("From: {user}\r\nSubject: m{i}\r\n\r\nThe {word} text.\r\n");
        client.send(format!("a3{i} APPEND {mailbox} {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
        assert!(client.until(&format!("a3{i}")).contains("OK"));
    }
    client.command("a4", &format!("SELECT {mailbox}"));
    let mut direct = Imap::connect(user);
    direct.command(format!("SELECT {mailbox}").as_bytes());
    // Found by content through Sealpost; the same messages named by UID
    // directly: the same answer, mod-sequence included (ESEARCH tags
    // aside).
    let untagged = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| l.starts_with('*'))
            .map(|l| match l.find(") ") {
                Some(end) if l.starts_with("* ESEARCH (TAG ") => format!("* ESEARCH {}", &l[end + 2..]),
                _ => l,
            })
            .collect()
    };
    for (through, at_server) in [
        (format!("UID SEARCH MODSEQ 1 BODY {marker}"), "UID SEARCH MODSEQ 1 UID 1,3"),
        (
            format!("UID SEARCH RETURN (ALL COUNT) MODSEQ 1 BODY {marker}"),
            "UID SEARCH RETURN (ALL COUNT) MODSEQ 1 UID 1,3",
        ),
    ] {
        let ours = untagged(client.command("t1", &through).lines().map(str::to_string).collect());
        let (lines, _) = direct.command(at_server.as_bytes());
        let theirs = untagged(lines.iter().map(|l| String::from_utf8_lossy(l).trim_end().to_string()).collect());
        assert!(theirs.iter().any(|l| l.contains("MODSEQ")), "{theirs:?}");
        assert_eq!(ours, theirs, "{through}");
    }
    client.command("a5", &format!("DELETE {mailbox}"));
}

#[test]
fn a_message_over_the_size_limit_is_searched_by_its_header() {
    let OnDemand {
        dave: _dave,
        proxy,
        mut client,
        mailbox,
        marker,
    } = on_demand_with("oversized", "bulkywalrus", "max_message_size = 4096\n");
    let user = DAVE;
    let mut direct = Imap::connect(user);
    let big = format!(
        "From: a@example.org\r\nSubject: big {marker}\r\n\r\n{}The deepword is at the end.\r\n",
        "filler text\r\n".repeat(1000)
    );
    let small = "From: b@example.org\r\nSubject: small\r\n\r\nThe deepword is here.\r\n";
    for message in [big.as_str(), small] {
        direct.append(&mailbox, message.as_bytes()).expect("stored");
    }
    client.command("a3", &format!("SELECT {mailbox}"));
    // The big message is found by its header, and the answer says that
    // its body was not read; the small one is searched whole.
    let answer = client.command("a4", &format!("UID SEARCH SUBJECT {marker}"));
    assert!(answer.contains("* SEARCH 1\r\n"), "{answer}");
    assert!(
        answer.contains("* OK Sealpost read only the header of 1 messages over imap.max_message_size"),
        "{answer}"
    );
    // The small one came in the same FETCH answer, after the big one
    // was read past, and is searched whole.
    let answer = client.command("a5", "UID SEARCH BODY deepword");
    assert!(answer.contains("* SEARCH 2\r\n"), "{answer}");
    let answer = client.command("a6", "UID SORT (SUBJECT) UTF-8 ALL");
    assert!(answer.contains("* SORT 1 2\r\n"), "{answer}");
    let (ok, status) = proxy.cli(&["index", "status"]);
    assert!(ok, "{status}");
    assert!(
        status.contains(&format!(
            "{mailbox}: 2 indexed, 1 by their header only (over imap.max_message_size)"
        )),
        "{status}"
    );
    client.command("a8", &format!("DELETE {mailbox}"));
}

#[test]
fn hybrid_search_asks_the_server_about_plaintext_bodies_only() {
    let OnDemand {
        dave,
        proxy,
        mut client,
        mailbox,
        marker,
    } = on_demand_with("hybrid", "mixedheron", "search = \"hybrid\"\n");
    let user = DAVE;
    let mut direct = Imap::connect(user);
    let plain = format!("From: a@example.org\r\nSubject: plain\r\n\r\nThe {marker} in clear.\r\n");
    let secret = format!("From: b@example.org\r\nSubject: sealed\r\n\r\nThe {marker} sealed.\r\n");
    let sealed = dave.encrypt(secret.as_bytes(), &[user]).remove(0).message;
    let other = "From: c@example.org\r\nSubject: other\r\n\r\nNothing here.\r\n";
    for message in [plain.as_bytes(), &sealed, other.as_bytes()] {
        direct.append(&mailbox, message).expect("stored");
    }
    client.command("a3", &format!("SELECT {mailbox}"));
    // The encrypted body from the index, the plaintext one from the server.
    let answer = client.command("a4", &format!("UID SEARCH BODY {marker}"));
    assert!(answer.contains("* SEARCH 1 2\r\n"), "{answer}");
    let answer = client.command("a5", &format!("UID SEARCH NOT TEXT {marker}"));
    assert!(answer.contains("* SEARCH 3\r\n"), "{answer}");
    let answer = client.command("a6", &format!("UID SEARCH OR SUBJECT sealed BODY {marker} NOT FROM a@example.org"));
    assert!(answer.contains("* SEARCH 2\r\n"), "{answer}");
    let (ok, status) = proxy.cli(&["index", "status"]);
    let wanted = format!("{mailbox}: 3 indexed, 2 plaintext by their header");
    assert!(ok && status.contains(&wanted), "{wanted} in {status}");
    // Back to local: the plaintext messages are indexed whole again, and
    // the answers stay the same.
    drop(client);
    drop(proxy);
    let proxy = Proxy::start_with(
        &dave,
        Setup {
            extra: "[imap]\nbackground_indexing = false\n",
            ..Setup::default()
        },
    );
    let mut client = Raw::connect(proxy.imap);
    assert!(client.command("b1", &format!("LOGIN {user} {}", password(user))).contains("b1 OK"));
    client.command("b2", &format!("SELECT {mailbox}"));
    let answer = client.command("b3", &format!("UID SEARCH BODY {marker}"));
    assert!(answer.contains("* OK Sealpost is indexing 2 messages"), "{answer}");
    assert!(answer.contains("* SEARCH 1 2\r\n"), "{answer}");
    let (ok, status) = proxy.cli(&["index", "status"]);
    assert!(ok && status.contains(&format!("{mailbox}: 3 indexed, 0 missing")), "{status}");
    client.command("b4", &format!("DELETE {mailbox}"));
}
