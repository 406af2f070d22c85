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
//! decode bodies: each BINARY item is asked in a FETCH of its own, since
//! a part that cannot be decoded fails the command (`NO [UNKNOWN-CTE]`,
//! `NO [PARSE]`). Where Dovecot 2.3 is wrong, the test says so and checks
//! what the view does instead: Dovecot drops the connection on base64 or
//! quoted-printable that stops in the middle of a unit (the view says
//! invalid data, `NO [PARSE]`), and its BINARY.SIZE of a message with a
//! multipart or message/rfc822 part labelled base64 or quoted-printable
//! differs from the length of its own BINARY answer (the view's size is
//! that length).
//!
//! `VIEWTEST_COUNT` (default 300) sets how many generated messages are
//! checked, `VIEWTEST_SEED` the first seed, `VIEWTEST_ONLY` keeps only the
//! cases whose name contains it, `VIEWTEST_VERBOSE` names each case as it
//! goes and writes it to `$TMPDIR/viewtest-NAME.eml`. A failing message is
//! written to `$TMPDIR/viewtest-fail-NAME.eml`, with both answers of each
//! differing item next to it (`.dovecot`, `.view`).

mod common;

use std::collections::HashMap;

use common::messages::{corpus_cases, generated, hand_written, Case};
use common::rawimap::{ask, binary_probes, cut, fetch_items, ok, probes, show, Answer, Imap, Mailbox, Probe, BINARY_SIZES};
use sealpost::imap::emit;
use sealpost::imap::section::{partial, Section};
use sealpost::imap::view::{BinaryError, MessageView};

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

/// What Dovecot should answer to `BINARY[...]` of `probe`, from the view.
fn binary_wanted(view: &MessageView<'_>, probe: &Probe) -> Result<Vec<u8>, BinaryError> {
    let section = Section::parse(probe.spec.as_bytes()).expect("probe sections parse");
    let binary = view.binary(&section)?;
    let bytes: &[u8] = match probe.partial {
        None => &binary.bytes,
        Some((o, l)) => partial(&binary.bytes, o, Some(l)),
    };
    let mut out = Vec::new();
    if binary.literal8 {
        emit::literal8(&mut out, bytes);
    } else {
        emit::literal(&mut out, bytes);
    }
    Ok(out)
}

/// True when Dovecot's `answer` is what the view's `wanted` says.
fn binary_agrees(wanted: &Result<Vec<u8>, BinaryError>, answer: &Answer) -> bool {
    match (wanted, answer) {
        (Ok(want), Answer::Value(have)) => want == have,
        (Err(e), Answer::Refused(code)) => e.code() == code,
        // Dovecot's decoders fail this way on a last unit cut short.
        (Err(BinaryError::InvalidData), Answer::Closed) => true,
        _ => false,
    }
}

/// The length of the data of a literal value as sent (`{n}` / `~{n}`).
fn literal_len(value: &[u8]) -> Option<usize> {
    let open = value.iter().position(|&b| b == b'{')?;
    let close = value.iter().position(|&b| b == b'}')?;
    std::str::from_utf8(&value[open + 1..close]).ok()?.parse().ok()
}

/// The data of a literal value as sent, NULs as 0x80.
fn literal_data(value: &[u8]) -> Vec<u8> {
    let start = value.windows(3).position(|w| w == b"}\r\n").map_or(value.len(), |p| p + 3);
    value[start..].iter().map(|&b| if b == 0 { 0x80 } else { b }).collect()
}

/// Dovecot's error with sections in which nothing needed decoding: it
/// means to send them as they are, but cuts them to the length their
/// headers would have had relabelled `Content-Transfer-Encoding: binary`,
/// or drops the connection when that is longer. True when `answer` is
/// that error and the view sends the section (`wanted`) as it is.
fn cut_by_dovecot(view: &MessageView<'_>, probe: &Probe, wanted: &[u8], answer: &Answer) -> bool {
    let section = Section::parse(probe.spec.as_bytes()).expect("probe sections parse");
    let plain = view.section(&section);
    let plain = match probe.partial {
        None => &plain[..],
        Some((o, l)) => partial(&plain, o, Some(l)),
    };
    let ours = literal_data(wanted);
    let as_it_is = ours == plain;
    match answer {
        Answer::Value(v) => as_it_is && ours.starts_with(&literal_data(v)),
        Answer::Closed => as_it_is,
        _ => false,
    }
}

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
    let mut lengths = std::collections::HashMap::new();
    let mut cut_sections = std::collections::HashSet::new();
    for probe in binary_probes() {
        let wanted = binary_wanted(&view, &probe);
        let answer = ask(imap, uid, &probe.request_as("BINARY"), &probe.response_name_as("BINARY"));
        if answer == Answer::Closed {
            *imap = reconnect(mailbox);
        }
        if let (None, Answer::Value(v)) = (probe.partial, &answer) {
            lengths.insert(probe.spec.clone(), literal_len(v));
        }
        if let (Ok(want), false) = (&wanted, binary_agrees(&wanted, &answer)) {
            if cut_by_dovecot(&view, &probe, want, &answer) {
                cut_sections.insert(probe.spec.clone());
                excused.push(format!(
                    "{}: {}: Dovecot cut the section it sends as it is",
                    case.name,
                    probe.request_as("BINARY")
                ));
                continue;
            }
        }
        if !binary_agrees(&wanted, &answer) {
            failures.push(format!(
                "{}: {}\n    dovecot: {}\n    view:    {}",
                case.name,
                probe.request_as("BINARY"),
                cut(&answer.show()),
                cut(&match &wanted {
                    Ok(v) => show(v),
                    Err(e) => format!("{e:?}"),
                })
            ));
        }
    }
    for spec in BINARY_SIZES {
        let section = Section::parse(spec.as_bytes()).expect("size sections parse");
        let wanted = view.binary_size(&section).map(|n| n.to_string().into_bytes());
        let name = format!("BINARY.SIZE[{spec}]");
        let answer = ask(imap, uid, &name, &name);
        if answer == Answer::Closed {
            *imap = reconnect(mailbox);
        }
        match (&wanted, &answer) {
            (Ok(want), Answer::Value(have)) if want != have => {
                let dovecot_binary = lengths.get(spec).copied().flatten();
                let dovecot_size = std::str::from_utf8(have).ok().and_then(|h| h.parse::<usize>().ok());
                // The view's size is the length of its BINARY answer, which
                // was compared above.
                if cut_sections.contains(spec) || (dovecot_binary.is_some() && dovecot_size != dovecot_binary) {
                    excused.push(format!(
                        "{}: {name}: Dovecot says {} but sends {:?} bytes",
                        case.name,
                        show(have),
                        dovecot_binary
                    ));
                } else {
                    failures.push(format!(
                        "{}: {name}\n    dovecot: {}\n    view:    {}",
                        case.name,
                        show(have),
                        show(want)
                    ));
                }
            }
            (Ok(_), Answer::Value(_)) => {}
            (Err(e), answer) if binary_agrees(&Err(*e), answer) => {}
            (wanted, answer) => failures.push(format!(
                "{}: {name}\n    dovecot: {}\n    view:    {wanted:?}",
                case.name,
                answer.show()
            )),
        }
    }
    let mut wanted = Vec::new();
    emit::string(&mut wanted, view.preview().as_bytes());
    match ask(imap, uid, "PREVIEW", "PREVIEW") {
        Answer::Value(have) if have == wanted => {}
        answer => failures.push(format!(
            "{}: PREVIEW\n    dovecot: {}\n    view:    {}",
            case.name,
            cut(&answer.show()),
            cut(&show(&wanted))
        )),
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
