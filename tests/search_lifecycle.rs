//! The search index's life cycle (issue #11): what Sealpost answers to
//! SEARCH over encrypted mail while its index is being built, after a
//! restart, after an EXPUNGE or a new UIDVALIDITY at the server, for mail
//! delivered while a client is connected; and that nothing it keeps in
//! `data_dir` holds a word of that mail in clear.
//!
//! Real test stack only (Dovecot and Postfix from
//! `deploy/teststack/start.sh`). Every test has its own proxy, whose
//! `data_dir` is its [`User`]'s fresh key store (so a new proxy for the
//! same user finds the index of the one before), its own mailboxes of
//! [`USER`] with unique names (deleted at the end), and marker words of
//! its own for this run ([`Markers`]: ASCII ones and non-ASCII ones). The
//! messages ([`corpus`]) carry the markers in known places (body, subject,
//! an encoded-word subject; 8bit, quoted-printable and base64; single
//! part and multipart/alternative), so each answer is checked twice:
//! against the UIDs the corpus says, and against what Dovecot itself
//! answers for the same command about the same messages stored in clear
//! (APPENDed directly to a mailbox of their own, in the same order, so
//! UIDs and sequence numbers correspond). The encrypted copies are sealed
//! as Sealpost seals a client's upload, but stored directly: an upload
//! through Sealpost is indexed on its way, and these tests need mail the
//! index has not seen.
//!
//! Each test ends by walking its proxy's whole `data_dir` and checking
//! that no file holds a marker in any form Sealpost could have written it
//! (as written, in lower or upper case, in its search form); the files
//! checked are printed (`cargo test --test search_lifecycle --
//! --nocapture`).

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use base64::Engine;
use common::proxy::{python, token, Proxy};
use common::rawimap::{cut, ok, show, Imap, Mailbox};
use common::stack::password;
use common::{contains, within, User};
use sealpost::search::normalize::normalize;

/// The index is filled only by searches (and reads): the background
/// indexer would make whether a search announces indexing a race.
const ON_DEMAND: &str = "[imap]\nbackground_indexing = false\n";

/// Whose mailboxes the tests use.
const USER: &str = "dave@example.com";
/// Who sends mail to [`USER`] through Sealpost's SMTP proxy.
const SENDER: &str = "alice@example.org";
/// How Sealpost announces that it indexes before it answers.
const NOTE: &str = "* OK Sealpost is indexing ";

// ---------------------------------------------------------------------------
// Markers and messages
// ---------------------------------------------------------------------------

/// Words that occur only in this run's messages of one test.
struct Markers {
    /// The run's id, a part of every marker.
    id: String,
    /// ASCII, in bodies.
    body: String,
    /// ASCII, in Subject fields.
    subject: String,
    /// Latin with diacritics, in bodies and in encoded-word subjects.
    latin: String,
    /// Cyrillic, in bodies.
    cyrillic: String,
}

impl Markers {
    fn new(label: &str) -> Markers {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        let id = format!("{:012x}", hasher.finish() >> 16);
        Markers {
            body: format!("kestrel{label}{id}"),
            subject: format!("heron{label}{id}"),
            latin: format!("zwölfmöwe{id}"),
            cyrillic: format!("ёжиклес{id}"),
            id,
        }
    }

    fn words(&self) -> [&str; 4] {
        [&self.body, &self.subject, &self.latin, &self.cyrillic]
    }
}

/// Message `i` of a corpus has the body marker.
fn has_body(i: usize) -> bool {
    i.is_multiple_of(3)
}

/// ... the subject marker in its Subject.
fn has_subject(i: usize) -> bool {
    i % 5 == 1
}

/// ... the Latin marker in its body.
fn has_latin(i: usize) -> bool {
    i % 4 == 2
}

/// ... the Latin marker in an encoded word of its Subject.
fn has_latin_subject(i: usize) -> bool {
    i % 8 == 5
}

/// ... the Cyrillic marker in its body.
fn has_cyrillic(i: usize) -> bool {
    i % 7 == 3
}

/// The UIDs (1-based positions) of the first `count` messages that `pred`
/// selects.
fn expected(count: usize, pred: fn(usize) -> bool) -> Vec<u32> {
    (0..count).filter(|&i| pred(i)).map(|i| i as u32 + 1).collect()
}

/// `count` messages, the markers placed as the `has_*` functions say.
fn corpus(m: &Markers, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| message(m, i)).collect()
}

fn message(m: &Markers, i: usize) -> Vec<u8> {
    let mut lines = vec![format!("Hello Dave, this is note {i} of the life-cycle corpus.")];
    if has_body(i) {
        lines.push(format!("The {} figures are in.", m.body));
    }
    if has_latin(i) {
        lines.push(format!("Grüße vom {} am See.", m.latin));
    }
    if has_cyrillic(i) {
        lines.push(format!("Привет, {} и друзья.", m.cyrillic));
    }
    lines.push("Regards, Alice".into());
    let text = lines.join("\r\n") + "\r\n";
    let mut subject = format!("Note {i}");
    if has_subject(i) {
        subject.push_str(&format!(" about {}", m.subject));
    }
    if has_latin_subject(i) {
        let word = base64::engine::general_purpose::STANDARD.encode(format!("für {}", m.latin));
        subject.push_str(&format!(" =?UTF-8?B?{word}?="));
    }
    let header = format!(
        "From: Alice <{SENDER}>\r\nTo: Dave <{USER}>\r\nSubject: {subject}\r\nDate: Mon, 3 Mar 2025 10:{:02}:00 +0000\r\n\
Message-ID: <life-{i}-{}@example.org>\r\nMIME-Version: 1.0\r\n",
        i % 60,
        m.id
    );
    let encoding = (i / 2) % 3;
    if i % 6 == 4 {
        let html = format!("<html><body><p>{}</p></body></html>\r\n", lines.join("<br>\r\n"));
        format!(
            "{header}Content-Type: multipart/alternative; boundary=\"alt-{i}\"\r\n\r\n--alt-{i}\r\n{}\r\n--alt-{i}\r\n{}\r\n--alt-{i}--\r\n",
            part("text/plain", &text, encoding),
            part("text/html", &html, (encoding + 1) % 3)
        )
        .into_bytes()
    } else {
        format!("{header}{}", part("text/plain", &text, encoding)).into_bytes()
    }
}

/// A part's header fields, blank line and body: `text` as 8bit (0),
/// quoted-printable (1) or base64 (2).
fn part(content_type: &str, text: &str, encoding: usize) -> String {
    let (cte, body) = match encoding {
        0 => ("8bit", text.to_string()),
        1 => ("quoted-printable", quoted_printable(text)),
        _ => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
            ("base64", lines.join("\r\n") + "\r\n")
        }
    };
    format!("Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}")
}

/// Quoted-printable for short lines (no soft breaks needed).
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        for &b in line.as_bytes() {
            if (b' '..=b'~').contains(&b) && b != b'=' {
                out.push(b as char);
            } else {
                out.push_str(&format!("={b:02X}"));
            }
        }
        out.push_str("\r\n");
    }
    out.truncate(out.len() - 2);
    out
}

/// `s` as a non-synchronizing literal (LITERAL+).
fn lit(s: &str) -> String {
    format!("{{{}+}}\r\n{s}", s.len())
}

/// The searches every test asks; the first few have their UIDs checked
/// against the corpus by [`check_corpus_answers`].
fn queries(m: &Markers) -> Vec<String> {
    vec![
        format!("UID SEARCH BODY {}", m.body),
        format!("UID SEARCH SUBJECT {}", m.subject),
        format!("UID SEARCH CHARSET UTF-8 TEXT {}", lit(&m.latin.to_uppercase())),
        format!("UID SEARCH CHARSET UTF-8 BODY {}", lit(&m.cyrillic)),
        format!("SEARCH BODY {}", m.body.to_uppercase()),
        format!("SEARCH CHARSET UTF-8 SUBJECT {}", lit(&m.latin)),
        format!("UID SEARCH OR BODY {} SUBJECT {}", m.body, m.subject),
        format!("SEARCH NOT BODY {}", m.body),
        format!("UID SEARCH BODY nowhere{}", m.id),
    ]
}

/// The UIDs the first four [`queries`] must find among `count` corpus
/// messages, less those expunged.
fn check_corpus_answers(label: &str, answers: &[Answer], count: usize, expunged: &[u32]) {
    let want = |pred: fn(usize) -> bool| -> Vec<u32> { expected(count, pred).into_iter().filter(|u| !expunged.contains(u)).collect() };
    let wants = [
        want(has_body),
        want(has_subject),
        want(|i| has_latin(i) || has_latin_subject(i)),
        want(has_cyrillic),
    ];
    for (answer, want) in answers.iter().zip(wants) {
        assert!(!want.is_empty(), "{label}: the corpus exercises {}", answer.command);
        assert_eq!(answer.hits(), want, "{label}: {}: {}", answer.command, answer.show());
    }
}

// ---------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------

/// One command's answer.
struct Answer {
    command: String,
    untagged: Vec<Vec<u8>>,
    done: Vec<u8>,
}

impl Answer {
    /// The `* SEARCH` line.
    fn search_line(&self) -> Option<String> {
        self.untagged
            .iter()
            .find(|l| l.starts_with(b"* SEARCH"))
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
    }

    /// The numbers of the `* SEARCH` line.
    fn hits(&self) -> Vec<u32> {
        let line = self
            .search_line()
            .unwrap_or_else(|| panic!("{}: no * SEARCH in {}", self.command, self.show()));
        line["* SEARCH".len()..].split_whitespace().map(|n| n.parse().unwrap()).collect()
    }

    /// How many messages Sealpost said it indexes first, if it did.
    fn indexing(&self) -> Option<u32> {
        let notes: Vec<u32> = self
            .untagged
            .iter()
            .filter_map(|l| l.strip_prefix(NOTE.as_bytes()))
            .map(|rest| {
                let rest = String::from_utf8_lossy(rest);
                rest.split(' ').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(notes.len() <= 1, "{}: one indexing note at most: {}", self.command, self.show());
        notes.first().copied()
    }

    fn show(&self) -> String {
        let mut all: Vec<u8> = self.untagged.concat();
        all.extend_from_slice(&self.done);
        cut(&show(&all))
    }
}

/// Sends `command`, which must succeed.
fn ask(imap: &mut Imap, command: &str) -> Answer {
    let (untagged, done) = imap.command(command.as_bytes());
    let answer = Answer {
        command: command.split("\r\n").next().unwrap().to_string(),
        untagged,
        done,
    };
    assert!(ok(&answer.done), "{}: {}", answer.command, answer.show());
    answer
}

/// What a SELECT or EXAMINE reported.
struct Selected {
    exists: u32,
    uidvalidity: u32,
}

fn select(imap: &mut Imap, how: &str, mailbox: &str) -> Selected {
    let answer = ask(imap, &format!("{how} {mailbox}"));
    let text: Vec<String> = answer.untagged.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let exists = text.iter().find_map(|l| exists(l.as_bytes())).expect("EXISTS");
    let uidvalidity = text
        .iter()
        .find_map(|l| l.split("[UIDVALIDITY ").nth(1).and_then(|r| r.split(']').next()?.parse().ok()))
        .expect("UIDVALIDITY");
    Selected { exists, uidvalidity }
}

/// `n` of a `* n EXISTS` line.
fn exists(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("* ")?.trim_end().strip_suffix(" EXISTS")?.parse().ok()
}

/// `n` of a `* n EXPUNGE` line.
fn expunge(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("* ")?.trim_end().strip_suffix(" EXPUNGE")?.parse().ok()
}

/// A session through `proxy` as [`USER`], whose key `user` holds.
fn through(proxy: &Proxy, user: &User) -> Imap {
    Imap::through_proxy(proxy.imap, &user.dir.path().join("tls/local-cert.pem"), USER)
}

fn logout(mut imap: Imap) {
    let _ = imap.try_command(b"LOGOUT");
}

/// Each command to Dovecot about the plaintext copy (`plain`) and through
/// Sealpost about the encrypted one (`sealed`): the `* SEARCH` lines must
/// be equal. Sealpost's answers.
fn same_as_dovecot(label: &str, sealed: &mut Imap, plain: &mut Imap, commands: &[String]) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut differ = Vec::new();
    for command in commands {
        let theirs = ask(plain, command);
        let ours = ask(sealed, command);
        if ours.search_line().is_none() || ours.search_line() != theirs.search_line() {
            differ.push(format!(
                "{}\n    Sealpost: {}\n    Dovecot:  {}",
                ours.command,
                ours.show(),
                theirs.show()
            ));
        }
        answers.push(ours);
    }
    assert!(differ.is_empty(), "{label}: answers differ from Dovecot's:\n{}", differ.join("\n"));
    answers
}

/// A mailbox pair of [`USER`]: `sealed` filled with the messages sealed as
/// Sealpost seals uploads (stored encrypted), `plain` with the same
/// messages in clear, in the same order; both directly at Dovecot.
struct Pair {
    sealed: Mailbox,
    plain: Mailbox,
}

fn fill(user: &User, label: &str, messages: &[Vec<u8>], m: &Markers) -> Pair {
    let run = token(label);
    let pair = Pair {
        sealed: Mailbox {
            user: USER,
            name: format!("life-sealed-{run}"),
            at: Imap::connect,
        },
        plain: Mailbox {
            user: USER,
            name: format!("life-plain-{run}"),
            at: Imap::connect,
        },
    };
    let mut direct = Imap::connect(USER);
    for name in [&pair.sealed.name, &pair.plain.name] {
        ask(&mut direct, &format!("CREATE {name}"));
    }
    // Sealed as Sealpost seals an upload, but stored directly: uploads
    // through Sealpost are indexed as they pass, and these tests need
    // mail the index has not seen.
    std::thread::scope(|scope| {
        let sealed = scope.spawn(|| {
            let mut imap = Imap::connect(USER);
            for (i, message) in messages.iter().enumerate() {
                let sealed = sealpost::message::seal_for_self(message, &user.email, &user.key).expect("sealed");
                assert_eq!(append(&mut imap, &pair.sealed.name, &sealed), i as u32 + 1, "{label}: sealed");
            }
            logout(imap);
        });
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(append(&mut direct, &pair.plain.name, message), i as u32 + 1, "{label}: directly");
        }
        sealed.join().unwrap();
    });
    // The server holds ciphertext only.
    select(&mut direct, "EXAMINE", &pair.sealed.name);
    let stored = ask(&mut direct, "FETCH 1:* (BODY.PEEK[])");
    let stored: Vec<&Vec<u8>> = stored.untagged.iter().filter(|l| contains(l, b" FETCH (")).collect();
    assert_eq!(stored.len(), messages.len());
    for message in stored {
        assert!(contains(message, b"-----BEGIN PGP MESSAGE-----"), "{label}: stored encrypted");
        assert_eq!(holds_marker(message, m), None, "{label}: the server sees a marker");
    }
    logout(direct);
    pair
}

/// APPENDs `message` to `mailbox` in one write (a LITERAL+ literal: no
/// round trip for a continuation, no small segment held back by Nagle's
/// algorithm); its UID.
fn append(imap: &mut Imap, mailbox: &str, message: &[u8]) -> u32 {
    let mut command = format!("a1 APPEND {mailbox} {{{}+}}\r\n", message.len()).into_bytes();
    command.extend_from_slice(message);
    command.extend_from_slice(b"\r\n");
    imap.write_raw(&command);
    let (_, done) = imap.finish("a1");
    assert!(ok(&done), "APPEND: {}", show(&done));
    let text = String::from_utf8_lossy(&done);
    text.split("[APPENDUID ")
        .nth(1)
        .and_then(|r| r.split(']').next()?.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("APPENDUID in {text}"))
}

// ---------------------------------------------------------------------------
// At rest
// ---------------------------------------------------------------------------

/// Every form in which a marker could have been written: as written, in
/// lower and upper case, in Sealpost's search form.
fn forms(m: &Markers) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for word in m.words() {
        for form in [
            word.to_string(),
            word.to_lowercase(),
            word.to_uppercase(),
            normalize(word.as_bytes()),
        ] {
            if !out.iter().any(|(f, _)| *f == form) {
                out.push((form.clone(), form.into_bytes()));
            }
        }
    }
    out
}

/// The first marker form found in `bytes` (ASCII ones in any case).
fn holds_marker(bytes: &[u8], m: &Markers) -> Option<String> {
    let lower = bytes.to_ascii_lowercase();
    forms(m).into_iter().find_map(|(name, form)| {
        let found = contains(bytes, &form) || (form.is_ascii() && contains(&lower, &form.to_ascii_lowercase()));
        found.then_some(name)
    })
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        if kind.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Walks the whole `data_dir`: no file may hold a marker. Also checks that
/// there is an index database to check. Prints the files checked.
fn assert_nothing_readable(label: &str, data_dir: &Path, m: &Markers) {
    let mut files = Vec::new();
    files_under(data_dir, &mut files);
    files.sort();
    let mut listed = Vec::new();
    let mut leaks = Vec::new();
    let mut total = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        total += bytes.len();
        let name = file.strip_prefix(data_dir).unwrap().display().to_string();
        if let Some(marker) = holds_marker(&bytes, m) {
            leaks.push(format!("{name} holds {marker:?}"));
        }
        listed.push(format!("{name} ({})", bytes.len()));
    }
    let databases: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "search.db") && f.strip_prefix(data_dir.join("index")).is_ok())
        .collect();
    assert!(
        databases.iter().any(|f| std::fs::metadata(f).unwrap().len() > 0),
        "{label}: an index database under data_dir/index: {listed:?}"
    );
    assert!(leaks.is_empty(), "{label}: plaintext in data_dir: {leaks:?}");
    eprintln!(
        "{label}: at rest: {} files ({total} bytes) in data_dir, none with a marker in any of {} forms: {}",
        files.len(),
        forms(m).len(),
        listed.join(", ")
    );
}

/// Stops the proxy as a service manager does, and checks it exits 0.
fn stop(mut proxy: Proxy, label: &str, m: &Markers) {
    proxy.sigterm();
    let status = proxy.wait_exit(Duration::from_secs(20)).expect("Sealpost exits on SIGTERM");
    assert!(status.success(), "{label}: Sealpost exited with {status}");
    // Not asserted (outside data_dir), but worth knowing.
    match holds_marker(proxy.log_text().as_bytes(), m) {
        Some(marker) => eprintln!("{label}: note: the proxy's log (RUST_LOG=sealpost=debug) holds {marker:?}"),
        None => eprintln!("{label}: the proxy's log holds no marker"),
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The index is built once: a restarted proxy on the same data_dir
/// answers the same, from the index, without indexing again.
#[test]
fn index_survives_a_restart() {
    let started = Instant::now();
    let label = "restart";
    let user = User::new(USER);
    let m = Markers::new(label);
    let messages = corpus(&m, 20);
    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let pair = fill(&user, label, &messages, &m);
    let queries = queries(&m);

    let mut plain = Imap::connect(USER);
    select(&mut plain, "EXAMINE", &pair.plain.name);
    let mut sealed = through(&proxy, &user);
    select(&mut sealed, "SELECT", &pair.sealed.name);
    let first = same_as_dovecot(label, &mut sealed, &mut plain, &queries);
    assert_eq!(first[0].indexing(), Some(20), "the first search indexes: {}", first[0].show());
    for answer in &first[1..] {
        assert_eq!(answer.indexing(), None, "indexed already: {}", answer.show());
    }
    check_corpus_answers(label, &first, messages.len(), &[]);
    // The decrypted messages pass through the cache too.
    let fetched = ask(&mut sealed, "UID FETCH 1:4 (BODY.PEEK[])");
    assert!(
        contains(&fetched.untagged.concat(), m.body.as_bytes()),
        "decrypted: {}",
        fetched.show()
    );
    logout(sealed);
    assert_nothing_readable(&format!("{label} (running)"), user.dir.path(), &m);
    stop(proxy, label, &m);

    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let mut sealed = through(&proxy, &user);
    select(&mut sealed, "EXAMINE", &pair.sealed.name);
    let mut again_queries = queries.clone();
    // Asked for the first time: answered from what the index kept.
    again_queries.push(format!("SEARCH CHARSET UTF-8 TEXT {}", lit(&m.cyrillic.to_uppercase())));
    let again = same_as_dovecot(&format!("{label} (restarted)"), &mut sealed, &mut plain, &again_queries);
    for answer in &again {
        assert_eq!(answer.indexing(), None, "after a restart the index is there: {}", answer.show());
    }
    for (before, after) in first.iter().zip(&again) {
        assert_eq!(before.search_line(), after.search_line(), "{}", before.command);
    }
    check_corpus_answers(label, &again, messages.len(), &[]);
    logout(sealed);
    logout(plain);
    stop(proxy, label, &m);
    assert_nothing_readable(label, user.dir.path(), &m);
    drop(pair);
    eprintln!("{label}: {:.1?}", started.elapsed());
}

/// A message expunged at the server (by another client, directly) is no
/// longer found by a session that selects the mailbox afterwards.
#[test]
fn expunged_at_the_server_then_selected() {
    let started = Instant::now();
    let label = "expunge";
    let user = User::new(USER);
    let m = Markers::new(label);
    let messages = corpus(&m, 20);
    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let pair = fill(&user, label, &messages, &m);
    let queries = queries(&m);
    {
        let mut plain = Imap::connect(USER);
        select(&mut plain, "EXAMINE", &pair.plain.name);
        let mut sealed = through(&proxy, &user);
        select(&mut sealed, "SELECT", &pair.sealed.name);
        let first = same_as_dovecot(label, &mut sealed, &mut plain, &queries);
        assert_eq!(first[0].indexing(), Some(20));
        logout(sealed);
        logout(plain);
    }
    // UID 7 has the body marker, and messages after it.
    let victim = 7;
    assert!(has_body(victim as usize - 1));
    for name in [&pair.sealed.name, &pair.plain.name] {
        expunge_directly(name, victim);
    }

    let mut plain = Imap::connect(USER);
    assert_eq!(select(&mut plain, "EXAMINE", &pair.plain.name).exists, 19);
    let mut sealed = through(&proxy, &user);
    assert_eq!(select(&mut sealed, "SELECT", &pair.sealed.name).exists, 19);
    let after = same_as_dovecot(&format!("{label} (after)"), &mut sealed, &mut plain, &queries);
    for answer in &after {
        assert_eq!(answer.indexing(), None, "nothing new to index: {}", answer.show());
    }
    assert!(!after[0].hits().contains(&victim));
    check_corpus_answers(label, &after, messages.len(), &[victim]);
    logout(sealed);
    logout(plain);
    stop(proxy, label, &m);
    assert_nothing_readable(label, user.dir.path(), &m);
    drop(pair);
    eprintln!("{label}: {:.1?}", started.elapsed());
}

/// Marks `uid` of `USER`'s `mailbox` `\Deleted` and expunges it, directly
/// at Dovecot.
fn expunge_directly(mailbox: &str, uid: u32) {
    let mut direct = Imap::connect(USER);
    select(&mut direct, "SELECT", mailbox);
    ask(&mut direct, &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
    let done = ask(&mut direct, "EXPUNGE");
    assert_eq!(
        done.untagged.iter().filter_map(|l| expunge(l)).collect::<Vec<_>>(),
        [uid],
        "{}",
        done.show()
    );
    logout(direct);
}

/// A session that has the mailbox selected while another client expunges
/// a message: its searches before and after it hears of the expunge
/// number the messages as it knows them. Before: no EXPUNGE response
/// during a SEARCH (RFC 3501 7.4.1), and the numbers name messages with
/// the marker in the session's view; after NOOP: Dovecot's answers.
#[test]
fn expunged_at_the_server_while_selected() {
    let started = Instant::now();
    let label = "expunge-selected";
    let user = User::new(USER);
    let m = Markers::new("expsel");
    let count = 20;
    let messages = corpus(&m, count);
    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let pair = fill(&user, label, &messages, &m);
    let queries = queries(&m);
    let mut plain = Imap::connect(USER);
    select(&mut plain, "SELECT", &pair.plain.name);
    let mut sealed = through(&proxy, &user);
    select(&mut sealed, "SELECT", &pair.sealed.name);
    let first = same_as_dovecot(label, &mut sealed, &mut plain, &queries);
    assert_eq!(first[0].indexing(), Some(count as u32));

    let victim = 7;
    for name in [&pair.sealed.name, &pair.plain.name] {
        expunge_directly(name, victim);
    }
    // The session has not heard of the expunge yet. Whatever it is told
    // during the SEARCH, the numbers it gets must name, in its view of
    // the mailbox at that point, messages with the marker. Sealpost's own
    // commands to the server let it announce the expunge; Sealpost holds
    // it back until after the result line (not later: the server numbers
    // messages without the expunged one from then on, and so must the
    // client's next command), and numbers the result as the client still
    // sees the mailbox. Dovecot, which can defer the expunge itself,
    // tells it only at the next command.
    let mut view: Vec<u32> = (1..=count as u32).collect();
    let answer = ask(&mut sealed, &format!("SEARCH BODY {}", m.body));
    let mut told = Vec::new();
    let mut told_before_result = Vec::new();
    let mut found = None;
    for line in &answer.untagged {
        if let Some(n) = expunge(line) {
            told.push(n);
            if found.is_none() {
                told_before_result.push(n);
            }
            view.remove(n as usize - 1);
        }
        if line.starts_with(b"* SEARCH") {
            let numbers: Vec<usize> = String::from_utf8_lossy(&line[8..])
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            found = Some(
                numbers
                    .iter()
                    .map(|&n| {
                        *view
                            .get(n - 1)
                            .unwrap_or_else(|| panic!("{n} is beyond the session's {} messages: {}", view.len(), answer.show()))
                    })
                    .collect::<Vec<u32>>(),
            );
        }
    }
    let found = found.expect("a * SEARCH line");
    let (untagged, done) = plain.command(format!("SEARCH BODY {}", m.body).as_bytes());
    eprintln!(
        "{label}: a SEARCH before NOOP: Sealpost: {} (EXPUNGE told during it: {told:?}, so the numbers name UIDs {found:?}); Dovecot: {}",
        answer.show(),
        show(&[untagged.concat(), done].concat())
    );
    let mut problems = Vec::new();
    if !told_before_result.is_empty() {
        problems.push(format!(
            "an EXPUNGE response before the SEARCH result, which then numbers messages in another view: {told_before_result:?}"
        ));
    }
    let want: Vec<u32> = expected(count, has_body).into_iter().filter(|&u| u != victim).collect();
    let extra: Vec<&u32> = found.iter().filter(|u| !want.contains(u) && **u != victim).collect();
    if !extra.is_empty() || !want.iter().all(|u| found.contains(u)) {
        problems.push(format!(
            "in the session's view the numbers name UIDs {found:?}, want {want:?} (and maybe {victim})"
        ));
    }
    assert!(problems.is_empty(), "{label}: {}: {}", problems.join("; "), answer.show());

    // Once told (NOOP), the answers are Dovecot's.
    ask(&mut sealed, "NOOP");
    ask(&mut plain, "NOOP");
    let after = same_as_dovecot(&format!("{label} (after NOOP)"), &mut sealed, &mut plain, &queries);
    check_corpus_answers(label, &after, count, &[victim]);
    logout(sealed);
    logout(plain);
    stop(proxy, label, &m);
    assert_nothing_readable(label, user.dir.path(), &m);
    drop(pair);
    eprintln!("{label}: {:.1?}", started.elapsed());
}

/// A mailbox deleted and created again under the same name (a new
/// UIDVALIDITY, UIDs from 1 again) is indexed afresh: no hit from a
/// message of the old one.
#[test]
fn new_uidvalidity_starts_afresh() {
    let started = Instant::now();
    let label = "uidvalidity";
    let user = User::new(USER);
    let old = Markers::new("old");
    let new = Markers::new("new");
    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let old_messages = corpus(&old, 12);
    let pair = fill(&user, label, &old_messages, &old);
    let name = pair.sealed.name.clone();

    let mut sealed = through(&proxy, &user);
    let before = select(&mut sealed, "SELECT", &name);
    let first = ask(&mut sealed, &format!("UID SEARCH BODY {}", old.body));
    assert_eq!(first.indexing(), Some(12));
    assert_eq!(first.hits(), expected(12, has_body));
    logout(sealed);

    // Directly at Dovecot: the same name, other messages (in clear: the
    // server's own search is the reference). The new ones hold the old
    // markers too, at other UIDs.
    let mut direct = Imap::connect(USER);
    ask(&mut direct, &format!("DELETE {name}"));
    ask(&mut direct, &format!("CREATE {name}"));
    let count = 7;
    for i in 0..count {
        assert_eq!(direct.append(&name, &message(&new, i)), Ok(i as u32 + 1));
    }
    let stray = format!(
        "From: Alice <{SENDER}>\r\nTo: Dave <{USER}>\r\nSubject: Stray\r\nDate: Mon, 3 Mar 2025 11:00:00 +0000\r\n\r\nAlso {} here.\r\n",
        old.body
    );
    assert_eq!(direct.append(&name, stray.as_bytes()), Ok(count as u32 + 1));
    let reference = select(&mut direct, "EXAMINE", &name);
    assert_ne!(reference.uidvalidity, before.uidvalidity, "a new UIDVALIDITY");

    let mut sealed = through(&proxy, &user);
    assert_eq!(select(&mut sealed, "SELECT", &name).uidvalidity, reference.uidvalidity);
    let mut commands = queries(&new);
    commands.insert(0, format!("UID SEARCH BODY {}", old.body));
    commands.push(format!("UID SEARCH SUBJECT {}", old.subject));
    commands.push(format!("UID SEARCH CHARSET UTF-8 BODY {}", lit(&old.latin)));
    let answers = same_as_dovecot(&format!("{label} (new)"), &mut sealed, &mut direct, &commands);
    assert_eq!(
        answers[0].indexing(),
        Some(count as u32 + 1),
        "the new mailbox is indexed: {}",
        answers[0].show()
    );
    assert_eq!(answers[0].hits(), [count as u32 + 1], "only the new message with the old marker");
    check_corpus_answers(label, &answers[1..], count, &[]);
    assert_eq!(answers[answers.len() - 2].hits(), Vec::<u32>::new());
    assert_eq!(answers[answers.len() - 1].hits(), Vec::<u32>::new());
    logout(sealed);
    logout(direct);
    stop(proxy, label, &old);
    assert_nothing_readable(label, user.dir.path(), &old);
    assert_nothing_readable(label, user.dir.path(), &new);
    drop(pair);
    eprintln!("{label}: {:.1?}", started.elapsed());
}

/// Mail delivered (through Sealpost's SMTP proxy, encrypted) while a
/// client has the INBOX selected and IDLEs: once it has seen EXISTS, its
/// search finds the new message, indexed on the way. The INBOX was
/// searched (indexed) before the delivery, so the side connection that
/// fetches the new message is one that had the INBOX open already.
#[test]
fn delivered_while_connected() {
    let started = Instant::now();
    let label = "delivered";
    let mut alice = User::new(SENDER);
    let mut dave = User::new(USER);
    alice.knows(&[&dave]);
    dave.knows(&[&alice]);
    let m = Markers::new(label);
    let run = token(label);
    let sending = Proxy::start(&alice, None, "");
    let reading = Proxy::start(&dave, None, ON_DEMAND);

    let mut session = through(&reading, &dave);
    let inbox = select(&mut session, "SELECT", "INBOX");
    // The INBOX holds mail of other tests and runs: index it now, so that
    // what is indexed after the delivery is the new mail.
    let before = ask(&mut session, &format!("UID SEARCH BODY {}", m.body));
    assert_eq!(before.hits(), Vec::<u32>::new());
    eprintln!(
        "{label}: INBOX of {} messages, indexed first ({:?} messages) in {:.1?}",
        inbox.exists,
        before.indexing(),
        started.elapsed()
    );

    let message = format!(
        "From: Alice <{SENDER}>\r\nTo: Dave <{USER}>\r\nSubject: Plans with {}\r\nDate: Tue, 4 Mar 2025 09:00:00 +0000\r\n\
Message-ID: <{run}@example.org>\r\nX-Lifecycle-Run: {run}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nThe {} numbers, and {} too.\r\n",
        m.subject, m.body, m.latin
    );
    session.write_raw(b"i1 IDLE\r\n");
    let started_idle = session.read_response();
    assert!(started_idle.starts_with(b"+"), "IDLE: {}", show(&started_idle));
    send_through(&sending, &message);

    // IDLE until an EXISTS; the new message may not be ours (other tests
    // deliver to this INBOX too): then IDLE on.
    let mut known = inbox.exists;
    let mut direct = Imap::connect(USER);
    let uid = loop {
        let (back, seen) = within(Duration::from_secs(60), "an EXISTS while idling", move || {
            let mut session = session;
            loop {
                let line = session.read_response();
                if expunge(&line).is_some() {
                    known = known.saturating_sub(1);
                }
                if let Some(n) = exists(&line) {
                    if n > known {
                        session.write_raw(b"DONE\r\n");
                        let (_, done) = session.finish("i1");
                        assert!(ok(&done), "IDLE: {}", show(&done));
                        break (session, n);
                    }
                }
            }
        });
        session = back;
        known = seen;
        select(&mut direct, "EXAMINE", "INBOX");
        let ours = ask(&mut direct, &format!("UID SEARCH HEADER X-Lifecycle-Run {run}"));
        if let [uid] = ours.hits()[..] {
            break uid;
        }
        session.write_raw(b"i1 IDLE\r\n");
        assert!(session.read_response().starts_with(b"+"));
    };
    // Stored encrypted: the server finds no marker.
    for command in [format!("UID SEARCH BODY {}", m.body), format!("UID SEARCH SUBJECT {}", m.subject)] {
        assert_eq!(ask(&mut direct, &command).hits(), Vec::<u32>::new(), "the server reads {command}");
    }
    logout(direct);

    let body = ask(&mut session, &format!("UID SEARCH BODY {}", m.body));
    if body.hits() != [uid] {
        let again = ask(&mut session, &body.command);
        let shown = ask(&mut session, &format!("UID FETCH {uid} (BODY.PEEK[])"));
        panic!(
            "{label}: {} finds {:?}, not [{uid}]: {}\nasked again: {}\nthe message as Sealpost shows it: {}",
            body.command,
            body.hits(),
            body.show(),
            again.show(),
            cut(&show(&shown.untagged.concat()))
        );
    }
    let indexed = body.indexing().expect("the new message is indexed first");
    assert!(indexed >= 1, "{}", body.show());
    let subject = ask(&mut session, &format!("UID SEARCH SUBJECT {}", m.subject));
    assert_eq!(subject.hits(), [uid], "the protected Subject: {}", subject.show());
    let seq = ask(&mut session, &format!("SEARCH UID {uid}")).hits();
    let latin = ask(&mut session, &format!("SEARCH CHARSET UTF-8 TEXT {}", lit(&m.latin.to_uppercase())));
    assert_eq!(latin.hits(), seq, "by sequence number: {}", latin.show());
    assert_eq!(latin.indexing(), None);
    logout(session);
    stop(reading, label, &m);
    drop(sending);
    assert_nothing_readable(label, dave.dir.path(), &m);
    eprintln!("{label}: {:.1?}", started.elapsed());
}

/// Submits `message` as [`SENDER`] to [`USER`] through `proxy`'s SMTP
/// listener (STARTTLS, AUTH relayed to the provider).
fn send_through(proxy: &Proxy, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("message.eml");
    std::fs::write(&file, message).unwrap();
    python(
        r#"
port, user, pw, rcpt, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
s = connect(port)
s.login(user, pw)
refused = s.sendmail(user, [rcpt], open(path, "rb").read(), mail_options=["BODY=8BITMIME"])
assert not refused, refused
s.quit()
"#,
        &[
            &proxy.smtp.port().to_string(),
            SENDER,
            &password(SENDER),
            USER,
            file.to_str().unwrap(),
        ],
    );
}

/// Two sessions search a mailbox of 200 messages none of which is indexed
/// yet, at the same time: both answers are Dovecot's.
#[test]
fn concurrent_searches_while_indexing() {
    let started = Instant::now();
    let label = "concurrent";
    let user = User::new(USER);
    let m = Markers::new(label);
    let count = 200;
    let messages = corpus(&m, count);
    let proxy = Proxy::start(&user, None, ON_DEMAND);
    let pair = fill(&user, label, &messages, &m);
    eprintln!("{label}: {count} messages uploaded in {:.1?}", started.elapsed());
    let queries = queries(&m);
    let commands = [queries[0].clone(), queries[2].clone()];

    let barrier = Barrier::new(2);
    let searched = Instant::now();
    let answers: Vec<(Answer, Duration, Duration)> = std::thread::scope(|scope| {
        let workers: Vec<_> = commands
            .iter()
            .map(|command| {
                let (barrier, proxy, user, pair) = (&barrier, &proxy, &user, &pair);
                scope.spawn(move || {
                    let mut sealed = through(proxy, user);
                    select(&mut sealed, "EXAMINE", &pair.sealed.name);
                    barrier.wait();
                    let asked = searched.elapsed();
                    let answer = ask(&mut sealed, command);
                    let answered = searched.elapsed();
                    logout(sealed);
                    (answer, asked, answered)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (answer, asked, answered) in &answers {
        eprintln!(
            "{label}: {} asked at {asked:.2?}, answered at {answered:.2?}, indexing note {:?}",
            answer.command,
            answer.indexing()
        );
    }
    assert!(
        answers.iter().any(|(a, _, _)| a.indexing().is_some()),
        "the mailbox was indexed on the way"
    );
    let (first_end, second_start) = (answers[0].2.min(answers[1].2), answers[0].1.max(answers[1].1));
    assert!(second_start < first_end, "the searches overlapped");

    let mut plain = Imap::connect(USER);
    select(&mut plain, "EXAMINE", &pair.plain.name);
    for ((answer, _, _), command) in answers.iter().zip(&commands) {
        let theirs = ask(&mut plain, command);
        assert_eq!(answer.search_line(), theirs.search_line(), "{label}: {}", answer.command);
    }
    assert_eq!(answers[0].0.hits(), expected(count, has_body));
    assert_eq!(answers[1].0.hits(), expected(count, |i| has_latin(i) || has_latin_subject(i)));
    // Everything is in the index now.
    let mut sealed = through(&proxy, &user);
    select(&mut sealed, "EXAMINE", &pair.sealed.name);
    let after = same_as_dovecot(&format!("{label} (after)"), &mut sealed, &mut plain, &queries);
    for answer in &after {
        assert_eq!(answer.indexing(), None, "{}", answer.show());
    }
    check_corpus_answers(label, &after, count, &[]);
    logout(sealed);
    logout(plain);
    stop(proxy, label, &m);
    assert_nothing_readable(label, user.dir.path(), &m);
    drop(pair);
    eprintln!("{label}: {:.1?}", started.elapsed());
}
