//! `sealpost::imap::view` against a real Dovecot: every message of the test
//! corpus, hand-written tricky messages and a few hundred generated ones
//! (seeded, so failures reproduce) are APPENDed to a mailbox of their own,
//! and Dovecot's answers to BODYSTRUCTURE, BODY, ENVELOPE, RFC822.SIZE and
//! many `BODY.PEEK[section]<partial>` items must equal, byte for byte, what
//! `MessageView` computes from the same bytes.
//!
//! The client (`common::rawimap`) is a small raw-socket IMAP client: it
//! reads FETCH answers with their literals and splits them into items
//! without interpreting the values, so that a value is compared exactly as
//! it was sent. The messages come from `common::messages`.
//!
//! The second test does the same for `BINARY[section]<partial>`,
//! `BINARY.SIZE[section]` (RFC 3516) and `PREVIEW` (RFC 8970), which
//! decode bodies (`common::decoded`): each is asked in a FETCH of its own,
//! since a part that cannot be decoded fails the command (`NO
//! [UNKNOWN-CTE]`, `NO [PARSE]`). Dovecot's answers that are its own
//! errors (named in `common::decoded`) are counted, not compared.
//!
//! `VIEWTEST_COUNT` (default 300) sets how many generated messages are
//! checked, `VIEWTEST_SEED` the first seed, `VIEWTEST_ONLY` keeps only the
//! cases whose name contains it, `VIEWTEST_VERBOSE` names each case as it
//! goes and writes it to `$TMPDIR/viewtest-NAME.eml`. A failing message is
//! written to `$TMPDIR/viewtest-fail-NAME.eml`, with both answers of each
//! differing item next to it (`.dovecot`, `.view`).

mod common;

use std::collections::HashMap;

use common::decoded;
use common::messages::{corpus_cases, generated, hand_written, Case};
use common::rawimap::{cut, fetch_items, ok, probes, show, Imap, Mailbox, Probe};
use sealpost::imap::emit;
use sealpost::imap::section::{partial, Section};
use sealpost::imap::view::MessageView;

const USER: &str = "erin@example.org";

// ---------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------

fn compare(imap: &mut Imap, mailbox: &str, case: &Case, probes: &[Probe], failures: &mut Vec<String>) {
    let uid = match imap.append(mailbox, &case.bytes) {
        Ok(uid) => uid,
        Err(e) => {
            failures.push(format!("{}: APPEND refused: {e}", case.name));
            return;
        }
    };
    if std::env::var_os("VIEWTEST_VERBOSE").is_some() {
        eprintln!("{} (uid {uid})", case.name);
        let _ = std::fs::write(std::env::temp_dir().join(format!("viewtest-{}.eml", case.name)), &case.bytes);
    }
    let view = MessageView::parse(&case.bytes);
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    let mut out = Vec::new();
    view.bodystructure(&mut out);
    expected.push(("BODYSTRUCTURE".into(), std::mem::take(&mut out)));
    view.body(&mut out);
    expected.push(("BODY".into(), std::mem::take(&mut out)));
    view.envelope(&mut out);
    expected.push(("ENVELOPE".into(), std::mem::take(&mut out)));
    expected.push(("RFC822.SIZE".into(), view.size().to_string().into_bytes()));
    for probe in probes {
        let section = Section::parse(probe.spec.as_bytes()).expect("probe sections parse");
        let bytes = view.section(&section);
        let bytes: &[u8] = match probe.partial {
            None => &bytes,
            Some((o, l)) => partial(&bytes, o, Some(l)),
        };
        emit::literal(&mut out, bytes);
        expected.push((probe.response_name(), std::mem::take(&mut out)));
    }
    // Ask in a few commands so that no answer gets too large.
    let mut got: HashMap<String, Vec<u8>> = HashMap::new();
    let mut requests: Vec<String> = ["BODYSTRUCTURE", "BODY", "ENVELOPE", "RFC822.SIZE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    requests.extend(probes.iter().map(Probe::request));
    for chunk in requests.chunks(40) {
        let cmd = format!("UID FETCH {uid} ({})", chunk.join(" "));
        let (untagged, done) = imap.command(cmd.as_bytes());
        assert!(ok(&done), "{}: {cmd}: {}", case.name, show(&done));
        for resp in untagged.iter().filter(|r| r.windows(7).any(|w| w == b"FETCH (")) {
            let items = fetch_items(resp).unwrap_or_else(|| panic!("{}: unreadable answer {}", case.name, show(resp)));
            got.extend(items);
        }
    }
    let mut failed = false;
    for (name, want) in expected {
        match got.get(&name) {
            None => {
                failures.push(format!("{}: Dovecot sent no {name}", case.name));
                failed = true;
            }
            Some(have) if *have != want => {
                let stem = std::env::temp_dir().join(format!(
                    "viewtest-fail-{}-{}",
                    case.name.replace(['/', ' '], "_"),
                    name.replace(['/', ' ', '[', ']', '(', ')', '"'], "_")
                ));
                let _ = std::fs::write(stem.with_extension("dovecot"), have);
                let _ = std::fs::write(stem.with_extension("view"), &want);
                failures.push(format!(
                    "{}: {name}\n    dovecot: {}\n    view:    {}",
                    case.name,
                    cut(&show(have)),
                    cut(&show(&want))
                ));
                failed = true;
            }
            Some(_) => {}
        }
    }
    if failed {
        let path = std::env::temp_dir().join(format!("viewtest-fail-{}.eml", case.name.replace(['/', ' '], "_")));
        let _ = std::fs::write(&path, &case.bytes);
        failures.push(format!("    (message written to {})", path.display()));
    }
}

// ---------------------------------------------------------------------------
// BINARY and PREVIEW
// ---------------------------------------------------------------------------

/// A fresh connection with `mailbox` selected, after Dovecot dropped one.
fn reconnect(mailbox: &str) -> Imap {
    let mut imap = Imap::connect(USER);
    let (_, done) = imap.command(format!("SELECT {mailbox}").as_bytes());
    assert!(ok(&done), "SELECT: {}", show(&done));
    imap
}

/// BINARY items, BINARY.SIZE and PREVIEW of one message, compared with
/// Dovecot's answers; Dovecot's known errors are counted in `excused`.
fn compare_decoded(imap: &mut Imap, mailbox: &str, case: &Case, failures: &mut Vec<String>, excused: &mut Vec<String>) {
    let uid = match imap.append(mailbox, &case.bytes) {
        Ok(uid) => uid,
        Err(e) => {
            failures.push(format!("{}: APPEND refused: {e}", case.name));
            return;
        }
    };
    let view = MessageView::parse(&case.bytes);
    let items = decoded::items(&view);
    let answers = decoded::ask_all(imap, uid, &items, &mut || reconnect(mailbox));
    for (i, (item, answer)) in items.iter().zip(&answers).enumerate() {
        if decoded::agrees(&item.wanted, answer) {
            continue;
        }
        match decoded::dovecot_error(&view, &items, &answers, i) {
            Some(error) => excused.push(format!("{}: {}: {error}", case.name, item.request)),
            None => failures.push(format!(
                "{}: {}\n    dovecot: {}\n    view:    {}",
                case.name,
                item.request,
                cut(&answer.show()),
                cut(&decoded::show_wanted(&item.wanted))
            )),
        }
    }
}

#[test]
fn binary_and_preview_like_dovecot() {
    let count: usize = std::env::var("VIEWTEST_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(300);
    let seed: u64 = std::env::var("VIEWTEST_SEED").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let mut cases = corpus_cases();
    cases.extend(hand_written());
    cases.extend(generated(seed, count));
    if let Ok(only) = std::env::var("VIEWTEST_ONLY") {
        cases.retain(|c| c.name.contains(&only));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mailbox = Mailbox {
        user: USER,
        name: format!("viewtest-binary-{}-{nanos}", std::process::id()),
        at: Imap::connect,
    };
    let mut imap = Imap::connect(USER);
    let (_, done) = imap.command(format!("CREATE {}", mailbox.name).as_bytes());
    assert!(ok(&done), "CREATE: {}", show(&done));
    let (_, done) = imap.command(format!("SELECT {}", mailbox.name).as_bytes());
    assert!(ok(&done), "SELECT: {}", show(&done));

    let (mut failures, mut excused) = (Vec::new(), Vec::new());
    for case in &cases {
        compare_decoded(&mut imap, &mailbox.name, case, &mut failures, &mut excused);
    }
    imap.command(b"LOGOUT");
    if std::env::var_os("VIEWTEST_VERBOSE").is_some() {
        eprintln!("{} answers excused (Dovecot's own error):\n{}", excused.len(), excused.join("\n"));
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) from Dovecot in {} messages:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn view_answers_like_dovecot() {
    let count: usize = std::env::var("VIEWTEST_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(300);
    let seed: u64 = std::env::var("VIEWTEST_SEED").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let mut cases = corpus_cases();
    cases.extend(hand_written());
    cases.extend(generated(seed, count));
    if let Ok(only) = std::env::var("VIEWTEST_ONLY") {
        cases.retain(|c| c.name.contains(&only));
    }

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mailbox = Mailbox {
        user: USER,
        name: format!("viewtest-{}-{nanos}", std::process::id()),
        at: Imap::connect,
    };
    let mut imap = Imap::connect(USER);
    let (_, done) = imap.command(format!("CREATE {}", mailbox.name).as_bytes());
    assert!(ok(&done), "CREATE: {}", show(&done));
    let (_, done) = imap.command(format!("SELECT {}", mailbox.name).as_bytes());
    assert!(ok(&done), "SELECT: {}", show(&done));

    let probes = probes();
    let mut failures = Vec::new();
    for case in &cases {
        compare(&mut imap, &mailbox.name, case, &probes, &mut failures);
    }
    imap.command(b"LOGOUT");
    assert!(
        failures.is_empty(),
        "{} difference(s) from Dovecot in {} messages:\n{}",
        failures.iter().filter(|f| !f.starts_with("    (")).count(),
        cases.len(),
        failures.join("\n")
    );
}
