//! Malformed and hostile IMAP input, from either side of the proxy: it must
//! give `BAD`, `NO` or `BYE` (or close the connection), never panic, never
//! hang, and never change bytes it does not own.
//!
//! cargo-fuzz needs a nightly compiler, so proptest is the fuzzing engine:
//! - **parsers, in process**: arbitrary bytes, token soups and mutations
//!   of real IMAP traffic (FETCH answers with literals, Dovecot
//!   BODYSTRUCTUREs, APPEND with `{n+}` and `~{n}`, quoted strings with
//!   escapes, MIME messages) go to every public parser of `sealpost::imap`
//!   (framer, wire and its cursor, command, capability, fetch, view, auth,
//!   emit, upstream's capability reader). Every call runs under
//!   [`within_time_limit`]; the properties check real invariants where
//!   there are some (a wire writes back what it read, a rewritten FETCH
//!   keeps its items, output of the view is well-formed IMAP, ...);
//! - **client input against a live proxy** backed by the test stack's
//!   Dovecot, before and after login: garbage, overlong lines, bad
//!   literal announcements, NUL bytes, truncated APPENDs, a lone `DONE`,
//!   `IDLE` then garbage. Each gets a refusal or a close within
//!   [`READ_TIMEOUT`], and a new connection can still log in;
//! - **server input** from a scripted Python upstream: broken FETCH
//!   answers, connections closed mid-literal, giant literal
//!   announcements, undecryptable PGP/MIME, a 2 MiB line, non-UTF-8.
//!
//! Five tests reproduce bugs this file found (an endless FETCH parse, a
//! relay that lost step after a refused literal, a panic on a non-UTF-8
//! section name, capability filtering of lines that were not capability
//! lists, 8-bit capability words altered); all are fixed and the tests
//! stay as regression tests.
//!
//! `PROPTEST_CASES` sets every property's case count (for a deeper run).
//! Proptest's failure files are switched off: a failing case is printed.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use sealpost::imap::auth::Credentials;
use sealpost::imap::command::{head, Fetch};
use sealpost::imap::framer::{announced_literal, copy_literal, read_segment};
use sealpost::imap::item::FetchItem;
use sealpost::imap::section::{partial, Section, SectionText};
use sealpost::imap::view::MessageView;
use sealpost::imap::wire::{Continuations, Cursor, Limits, Pos, Value, Wire};
use sealpost::imap::{capability, emit, fetch, upstream};
use sealpost::sasl::decode_response;

use common::proxy::{scripted_server, token, Proxy, Setup};
use common::stack::{password, stack};
use common::{User, PASSPHRASE};

// ---------------------------------------------------------------------------
// Running code under a time limit
// ---------------------------------------------------------------------------

/// How long one parser call may take before it counts as a hang. Every
/// call here takes well under a millisecond; the margin is for a loaded
/// machine.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// [`common::within`] with this file's [`HANG_LIMIT`].
fn within_time_limit<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    common::within(HANG_LIMIT, what, work)
}

/// Runs a future to completion on a fresh single-threaded runtime (the
/// readers here are in memory, so nothing waits on I/O).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// [`common::proptest_config`].
fn config(cases: u32) -> ProptestConfig {
    common::proptest_config(cases)
}

/// Limits that only bound the line length.
fn unlimited(line: usize) -> Limits {
    Limits {
        line,
        literal: u64::MAX,
        parts: usize::MAX,
    }
}

/// Where [`Wire::read`] may spool literals (none of the inputs here is
/// large enough to reach the disk).
fn spool_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory")).path()
}

/// An in-memory reader that hands out at most `chunk` bytes per read, so
/// that lines and literals arrive split at every possible place.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl tokio::io::AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len() - self.pos).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// A buffered reader over `data` with a small buffer and small reads.
fn reader(data: Vec<u8>, chunk: usize, capacity: usize) -> tokio::io::BufReader<Chunked> {
    tokio::io::BufReader::with_capacity(capacity, Chunked { data, pos: 0, chunk })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn trim_eol(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line)
}

// ---------------------------------------------------------------------------
// Inputs: real traffic, its mutations, token soups, arbitrary bytes
// ---------------------------------------------------------------------------

/// `{n}` CRLF and the data.
fn lit(data: &[u8]) -> Vec<u8> {
    [format!("{{{}}}\r\n", data.len()).as_bytes(), data].concat()
}

/// `{n+}` CRLF and the data.
fn lit_plus(data: &[u8]) -> Vec<u8> {
    [format!("{{{}+}}\r\n", data.len()).as_bytes(), data].concat()
}

/// Dovecot's BODYSTRUCTURE of a PGP/MIME message as Thunderbird sends it.
const PGP_MIME_STRUCTURE: &[u8] = b"((\"application\" \"pgp-encrypted\" NIL NIL \"PGP/MIME version identification\" \"7bit\" 12 NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"name\" \"encrypted.asc\") NIL \"OpenPGP encrypted message\" \"7bit\" 3412 NIL (\"inline\" (\"filename\" \"encrypted.asc\")) NIL NIL) \"encrypted\" (\"protocol\" \"application/pgp-encrypted\" \"boundary\" \"------------OUTER\") NIL NIL NIL)";

/// Dovecot's BODYSTRUCTURE of a multipart/alternative message with an
/// attachment and RFC 2231 parameters.
const MIXED_STRUCTURE: &[u8] = b"(((\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL \"quoted-printable\" 1204 31 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 5310 102 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"alt-b\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"Q3 \\\"final\\\".pdf\") \"<part2@x>\" \"the report\" \"base64\" 81234 \"0f343b0931126a20f133d67c2b018a3b\" (\"attachment\" (\"filename*\" \"utf-8''%E2%82%AC.pdf\" \"size\" \"60000\")) (\"en\" \"de\") \"http://x/y\") \"mixed\" (\"boundary\" \"mix-b\") NIL (\"de\") NIL)";

/// An ENVELOPE with literals, escapes and groups.
fn envelope_value() -> Vec<u8> {
    [
        &b"(\"Fri, 27 Nov 2026 10:00:00 +0000\" "[..],
        &lit("Quarterly numbers \u{e9}t\u{e9}".as_bytes()),
        b" ((\"Alice \\\"Al\\\" Smith\" NIL \"alice\" \"example.org\")) NIL NIL ((NIL NIL \"team\" NIL)(NIL NIL \"bob\" \"example.net\")(NIL NIL NIL NIL)) ((NIL \"@relay.example\" \"carol\" \"example.com\")) NIL \"<prev@x>\" \"<numbers-1@example.org>\")",
    ]
    .concat()
}

/// A plain message as a server stores it.
const LETTER: &[u8] = b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: Quarterly numbers\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\nMessage-ID: <numbers-1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe numbers are in; we beat the forecast.\r\n";

/// Armor that is not OpenPGP at all.
const FAKE_ARMOR: &[u8] = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA this is not base64 !!! \x01\x02\r\n=abcd\r\n-----END PGP MESSAGE-----";

/// Real IMAP traffic, both directions: the seeds that get mutated.
fn traffic() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let pgp = common::pgp_mime(&["From: alice@example.org", "Subject: [...]"], FAKE_ARMOR);
        vec![
            // Server to client.
            [&b"* 12 FETCH (UID 4827 RFC822.SIZE 2931 FLAGS (\\Seen $Forwarded) BODY[] "[..], &lit(LETTER), b")\r\n"].concat(),
            [&b"* 1 FETCH (UID 7 BODYSTRUCTURE "[..], PGP_MIME_STRUCTURE, b" BODY[] ", &lit(&pgp), b" BODY[TEXT]<0> ", &lit(&pgp[..200]), b")\r\n"].concat(),
            [&b"* 3 FETCH (UID 9 BODYSTRUCTURE "[..], MIXED_STRUCTURE, b" ENVELOPE ", &envelope_value(), b")\r\n"].concat(),
            [&b"* 4 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] "[..], &lit(b"From: a@b\r\nSubject: x\r\n\r\n"), b" BODY[1.MIME] {0}\r\n X-GM-LABELS (\\Inbox \"with space\" \"\\\\Important\") MODSEQ (42))\r\n"].concat(),
            [&b"* 5 FETCH (BINARY[1] "[..], b"~", &lit(b"\x00\x01\x02\xff"), b" BODY[]<0> ", &lit(b"partial"), b")\r\n"].concat(),
            b"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES MULTIAPPEND CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE AUTH=SCRAM-SHA-256-PLUS\r\n".to_vec(),
            b"a1 OK [CAPABILITY IMAP4rev1 IDLE compress=deflate MOVE] Logged in\r\n".to_vec(),
            b"* LIST (\\HasNoChildren \\Drafts) \"/\" \"My Drafts\"\r\n".to_vec(),
            [&b"* LIST (\\HasChildren) \"/\" "[..], &lit("Entw\u{fc}rfe".as_bytes()), b"\r\n"].concat(),
            b"* ESEARCH (TAG \"a5\") UID ALL 1:3,5,7:*\r\n".to_vec(),
            b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n".to_vec(),
            b"+ idling\r\n".to_vec(),
            // Client to server.
            b"a1 UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From Subject \"X-Mailer\")] body.peek[]<0.65536>) (CHANGEDSINCE 12345)\r\n".to_vec(),
            b"a2 FETCH 2,4:7 ALL\r\n".to_vec(),
            b"a3 FETCH 1 BODY[1.2.MIME]<10.20>\r\n".to_vec(),
            [&b"A003 APPEND \"Sent Items\" (\\Seen) \"27-Nov-2026 10:00:00 +0000\" "[..], &lit_plus(LETTER), b"\r\n"].concat(),
            [&b"A004 APPEND INBOX UTF8 (~"[..], &lit_plus("Subject: \u{e9}\r\n\r\nx".as_bytes()), b")\r\n"].concat(),
            [&b"A005 APPEND Drafts "[..], &lit_plus(b"x"), b" (\\Draft) ", &lit_plus(b"yz"), b"\r\n"].concat(),
            [&b"A006 APPEND Drafts "[..], &lit(b"hello"), b"\r\n"].concat(),
            [&b"a7 LOGIN "[..], &lit(b"erin@example.org"), b" \"pw \\\"quoted\\\" \\\\ back\"\r\n"].concat(),
            [&b"a8 SEARCH CHARSET UTF-8 SUBJECT "[..], &lit("\u{e9}t\u{e9}".as_bytes()), b"\r\n"].concat(),
            b"a9 AUTHENTICATE PLAIN AGVyaW5AZXhhbXBsZS5vcmcAcHctZXJpbg==\r\n".to_vec(),
            b"b1 SELECT \"INBOX\" (CONDSTORE)\r\n".to_vec(),
            b"b2 IDLE\r\nDONE\r\n".to_vec(),
        ]
    })
}

/// MIME messages: the seeds for the message view.
fn messages() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            LETTER.to_vec(),
            common::pgp_mime(&["From: Alice <alice@example.org>", "To: bob@example.net", "Subject: [...]"], FAKE_ARMOR),
            b"From: \"Joe \\\"Q\\\" Public\" <joe@x.org>, group: a@b, \"c\" <c@d>;, (comment) x@y (Name Here)\r\nTo: <@r1,@r2:u@h>, bare, a@, @b, <>, \"\"@x, undisclosed-recipients:;\r\nCc: =?utf-8?q?J=C3=B6?= <j@x>, ..dots..@jp\r\nSubject: a  b\n\tc \x00 \"q\"\r\nIn-Reply-To: <a@b>\r\n\r\nbody"
                .to_vec(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\n\r\nalt one\r\n--b2\r\nContent-Type: text/html; charset=\"utf-8\"\r\n\r\n<p>two</p>\r\n--b2--\r\n--b\r\nContent-Type: application/octet-stream; name*0*=utf-8''%E2%82%AC; name*1=\"x.bin\"; title*=us-ascii'en'x%20y\r\nContent-Disposition: attachment; filename=\"d.bin\"; size=3\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <id@x>\r\nContent-Description: data\r\nContent-MD5: abc\r\nContent-Language: en, de\r\nContent-Location: http://x/y\r\n\r\nAAEC\r\n--b--\r\nepilogue\r\n"
                .to_vec(),
            b"Content-Type: multipart/digest; boundary=\"d\"\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--d--\r\n".to_vec(),
            b"Subject: bare LF\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nlf body\n--x--\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\r\n\r\n--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nContent-Type: multipart/mixed; boundary=\"aaaa\"\r\n\r\n--aaaa\r\n\r\nnested prefix\r\n--aaaa--\r\n"
                .to_vec(),
            b"no header at all".to_vec(),
            b"Header-Without-Colon\r\nX: y\r\n".to_vec(),
        ]
    })
}

/// Pieces of IMAP syntax (and of its mistakes) that token soups and
/// mutations are made of.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"{0}\r\n",
    b"{5}\r\n",
    b"{3+}\r\n",
    b"~{4}\r\n",
    b"{99999999999999999999}",
    b"{18446744073709551615}",
    b"{abc}",
    b"{}",
    b"+}",
    b"~",
    b"\"",
    b"\\",
    b"\\\"",
    b"(",
    b")",
    b"((",
    b"))",
    b"[",
    b"]",
    b"<",
    b">",
    b"<0.512>",
    b"<5>",
    b" ",
    b"  ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"\xe9",
    b"NIL",
    b"nil",
    b"*",
    b"+",
    b"a1",
    b"UID",
    b"FETCH",
    b"APPEND",
    b"LOGIN",
    b"SELECT",
    b"IDLE",
    b"DONE",
    b"BODY",
    b"BODY[",
    b"BODY.PEEK[",
    b"BINARY[",
    b"RFC822",
    b"RFC822.SIZE",
    b"HEADER",
    b"HEADER.FIELDS",
    b"HEADER.FIELDS.NOT",
    b"MIME",
    b"TEXT",
    b"1.2",
    b"0",
    b"4294967297",
    b".",
    b"BODYSTRUCTURE",
    b"ENVELOPE",
    b"FLAGS",
    b"ALL",
    b"FAST",
    b"FULL",
    b"[CAPABILITY ",
    b"* CAPABILITY ",
    b"CAPABILITY",
    b"COMPRESS=DEFLATE",
    b"AUTH=SCRAM-SHA-256-PLUS",
    b"STARTTLS",
    b"BINARY",
    b"\"text\"",
    b"\"plain\"",
    b"\"multipart\"",
    b"\"encrypted\"",
    b"\"application\"",
    b"\"pgp-encrypted\"",
    b"\"base64\"",
    b"-----BEGIN PGP MESSAGE-----",
    b"UTF8 (",
    b"hello",
    b"1:*",
    b":",
    b",",
    b"@",
    b"=",
    b";",
    b"\t",
    b"--b\r\n",
    b"--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=\"utf-8\"\r\n",
    b"From: ",
    b"To: ",
    b"Subject: ",
    b"<a@b>",
    b"\"Q\" <q@x>",
    b"group:;",
    b"name*0*=",
    b"%E2%82%AC",
    b"''",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace a byte.
    Set(Index, u8),
    /// Insert random bytes.
    Insert(Index, Vec<u8>),
    /// Insert a piece of syntax.
    Token(Index, &'static [u8]),
    /// Remove a range.
    Delete(Index, usize),
    /// Repeat a range.
    Duplicate(Index, usize),
    /// Cut the input.
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        3 => (any::<Index>(), select(TOKENS)).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, data: &Vec<u8>| i.index(data.len() + 1);
        match m {
            Mutation::Set(i, b) if !data.is_empty() => {
                let i = i.index(data.len());
                data[i] = *b;
            }
            Mutation::Set(..) => {}
            Mutation::Insert(i, bytes) => {
                let i = at(i, &data);
                data.splice(i..i, bytes.iter().copied());
            }
            Mutation::Token(i, token) => {
                let i = at(i, &data);
                data.splice(i..i, token.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i, &data);
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Mutation::Duplicate(i, n) => {
                let i = at(i, &data);
                let end = (i + n).min(data.len());
                let copy = data[i..end].to_vec();
                data.splice(end..end, copy);
            }
            Mutation::Truncate(i) => {
                let i = at(i, &data);
                data.truncate(i);
            }
        }
    }
    data
}

fn soup(tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    vec(select(tokens), 0..48).prop_map(|t| t.concat())
}

/// IMAP-ish bytes: mutated real traffic, token soups and arbitrary bytes.
fn imap_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        2 => soup(TOKENS),
        4 => (select(traffic()), vec(mutation(), 0..6)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

/// Like [`imap_bytes`], closer to real traffic: most inputs stay whole
/// messages that a wire reads to the end.
fn imap_messages() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        1 => soup(TOKENS),
        6 => (select(traffic()), vec(mutation(), 0..3)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

/// Message-ish bytes for the view.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        2 => soup(TOKENS),
        5 => (select(messages()), vec(mutation(), 0..8)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

// ---------------------------------------------------------------------------
// Well-formedness of what the proxy writes
// ---------------------------------------------------------------------------

/// The length of the one well-formed IMAP value at the start of `b`: NIL,
/// a number or atom, a quoted string (7-bit, no CR, LF or NUL, only `\"`
/// and `\\` escaped), a literal, or a list of such values separated by
/// one space (or nothing between two lists, as in BODYSTRUCTURE).
fn value_len(b: &[u8], depth: usize) -> Option<usize> {
    if depth > 200 {
        return None;
    }
    match *b.first()? {
        b'(' => {
            let mut pos = 1;
            if b.get(pos) == Some(&b')') {
                return Some(pos + 1);
            }
            loop {
                pos += value_len(&b[pos..], depth + 1)?;
                match *b.get(pos)? {
                    b')' => return Some(pos + 1),
                    b' ' => pos += 1,
                    b'(' if b[pos - 1] == b')' => {}
                    _ => return None,
                }
            }
        }
        b'"' => {
            let mut pos = 1;
            loop {
                match *b.get(pos)? {
                    b'"' => return Some(pos + 1),
                    b'\\' if matches!(b.get(pos + 1), Some(b'"' | b'\\')) => pos += 2,
                    b'\\' | b'\r' | b'\n' | 0 | 0x80..=0xff => return None,
                    _ => pos += 1,
                }
            }
        }
        b'{' => {
            let close = b.iter().position(|&c| c == b'}')?;
            let digits = &b[1..close];
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || b.get(close + 1..close + 3) != Some(b"\r\n") {
                return None;
            }
            let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
            let end = (close + 3).checked_add(n)?;
            (end <= b.len()).then_some(end)
        }
        _ => {
            let n = b
                .iter()
                .take_while(|&&c| (0x21..0x7f).contains(&c) && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']'))
                .count();
            (n > 0).then_some(n)
        }
    }
}

/// Fails unless `out` is exactly one well-formed IMAP value.
fn assert_one_value(what: &str, out: &[u8]) {
    assert_eq!(
        value_len(out, 0),
        Some(out.len()),
        "{what} is not one well-formed IMAP value: {:?}",
        lossy(out)
    );
}

// ---------------------------------------------------------------------------
// Framer
// ---------------------------------------------------------------------------

/// The announcement a line ends with, read independently of the framer:
/// `(digits, plus, tilde)`.
fn announcement(segment: &[u8]) -> Option<(Vec<u8>, bool, bool)> {
    let line = trim_eol(segment).strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let inner = &line[open + 1..];
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    Some((digits.to_vec(), plus, open > 0 && line[open - 1] == b'~'))
}

proptest! {
    #![proptest_config(config(6000))]

    /// Any segment: an announcement is found only where a line ends in
    /// `{digits}` / `{digits+}`, and it says what the digits say.
    #[test]
    fn announcements_say_what_the_line_says(segment in imap_bytes()) {
        let input = segment.clone();
        let found = within_time_limit("announced_literal", move || announced_literal(&input).ok().flatten());
        if let Some(literal) = found {
            let (digits, plus, tilde) = announcement(&segment).expect("an announcement at the end of the line");
            prop_assert!(!digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit), "{:?}", lossy(&segment));
            prop_assert_eq!(lossy(&digits).parse::<u64>().unwrap(), literal.size);
            prop_assert_eq!(plus, literal.non_synchronizing);
            prop_assert_eq!(tilde, literal.binary);
        }
    }
}

/// What framing a whole stream gave: everything consumed in order, and how
/// it ended.
struct Framed {
    consumed: Vec<u8>,
    segments: Vec<Vec<u8>>,
    end: Result<(), String>,
}

/// Frames `input` the way the session relays it (segments, literals
/// copied through), until a clean end of stream or an error.
async fn frame_stream(input: Vec<u8>, chunk: usize, capacity: usize, max: usize) -> Framed {
    let limit = input.len() + 2;
    let mut r = reader(input, chunk, capacity);
    let mut framed = Framed {
        consumed: Vec::new(),
        segments: Vec::new(),
        end: Ok(()),
    };
    let mut segment = Vec::new();
    for _ in 0..limit {
        match read_segment(&mut r, max, &mut segment).await {
            Err(e) => {
                framed.consumed.extend_from_slice(&segment);
                framed.end = Err(format!("{e:?}"));
                return framed;
            }
            Ok(_) if segment.is_empty() => return framed,
            Ok(literal) => {
                framed.consumed.extend_from_slice(&segment);
                framed.segments.push(segment.clone());
                if let Some(literal) = literal {
                    let mut data = Vec::new();
                    let copied = copy_literal(&mut r, literal.size, &mut data).await;
                    framed.consumed.extend_from_slice(&data);
                    if let Err(e) = copied {
                        framed.end = Err(format!("{e:?}"));
                        return framed;
                    }
                    if data.len() as u64 != literal.size {
                        framed.end = Err("literal of the wrong size".into());
                        return framed;
                    }
                }
            }
        }
    }
    framed.end = Err("framing did not advance".into());
    framed
}

proptest! {
    #![proptest_config(config(5000))]

    /// A stream cut into segments and literals, read through small
    /// buffers in small pieces: nothing is lost, duplicated or reordered;
    /// every segment ends in LF and respects the limit; a clean end means
    /// the whole input was consumed.
    #[test]
    fn framing_a_stream_loses_nothing(
        input in imap_bytes(),
        chunk in 1usize..48,
        capacity in 1usize..96,
        max in select(vec![1usize, 7, 64, 300, 1 << 20]),
    ) {
        let data = input.clone();
        let framed = within_time_limit("read_segment/copy_literal", move || block_on(frame_stream(data, chunk, capacity, max)));
        prop_assert!(input.starts_with(&framed.consumed), "consumed bytes that are not the input's prefix");
        if framed.end.is_ok() {
            prop_assert_eq!(framed.consumed.len(), input.len());
        }
        for s in &framed.segments {
            prop_assert!(s.ends_with(b"\n") && s.len() <= max, "segment {:?} (max {})", lossy(s), max);
        }
        if framed.end.as_ref().is_err_and(|e| e.starts_with("LineTooLong")) {
            prop_assert!(framed.consumed.len() >= max);
        }
    }
}

#[test]
fn framer_errors_on_bad_streams() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"a1 LOGIN {abc}\r\n", 100, "BadLiteral"),
        (b"a1 LOGIN {99999999999999999999}\r\n", 100, "BadLiteral"),
        (b"a1 LOGIN {}\r\n", 100, "BadLiteral"),
        (b"a1 LOGIN {5-}\r\n", 100, "BadLiteral"),
        (b"a1 APPEND INBOX {10}\r\nshort", 100, "Truncated"),
        (b"a1 NOOP", 100, "Truncated"),
        (b"a1 NOOP xxxxxxxxxxxxxxxxxxxxxxxx\r\n", 10, "LineTooLong"),
        (b"* 1 FETCH (BODY[] {99999999999}\r\nabc", 100, "Truncated"),
    ];
    for &(input, max, error) in cases {
        let framed = within_time_limit("frame_stream", move || block_on(frame_stream(input.to_vec(), 3, 5, max)));
        let end = framed.end.unwrap_err();
        assert!(end.starts_with(error), "{:?}: {end}, expected {error}", lossy(input));
        assert!(input.starts_with(&framed.consumed));
    }
    // A literal announcement inside a quoted string is no announcement.
    assert!(announced_literal(b"a1 SEARCH SUBJECT \"{99999999999999999999}\r\n")
        .unwrap()
        .is_none());
    assert!(matches!(announced_literal(b"a1 X {1}\"\r\n"), Ok(None)));
}

// ---------------------------------------------------------------------------
// Wire and its cursor
// ---------------------------------------------------------------------------

/// One step of a cursor walk.
#[derive(Debug, Clone)]
enum Step {
    Peek,
    Eat(u8),
    SkipSpaces,
    Token,
    Value,
    Quoted,
    Astring(usize),
    AtEnd,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Peek),
        1 => select(b" ()\"{[*".to_vec()).prop_map(Step::Eat),
        1 => Just(Step::SkipSpaces),
        1 => Just(Step::Token),
        3 => Just(Step::Value),
        1 => Just(Step::Quoted),
        1 => (0usize..64).prop_map(Step::Astring),
        1 => Just(Step::AtEnd),
    ]
}

fn in_bounds(wire: &Wire, pos: Pos) -> bool {
    pos.part < wire.parts.len() && pos.at <= wire.parts[pos.part].line.len()
}

/// Walks `wire` with `steps`: the cursor only moves forward and stays
/// inside the message; every value's span can be copied out; a span that
/// is one literal holds that literal.
fn walk(wire: &Wire, steps: &[Step], start: Pos) -> Result<(), String> {
    let mut c = wire.cursor();
    c.pos = start;
    for s in steps {
        let before = c.pos;
        match s {
            Step::Peek => {
                c.peek();
            }
            Step::Eat(b) => {
                c.eat(*b);
            }
            Step::SkipSpaces => c.skip_spaces(),
            Step::Token => {
                c.token();
            }
            Step::Value => {
                if let Some(span) = c.value() {
                    if !(span.from <= span.to && span.to == c.pos) {
                        return Err(format!("bad span {span:?} at {:?}", c.pos));
                    }
                    let bytes = wire.bytes(span.from, span.to, usize::MAX).ok_or("span not copyable")?;
                    if bytes.is_empty() {
                        return Err("an empty value".into());
                    }
                    if let Some(spool) = Cursor::literal_of(wire, span) {
                        let data = spool.to_vec().map_err(|e| e.to_string())?;
                        if !bytes.ends_with(&data) {
                            return Err("literal_of is not the span's literal".into());
                        }
                    }
                }
            }
            Step::Quoted => {
                c.quoted();
            }
            Step::Astring(max) => {
                c.astring(*max);
            }
            Step::AtEnd => {
                c.at_end();
            }
        }
        if c.pos < before || !in_bounds(wire, c.pos) {
            return Err(format!("cursor moved from {before:?} to {:?} after {s:?}", c.pos));
        }
    }
    Ok(())
}

/// The items of a FETCH answer: `(name, value bytes)`.
type Items = Vec<(Vec<u8>, Vec<u8>)>;

/// Walks a `* n FETCH (name value ...)` answer the way the FETCH rewriter
/// does (`None` where it would give up); every iteration must make
/// progress.
fn walk_fetch(wire: &Wire) -> Result<Option<Items>, String> {
    let mut c = wire.cursor();
    if c.token() != b"*" {
        return Ok(None);
    }
    c.skip_spaces();
    c.token();
    c.skip_spaces();
    c.token();
    c.skip_spaces();
    if !c.eat(b'(') {
        return Ok(None);
    }
    let mut items = Vec::new();
    for _ in 0..100_000 {
        c.skip_spaces();
        if c.eat(b')') {
            return Ok(c.at_end().then_some(items));
        }
        let name = c.token().to_vec();
        if name.is_empty() {
            return Ok(None);
        }
        c.skip_spaces();
        let Some(span) = c.value() else { return Ok(None) };
        items.push((name, wire.bytes(span.from, span.to, usize::MAX).ok_or("span not copyable")?));
    }
    Err("the FETCH walk does not end".into())
}

/// What reading one message with [`Wire::read`] gave.
struct WireRead {
    result: Result<(), String>,
    written: Vec<u8>,
    span_bytes: Vec<u8>,
    continuations: Vec<u8>,
    synchronizing: usize,
    parts_ok: Result<(), String>,
    walk: Result<(), String>,
    fetch_walk: Result<Option<Items>, String>,
}

#[allow(clippy::too_many_arguments)]
async fn read_wire(
    input: Vec<u8>,
    chunk: usize,
    capacity: usize,
    max_line: usize,
    max_literal: u64,
    steps: Vec<Step>,
    start: (Index, Index),
) -> Option<WireRead> {
    let mut r = reader(input, chunk, capacity);
    let mut first = Vec::new();
    let literal = read_segment(&mut r, max_line, &mut first).await.ok()?;
    if first.is_empty() {
        return None;
    }
    let plus = tokio::sync::Mutex::new(Vec::<u8>::new());
    let limits = Limits {
        line: max_line,
        literal: max_literal,
        parts: usize::MAX,
    };
    let read = Wire::read(&mut r, first, literal, spool_dir(), limits, Continuations::Send(&plus)).await;
    let continuations = plus.into_inner();
    let wire = match read {
        Ok(wire) => wire,
        Err(e) => {
            return Some(WireRead {
                result: Err(format!("{e:?}")),
                written: Vec::new(),
                span_bytes: Vec::new(),
                continuations,
                synchronizing: 0,
                parts_ok: Ok(()),
                walk: Ok(()),
                fetch_walk: Ok(None),
            })
        }
    };
    let mut written = Vec::new();
    wire.write_to(&mut written).await.expect("write to memory");
    let span_bytes = wire.bytes(Pos::START, wire.end(), usize::MAX).unwrap_or_default();
    let mut synchronizing = 0;
    let mut parts_ok = Ok(());
    for (i, part) in wire.parts.iter().enumerate() {
        let announced = announced_literal(&part.line).ok().flatten();
        let last = i + 1 == wire.parts.len();
        let ok = match (&part.literal, announced) {
            (Some(spool), Some(a)) => !last && spool.len() == a.size && a.size <= max_literal,
            (None, None) => last,
            _ => false,
        };
        if !ok {
            parts_ok = Err(format!("part {i} of {}: {:?}", wire.parts.len(), lossy(&part.line)));
        }
        if announced.is_some_and(|a| !a.non_synchronizing) {
            synchronizing += 1;
        }
    }
    // A walk from anywhere in the message.
    let part = start.0.index(wire.parts.len());
    // Positions inside the line ending are not the cursor's (it starts
    // where a command's arguments start, before the CRLF).
    let at = start.1.index(trim_eol(&wire.parts[part].line).len() + 1);
    let walk = walk(&wire, &steps, Pos { part, at });
    let fetch_walk = walk_fetch(&wire);
    Some(WireRead {
        result: Ok(()),
        written,
        span_bytes,
        continuations,
        synchronizing,
        parts_ok,
        walk,
        fetch_walk,
    })
}

proptest! {
    #![proptest_config(config(5000))]

    /// A message read whole writes back byte for byte what it read; its
    /// parts alternate lines and literals of the announced sizes; a `+`
    /// invites each synchronizing literal; any cursor walk stays inside it.
    #[test]
    fn wires_write_back_what_they_read(
        input in imap_messages(),
        chunk in 1usize..48,
        capacity in 1usize..96,
        max_line in select(vec![8usize, 64, 1 << 20, 1 << 20, 1 << 20]),
        max_literal in select(vec![0u64, 3, 64, 1 << 20, u64::MAX, u64::MAX]),
        steps in vec(step(), 0..24),
        start in (any::<Index>(), any::<Index>()),
    ) {
        let data = input.clone();
        let Some(read) = within_time_limit("Wire::read", move || block_on(read_wire(data, chunk, capacity, max_line, max_literal, steps, start))) else {
            return Ok(());
        };
        if read.result.is_err() {
            return Ok(());
        }
        prop_assert!(input.starts_with(&read.written), "wrote {:?}\nread from {:?}", lossy(&read.written), lossy(&input));
        prop_assert_eq!(&read.span_bytes, &read.written);
        prop_assert!(read.parts_ok.is_ok(), "{:?}", read.parts_ok);
        prop_assert_eq!(read.continuations, b"+ Ready for literal data\r\n".repeat(read.synchronizing));
        prop_assert!(read.walk.is_ok(), "{:?}", read.walk);
        prop_assert!(read.fetch_walk.is_ok(), "{:?}", read.fetch_walk);
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

fn value_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        "[A-Za-z0-9.$\\\\-]{1,12}"
            .prop_filter("NIL is not an atom", |s| !s.eq_ignore_ascii_case("NIL"))
            .prop_map(|s| Value::Atom(s.into_bytes())),
        vec(any::<u8>(), 0..40).prop_map(Value::String),
        "[ -~]{0,20}".prop_map(|s| Value::String(s.into_bytes())),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| vec(inner, 0..6).prop_map(Value::List))
}

fn emit_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Nil => emit::nil(out),
        Value::Atom(a) => out.extend_from_slice(a),
        Value::String(s) => emit::string(out, s),
        Value::List(items) => emit::list(out, items, emit_value),
    }
}

/// What [`Value`]'s accessors say, to exercise them.
fn describe(v: &Value) -> usize {
    let _ = (v.text(), v.is("text"), v.is(""));
    v.list().map_or(1, |items| 1 + items.iter().map(describe).sum::<usize>())
}

/// A FETCH answer carrying `value` as the item `X`, with its literals
/// split into parts as on the wire.
async fn fetch_answer_wire(value: Vec<u8>) -> (Vec<u8>, Wire) {
    let raw = [&b"* 1 FETCH (X "[..], &value, b")\r\n"].concat();
    let mut r = reader(raw.clone(), 7, 16);
    let mut first = Vec::new();
    let literal = read_segment(&mut r, 1 << 20, &mut first).await.expect("a first line");
    let wire = Wire::read::<_, Vec<u8>>(&mut r, first, literal, spool_dir(), unlimited(1 << 20), Continuations::None)
        .await
        .expect("a whole answer");
    (raw, wire)
}

proptest! {
    #![proptest_config(config(6000))]

    /// Any bytes: `Value::parse` returns or says `None`, never panics.
    #[test]
    fn values_parse_or_refuse(input in imap_bytes()) {
        within_time_limit("Value::parse", move || Value::parse(&input).map(|v| describe(&v)));
    }
}

proptest! {
    #![proptest_config(config(2500))]

    /// A value written with `emit` parses back to itself, and the wire
    /// cursor finds exactly its bytes (literals included) in a FETCH answer.
    #[test]
    fn emitted_values_parse_back(tree in value_tree()) {
        let mut out = Vec::new();
        emit_value(&mut out, &tree);
        let bytes = out.clone();
        let parsed = within_time_limit("Value::parse", move || Value::parse(&bytes));
        prop_assert_eq!(parsed.as_ref(), Some(&tree));
        let value = out.clone();
        let items = within_time_limit("walk a FETCH answer", move || {
            let (_raw, wire) = block_on(fetch_answer_wire(value));
            walk_fetch(&wire)
        });
        prop_assert_eq!(items, Ok(Some(vec![(b"X".to_vec(), out)])));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [102usize, 5_000, 200_000] {
        let open = vec![b'('; depth];
        let nested = [open.clone(), vec![b')'; depth]].concat();
        let input = nested.clone();
        assert!(
            within_time_limit("Value::parse", move || Value::parse(&input)).is_none(),
            "depth {depth}"
        );
        let line = [&b"* 1 FETCH (BODYSTRUCTURE "[..], &nested, b")\r\n"].concat();
        let walked = within_time_limit("cursor", move || {
            let wire = Wire::line(line);
            walk_fetch(&wire)
        });
        assert_eq!(walked, Ok(None), "depth {depth}");
        let input = open.clone();
        within_time_limit("is_encrypted", move || {
            fetch::is_encrypted(Value::parse(&input).as_ref(), Some(b"x"))
        });
    }
    let ok = [vec![b'('; 101], vec![b')'; 101]].concat();
    assert!(Value::parse(&ok).is_some());
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// FETCH argument lists: mutations of real ones, soups, arbitrary bytes.
fn fetch_args() -> impl Strategy<Value = Vec<u8>> {
    let real: Vec<Vec<u8>> = [
        &b"1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From Subject \"X-Mailer\")] body.peek[]<0.65536>) (CHANGEDSINCE 12345)"[..],
        b"2,4:7 ALL",
        b"1 FAST",
        b"1 full",
        b"1 BODY[1.2.MIME]<10.20>",
        b"5 (FLAGS BODYSTRUCTURE BODY.PEEK[TEXT]<0.512> X-GM-LABELS MODSEQ)",
        b"1:3 (BINARY.PEEK[1]<0.100> BINARY.SIZE[1] PREVIEW (LAZY))",
        b"$ (UID BODY.PEEK[HEADER.FIELDS.NOT (\"Received\" \"X-\\\"odd\\\"\")])",
        b"1 ENVELOPE",
        b"* (UID) (VANISHED CHANGEDSINCE 3)",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    prop_oneof![
        1 => vec(any::<u8>(), 0..128),
        2 => soup(TOKENS),
        5 => (select(real), vec(mutation(), 0..6)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

/// FETCH item texts: mutations of real ones, and anything IMAP-ish.
fn fetch_item_bytes() -> impl Strategy<Value = Vec<u8>> {
    let real: Vec<Vec<u8>> = [
        &b"BODY.PEEK[1.2.MIME]<0.100>"[..],
        b"body[HEADER.FIELDS (From \"X-a]\")]",
        b"BODY[]<0>",
        b"BINARY.PEEK[1]<5.10>",
        b"binary[2.TEXT]",
        b"BINARY.SIZE[3]",
        b"PREVIEW (LAZY)",
        b"RFC822.SIZE",
        b"X-GM-LABELS",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    prop_oneof![
        1 => imap_bytes(),
        3 => (select(real), vec(mutation(), 0..4)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    /// Any line: `head` finds a tag and a name inside it, or says `None`.
    #[test]
    fn command_heads_stay_inside_the_line(line in imap_bytes()) {
        let input = line.clone();
        let found = within_time_limit("head", move || head(&input).map(|h| (h.tag.to_vec(), h.uid, h.name, h.args)));
        if let Some((tag, _uid, name, args)) = found {
            prop_assert!(!tag.is_empty() && line.starts_with(&tag) && line.get(tag.len()) == Some(&b' '));
            prop_assert!(args <= trim_eol(&line).len());
            prop_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'), "{:?}", name);
        }
    }

    /// FETCH arguments: parsed or refused; what is parsed is rewritten
    /// with every item's raw text, in order, and parses back the same.
    #[test]
    fn fetch_rewrites_keep_every_item(args in fetch_args(), uid in any::<bool>(), tag in "[A-Za-z0-9.]{1,8}") {
        let line = [tag.as_bytes(), if uid { b" UID FETCH " } else { b" FETCH " }, &args].concat();
        let input = line.clone();
        let result = within_time_limit("Fetch::parse", move || {
            let h = head(&input).expect("a tagged FETCH");
            let fetch = Fetch::parse(&input[h.args..])?;
            let plain = fetch.rewrite(&h, &[]);
            let added = fetch.additions(h.uid);
            let extended = fetch.rewrite(&h, &added);
            let _ = (fetch.depends_on_content(), fetch.asks_for(&FetchItem::Uid));
            let h2 = head(&plain).expect("a rewritten FETCH has a head");
            let (again, uid_again) = (Fetch::parse(&plain[h2.args..]), h2.uid);
            Some((fetch, plain, added, extended, again, uid_again))
        });
        let Some((fetch, plain, added, extended, again, uid_again)) = result else { return Ok(()) };
        prop_assert!(!fetch.items.is_empty());
        let mut expected = [tag.as_bytes(), if uid { b" UID FETCH " } else { b" FETCH " }, &fetch.set, b" ("].concat();
        expected.extend_from_slice(&fetch.items.iter().map(|i| i.raw.clone()).collect::<Vec<_>>().join(&b' '));
        expected.extend_from_slice(b")");
        expected.extend_from_slice(&fetch.modifiers);
        expected.extend_from_slice(b"\r\n");
        prop_assert_eq!(lossy(&plain), lossy(&expected));
        prop_assert_eq!(uid_again, uid);
        prop_assert_eq!(again.as_ref(), Some(&fetch), "{:?} does not parse back", lossy(&plain));
        let tail: Vec<u8> = added.iter().flat_map(|a| [b" ".to_vec(), a.raw.clone()].concat()).collect();
        let cut = plain.len() - 3 - fetch.modifiers.len();
        prop_assert_eq!(&extended[..cut], &plain[..cut]);
        prop_assert_eq!(&extended[cut..cut + tail.len()], &tail[..]);
        for a in &added {
            prop_assert!(!fetch.asks_for(&a.item), "{:?} added though asked for", a.item);
        }
    }

    /// Any item text: `FetchItem::parse` gives an item, never panics; the
    /// item does not depend on the case it was written in.
    #[test]
    fn fetch_items_parse(raw in fetch_item_bytes()) {
        let input = raw.clone();
        let (item, upper) = within_time_limit("FetchItem::parse", move || {
            (FetchItem::parse(&input), FetchItem::parse(&input.to_ascii_uppercase()))
        });
        prop_assert!(item.same_answer(&item));
        prop_assert!(item.same_answer(&upper), "{:?} vs {:?}", item, upper);
        prop_assert_eq!(item.depends_on_content(), upper.depends_on_content());
        if let FetchItem::Other(kept) = &item {
            prop_assert_eq!(kept, &raw);
        }
    }
}
/// Regression (found here, fixed): `Fetch::parse` never returned when its
/// item list held a parenthesised argument at the top level, as ANNOTATE
/// (RFC 5257) has: a logged-in client sending `a FETCH 1 (ANNOTATION
/// (/comment value.priv))` pinned a worker at 100% CPU, allocating until
/// the process ran out of memory.
///
/// The parse runs in a child process (this test binary again) under a
/// 1 GiB address-space limit, so that the bug costs a crash there, not the
/// memory of the machine.
#[test]
fn fetch_items_with_a_parenthesised_argument_are_parsed_in_bounded_time() {
    const ARGS: [&[u8]; 3] = [b"1 (ANNOTATION (/comment value.priv))", b"1 (FLAGS (X))", b"1:* ((FLAGS))"];
    if std::env::var_os("IMAP_MALFORMED_CHILD").is_some() {
        for args in ARGS {
            let _ = Fetch::parse(args);
        }
        return;
    }
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -v 1048576; exec \"$@\"", "sh"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fetch_items_with_a_parenthesised_argument_are_parsed_in_bounded_time",
            "--test-threads=1",
        ])
        .env("IMAP_MALFORMED_CHILD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    match status {
        None => panic!("Fetch::parse did not return within 10 s on {:?}", ARGS.map(lossy)),
        Some(s) => assert!(
            s.success(),
            "Fetch::parse crashed ({s}), out of memory: it loops forever on {:?}",
            ARGS.map(lossy)
        ),
    }
}

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

/// Capabilities the proxy must hide (the list documented in capability.rs).
fn hidden(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    upper.starts_with("COMPRESS=")
        || ["CATENATE", "STARTTLS", "LOGINDISABLED"].contains(&upper.as_str())
        || upper.starts_with("URLAUTH")
        || upper.starts_with("PREVIEW=")
        || upper.starts_with("SNIPPET=")
        || (upper.starts_with("AUTH=") && upper.ends_with("-PLUS"))
}

const CAPABILITY_WORDS: &[&str] = &[
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "LITERAL-",
    "SASL-IR",
    "IDLE",
    "ID",
    "MOVE",
    "CONDSTORE",
    "QRESYNC",
    "X-GM-EXT-1",
    "AUTH=PLAIN",
    "auth=xoauth2",
    "AUTH=SCRAM-SHA-256-PLUS",
    "AUTH=SCRAM-SHA-256",
    "COMPRESS=DEFLATE",
    "compress=deflate",
    "BINARY",
    "binary",
    "CATENATE",
    "URLAUTH",
    "URLAUTH=BINARY",
    "PREVIEW",
    "PREVIEW=FUZZY",
    "SNIPPET=FUZZY",
    "STARTTLS",
    "LOGINDISABLED",
    "BINARYX",
    "X-STARTTLS",
    "AUTH=PLAIN-PLUSX",
];

proptest! {
    #![proptest_config(config(4000))]

    /// Capability lists: what is left is the input's words in order, minus
    /// exactly the ones the proxy cannot honour; the rest of the line is
    /// unchanged.
    #[test]
    fn capability_filter_removes_only_what_it_must(
        form in 0usize..3,
        words in vec(prop_oneof![3 => select(CAPABILITY_WORDS).prop_map(str::to_string), 1 => "[A-Za-z0-9=+.-]{1,10}"], 0..16),
        seps in vec(select(vec![" ", " ", "  "]), 16),
        text in "[ -Z^-~]{0,20}",
    ) {
        let mut list = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                list.push_str(seps[i]);
            }
            list.push_str(w);
        }
        let (prefix, suffix) = match form {
            0 => ("* CAPABILITY ".to_string(), "\r\n".to_string()),
            1 => ("a1 OK [CAPABILITY ".to_string(), format!("] {text}\r\n")),
            _ => ("* OK [capability ".to_string(), "] ready\n".to_string()),
        };
        let line = format!("{prefix}{list}{suffix}");
        let input = line.clone().into_bytes();
        let out = within_time_limit("filter_line", move || capability::filter_line(&input));
        let out = lossy(&out.expect("a capability list"));
        prop_assert!(out.starts_with(&prefix) && out.ends_with(&suffix), "{:?} -> {:?}", line, out);
        let kept: Vec<&str> = out[prefix.len()..out.len() - suffix.len()].split(' ').filter(|w| !w.is_empty()).collect();
        let expected: Vec<&str> = words.iter().map(String::as_str).filter(|w| !hidden(w)).collect();
        prop_assert_eq!(kept, expected);
    }

    /// Any line: `filter_line` and `capabilities_in` never panic; on a
    /// 7-bit line, the filter only ever removes words.
    #[test]
    fn capability_readers_take_any_line(line in imap_bytes()) {
        let input = line.clone();
        let (filtered, _caps) = within_time_limit("filter_line", move || (capability::filter_line(&input), upstream::capabilities_in(&input)));
        if let (Some(out), true) = (filtered, line.is_ascii()) {
            // Words removed, spaces collapsed: what is left is a
            // sub-sequence of the line.
            let mut rest = line.iter();
            prop_assert!(out.iter().all(|b| rest.any(|x| x == b)), "{:?} -> {:?}", lossy(&line), lossy(&out));
        }
    }
}

/// Regression (found here, fixed): `filter_line` (src/imap/capability.rs) reads the capability words
/// with `String::from_utf8_lossy` and writes that text back, so a
/// capability list with a non-UTF-8 byte reaches the client with U+FFFD
/// in its place; the words it keeps should pass byte for byte.
#[test]
fn capability_words_with_8bit_bytes_pass_unchanged() {
    let line = b"* CAPABILITY IMAP4rev1 X-VENDOR-\xff\xfe IDLE\r\n";
    let out = capability::filter_line(line).unwrap();
    assert_eq!(lossy(&out), lossy(line));
    assert_eq!(out, line.to_vec());
}

// ---------------------------------------------------------------------------
// Encrypted-message detection
// ---------------------------------------------------------------------------

fn structures() -> impl Strategy<Value = Option<Value>> {
    let real: Vec<Vec<u8>> = vec![
        PGP_MIME_STRUCTURE.to_vec(),
        MIXED_STRUCTURE.to_vec(),
        b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"base64\" 900 20 NIL NIL NIL NIL)".to_vec(),
        b"((\"application\" \"pgp-encrypted\" NIL NIL NIL \"7bit\" 12 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 900 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)".to_vec(),
    ];
    prop_oneof![
        1 => Just(None),
        2 => value_tree().prop_map(Some),
        4 => (select(real), vec(mutation(), 0..5)).prop_map(|(seed, m)| Value::parse(&mutate(seed, &m))),
    ]
}

fn probes() -> impl Strategy<Value = Option<Vec<u8>>> {
    let armor = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&armor).into_bytes();
    prop_oneof![
        Just(None),
        vec(any::<u8>(), 0..80).prop_map(Some),
        (select(vec![armor, b64]), vec(mutation(), 0..4)).prop_map(|(seed, m)| Some(mutate(seed, &m))),
    ]
}

proptest! {
    #![proptest_config(config(4000))]

    /// Any structure and probe: `is_encrypted` answers; without a
    /// structure the answer is no.
    #[test]
    fn encryption_detection_takes_any_structure(structure in structures(), probe in probes()) {
        let (s, p) = (structure.clone(), probe.clone());
        let encrypted = within_time_limit("is_encrypted", move || fetch::is_encrypted(s.as_ref(), p.as_deref()));
        if structure.is_none() {
            prop_assert!(!encrypted);
        }
    }
}

#[test]
fn encryption_detection_of_real_structures() {
    assert!(fetch::is_encrypted(Value::parse(PGP_MIME_STRUCTURE).as_ref(), None));
    assert!(!fetch::is_encrypted(Value::parse(MIXED_STRUCTURE).as_ref(), None));
}

// ---------------------------------------------------------------------------
// The message view
// ---------------------------------------------------------------------------

fn section() -> impl Strategy<Value = Section> {
    let text = prop_oneof![
        Just(SectionText::All),
        Just(SectionText::Header),
        Just(SectionText::Text),
        Just(SectionText::Mime),
        (
            any::<bool>(),
            vec(
                select(vec!["From", "to", "SUBJECT", "Content-Type", "X-Nope", "", "Received"]),
                0..4
            )
        )
            .prop_map(|(not, f)| {
                SectionText::HeaderFields {
                    not,
                    fields: f.into_iter().map(String::from).collect(),
                }
            }),
    ];
    (vec(prop_oneof![4 => 0u32..5, 1 => any::<u32>()], 0..4), text).prop_map(|(part, text)| Section { part, text })
}

fn section_specs() -> impl Strategy<Value = Vec<u8>> {
    let real: Vec<Vec<u8>> = [
        "",
        "1",
        "1.2",
        "2.MIME",
        "1.HEADER",
        "text",
        "HEADER.FIELDS (From \"To\" x-a)",
        "3.header.fields.not (Subject)",
        "01",
        "4294967297",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    prop_oneof![
        1 => vec(any::<u8>(), 0..40),
        1 => soup(TOKENS),
        3 => (select(real), vec(mutation(), 0..4)).prop_map(|(seed, m)| mutate(seed, &m)),
    ]
}

/// Everything the view answers about one message, checked.
fn check_view(message: &[u8], sections: &[Section], specs: &[Vec<u8>], partials: &[(u64, Option<u64>)]) -> Result<(), String> {
    let view = MessageView::parse(message);
    let bytes = view.bytes().to_vec();
    if view.size() != bytes.len() {
        return Err("size() is not the length of bytes()".into());
    }
    // CRLF text without stray CRs is served as it is.
    let clean_crlf = message.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => message.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && message[i - 1] == b'\r',
        _ => true,
    });
    if clean_crlf && bytes != message {
        return Err("bytes() is not the CRLF message it was given".into());
    }
    let mut outputs = [("BODYSTRUCTURE", Vec::new()), ("BODY", Vec::new()), ("ENVELOPE", Vec::new())];
    view.bodystructure(&mut outputs[0].1);
    view.body(&mut outputs[1].1);
    view.envelope(&mut outputs[2].1);
    for (what, out) in outputs {
        if value_len(&out, 0) != Some(out.len()) || out.first() != Some(&b'(') {
            return Err(format!("{what} is not one well-formed IMAP list: {:?}", lossy(&out)));
        }
    }
    let all = view.section(&Section::all()).into_owned();
    let nul_free: Vec<u8> = bytes.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    if all != nul_free {
        return Err("BODY[] is not the message (NUL as 0x80)".into());
    }
    let (header, text) = (view.section(&Section::header()), view.section(&Section::text()));
    if [&header[..], &text[..]].concat() != all {
        return Err(format!(
            "BODY[HEADER] + BODY[TEXT] is not BODY[]: {:?} + {:?}",
            lossy(&header),
            lossy(&text)
        ));
    }
    let parsed: Vec<Section> = specs.iter().filter_map(|s| Section::parse(s)).collect();
    for s in sections.iter().chain(&parsed) {
        let exists = view.has_section(s);
        let data = view.section(s);
        if !exists && !data.is_empty() {
            return Err(format!("{s:?} does not exist but has {} bytes", data.len()));
        }
        if data.contains(&0) {
            return Err(format!("{s:?} contains NUL"));
        }
        for &(origin, length) in partials {
            let cut = partial(&data, origin, length);
            let within = (origin as usize) < data.len() && data[origin as usize..].starts_with(cut) || cut.is_empty();
            if !within || length.is_some_and(|l| cut.len() as u64 > l) {
                return Err(format!("partial <{origin}.{length:?}> of {} bytes gave {}", data.len(), cut.len()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    /// Any message: every FETCH item the view computes is well-formed,
    /// sections are parts of the message, partials stay in bounds.
    #[test]
    fn message_views_answer_every_item(
        message in message_bytes(),
        sections in vec(section(), 0..6),
        specs in vec(section_specs(), 0..4),
        partials in vec((prop_oneof![0u64..64, any::<u64>()], proptest::option::of(prop_oneof![0u64..64, any::<u64>()])), 0..4),
    ) {
        let result = within_time_limit("MessageView", move || check_view(&message, &sections, &specs, &partials));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

proptest! {
    #![proptest_config(config(5000))]

    /// Section specs: parsed or refused; `MIME` only with a part number,
    /// field lists never empty.
    #[test]
    fn section_specs_parse_or_refuse(spec in section_specs()) {
        let parsed = within_time_limit("Section::parse", move || Section::parse(&spec));
        match parsed.map(|s| (s.part.is_empty(), s.text)) {
            Some((true, SectionText::Mime)) => prop_assert!(false, "MIME without a part number"),
            Some((_, SectionText::HeaderFields { fields, .. })) => prop_assert!(!fields.is_empty()),
            _ => {}
        }
    }

    /// `partial` never reaches outside its bytes or beyond its length.
    #[test]
    fn partials_stay_in_bounds(bytes in vec(any::<u8>(), 0..64), origin in prop_oneof![0u64..80, any::<u64>()], length in proptest::option::of(prop_oneof![0u64..80, any::<u64>()])) {
        let cut = partial(&bytes, origin, length).to_vec();
        let start = (origin as usize).min(bytes.len());
        let expected_len = bytes.len().saturating_sub(start).min(length.map_or(usize::MAX, |l| l.min(usize::MAX as u64) as usize));
        prop_assert_eq!(cut.len(), expected_len);
        prop_assert!(cut.is_empty() || bytes[start..].starts_with(&cut));
    }
}

#[test]
fn views_of_deeply_nested_messages() {
    // 300 nested multiparts, and 300 nested message/rfc822 parts.
    let mut multipart = Vec::new();
    for i in 0..300 {
        multipart.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n").as_bytes());
    }
    multipart.extend_from_slice(b"\r\ninnermost\r\n");
    let rfc822 = "Content-Type: message/rfc822\r\n\r\n".repeat(300).into_bytes();
    for message in [multipart, rfc822] {
        let result = within_time_limit("MessageView", move || {
            check_view(
                &message,
                &[Section::all()],
                &[b"1.1.1.1.1.1.1.1.1.1.1.TEXT".to_vec()],
                &[(0, Some(10))],
            )
        });
        assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

// ---------------------------------------------------------------------------
// Credentials and emitted strings
// ---------------------------------------------------------------------------

const SASL_TOKENS: &[&[u8]] = &[
    b"\0",
    b"\x01",
    b"user=",
    b"a=",
    b"n,",
    b",",
    b"=2C",
    b"=3D",
    b"erin@example.org",
    b"auth=Bearer x",
    b"\xff",
];

proptest! {
    #![proptest_config(config(4000))]

    /// SASL responses: any line decodes or is refused; base64 of any bytes
    /// decodes back to them.
    #[test]
    fn sasl_responses_decode(line in imap_bytes(), data in vec(any::<u8>(), 0..100)) {
        let encoded = [base64::engine::general_purpose::STANDARD.encode(&data).into_bytes(), b"\r\n".to_vec()].concat();
        let (_any, back) = within_time_limit("decode_response", move || (decode_response(&line).is_ok(), decode_response(&encoded)));
        prop_assert_eq!(back, Ok(data));
    }

    /// Credentials of any mechanism and content: a user name or an error,
    /// never a panic; PLAIN's authcid is the user.
    #[test]
    fn user_names_from_any_credentials(
        mechanism in select(vec!["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER", "CRAM-MD5", "", "plain"]),
        response in prop_oneof![vec(any::<u8>(), 0..64), soup(SASL_TOKENS)],
        authcid in "[a-z@.]{1,20}",
    ) {
        let sasl = Credentials::Sasl { mechanism: mechanism.to_string(), response: response.clone() };
        let login = Credentials::Login { user: response.clone(), password: response };
        let plain = Credentials::Sasl { mechanism: "PLAIN".into(), response: format!("admin\0{authcid}\0pw").into_bytes() };
        let (_s, l, p) = within_time_limit("Credentials::user", move || (sasl.user().is_ok(), login.user(), plain.user()));
        prop_assert!(l.is_ok());
        prop_assert_eq!(p, Ok(authcid));
    }

    /// Strings written for the client parse back: `emit::string` exactly,
    /// the unfolded and human forms as one well-formed string.
    #[test]
    fn emitted_strings_are_well_formed(data in prop_oneof![vec(any::<u8>(), 0..80), soup(TOKENS)]) {
        let input = data.clone();
        let (plain, unfolded, human) = within_time_limit("emit", move || {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            emit::string(&mut a, &input);
            emit::nstring_unfolded(&mut b, Some(&input[..]));
            emit::string_for_humans(&mut c, &input);
            (a, b, c)
        });
        prop_assert_eq!(Value::parse(&plain), Some(Value::String(data)));
        for (what, out) in [("nstring_unfolded", &unfolded), ("string_for_humans", &human)] {
            prop_assert_eq!(value_len(out, 0), Some(out.len()), "{} gave {:?}", what, lossy(out));
            prop_assert!(matches!(Value::parse(out), Some(Value::String(_))));
        }
    }
}

// ---------------------------------------------------------------------------
// A raw IMAP client
// ---------------------------------------------------------------------------

/// How long a client waits for any answer before calling it a hang.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw IMAP client over TCP.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// What a connection did after malformed input (shown in failures).
#[derive(Debug)]
#[allow(dead_code)]
enum Outcome {
    /// A `BAD`, `NO` or `BYE` line (tagged or untagged), as received.
    Refused(String),
    /// A tagged `OK`: the command was not malformed after all (for the
    /// server that judged it).
    Completed(String),
    /// The connection closed (or was reset); what arrived before.
    Closed(String),
}

impl Conn {
    fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut c = Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.line("the greeting").expect("a greeting");
        assert!(greeting.starts_with(b"* OK"), "{}", lossy(&greeting));
        c
    }

    /// A connection logged in as `user` with `pass`, INBOX selected.
    fn logged_in(addr: SocketAddr, user: &str, pass: &str) -> Conn {
        let mut c = Conn::connect(addr);
        let login = c.command("l1", &format!("LOGIN {user} \"{pass}\""));
        assert!(login.contains("l1 OK"), "{login}");
        let select = c.command("l2", "SELECT INBOX");
        assert!(select.contains("l2 OK"), "{select}");
        c
    }

    /// Sends bytes; the peer may already have closed (that shows in what
    /// is read next).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes);
        let _ = self.writer.flush();
    }

    /// One line, `None` at the end of the connection. Panics after
    /// [`READ_TIMEOUT`] without one: that is a hang.
    fn line(&mut self, waiting_for: &str) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!(
                    "no answer within {READ_TIMEOUT:?} while waiting for {waiting_for} (got {:?}): a hang",
                    lossy(&line)
                )
            }
            Err(_) => None,
        }
    }

    /// `n` bytes of literal data, or what arrived before the end.
    fn data(&mut self, n: usize, waiting_for: &str) -> Result<Vec<u8>, Vec<u8>> {
        let mut data = Vec::new();
        match (&mut self.reader).take(n as u64).read_to_end(&mut data) {
            Ok(_) if data.len() == n => Ok(data),
            Ok(_) => Err(data),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("no literal data within {READ_TIMEOUT:?} while waiting for {waiting_for}: a hang")
            }
            Err(_) => Err(data),
        }
    }

    /// Sends `command` and returns every line up to the tagged one.
    fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        lossy(
            &self
                .until(tag)
                .unwrap_or_else(|so_far| panic!("connection closed during {command}; got {}", lossy(&so_far))),
        )
    }

    /// Everything up to and including the line tagged `tag`, literals
    /// included; `Err` with what arrived when the connection closes first.
    fn until(&mut self, tag: &str) -> Result<Vec<u8>, Vec<u8>> {
        let mut out = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let Some(line) = self.line(&format!("the answer tagged {tag}")) else {
                return Err(out);
            };
            out.extend_from_slice(&line);
            if line.starts_with(prefix.as_bytes()) {
                return Ok(out);
            }
            if let Ok(Some(literal)) = announced_literal(&line) {
                match self.data(literal.size as usize, tag) {
                    Ok(data) => out.extend_from_slice(&data),
                    Err(data) => {
                        out.extend_from_slice(&data);
                        return Err(out);
                    }
                }
            }
        }
    }

    /// Reads until a refusal, a tagged `OK` or the end of the connection.
    fn outcome(&mut self, what: &str) -> Outcome {
        let mut seen = Vec::new();
        loop {
            let Some(line) = self.line(what) else {
                return Outcome::Closed(lossy(&seen));
            };
            seen.extend_from_slice(&line);
            if line.starts_with(b"+") {
                // The server inviting a literal: not an outcome.
                continue;
            }
            let mut words = line.split(|&b| b == b' ');
            words.next();
            let status = words.next().map(|w| trim_eol(w).to_ascii_uppercase());
            if matches!(status.as_deref(), Some(b"BAD" | b"NO" | b"BYE")) {
                return Outcome::Refused(lossy(&line));
            }
            if status.as_deref() == Some(b"OK") && !line.starts_with(b"* ") {
                return Outcome::Completed(lossy(&line));
            }
        }
    }
}

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `BAD`, `NO` or `BYE`.
    Refusal,
    /// A `BYE` line or the connection closed.
    ByeOrClose,
    /// A refusal, a close, or (for input the server accepts) a tagged
    /// `OK`: anything but a hang.
    Either,
}

fn judge(what: &str, outcome: &Outcome, expect: Expect) {
    let ok = match (expect, outcome) {
        (Expect::Refusal, Outcome::Refused(_)) => true,
        (Expect::ByeOrClose, Outcome::Refused(line)) => line.contains(" BYE"),
        (Expect::ByeOrClose, Outcome::Closed(_)) => true,
        (Expect::Either, _) => true,
        _ => false,
    };
    assert!(ok, "{what}: expected {expect:?}, got {outcome:?}");
}

/// A new connection can log in and select INBOX, and the proxy has not
/// panicked anywhere.
fn still_serves(proxy: &Proxy, user: &str) {
    let mut c = Conn::logged_in(proxy.imap, user, &password(user));
    assert!(c.command("z1", "NOOP").contains("z1 OK"));
    assert!(c.command("z2", "LOGOUT").contains("z2 OK"));
    let log = proxy.log_text();
    assert!(!log.contains("panicked"), "the proxy panicked:\n{log}");
}

/// Deterministic binary junk: `n` lines of bytes without LF.
fn junk_lines(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            let mut line: Vec<u8> = (0..(x % 200 + 1))
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 33) as u8
                })
                .filter(|&b| b != b'\n')
                .collect();
            // No announcement at the end: junk, not a literal.
            if line.last() == Some(&b'}') {
                line.pop();
            }
            line.extend_from_slice(b"\r\n");
            line
        })
        .collect()
}

const USER: &str = "erin@example.org";

// ---------------------------------------------------------------------------
// Malformed client input, live
// ---------------------------------------------------------------------------

#[test]
fn malformed_client_input_before_login() {
    let erin = User::new(USER);
    let proxy = Proxy::start(&erin, None, "");
    let mut cases: Vec<(String, Vec<u8>, bool, Expect)> = vec![
        ("an untagged word".into(), b"garbage\r\n".to_vec(), false, Expect::Refusal),
        ("a sentence".into(), b"hello there, IMAP?\r\n".to_vec(), false, Expect::Refusal),
        ("an empty line".into(), b"\r\n".to_vec(), false, Expect::Refusal),
        ("a bare LF".into(), b"\n".to_vec(), false, Expect::Refusal),
        (
            "a line over 64 KiB".into(),
            [vec![b'a'; 64 * 1024 + 100], b"\r\n".to_vec()].concat(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a line over 64 KiB without CRLF".into(),
            vec![b'x'; 200 * 1024],
            false,
            Expect::ByeOrClose,
        ),
        ("{abc}".into(), b"a1 LOGIN {abc}\r\n".to_vec(), false, Expect::ByeOrClose),
        (
            "{99999999999999999999}".into(),
            b"a1 LOGIN {99999999999999999999}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "{18446744073709551615+}".into(),
            b"a1 LOGIN {18446744073709551615+}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a literal over the pre-login limit".into(),
            b"a1 LOGIN {70000}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a non-synchronizing literal over the limit".into(),
            [&b"a1 LOGIN {70000+}\r\n"[..], &[b'u'; 1000]].concat(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a second literal over the limit".into(),
            b"a1 LOGIN {3+}\r\nabc {70000+}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "an APPEND whose literal never arrives".into(),
            b"a1 APPEND INBOX {100}\r\nonly some".to_vec(),
            true,
            Expect::ByeOrClose,
        ),
        (
            "a line cut before its CRLF".into(),
            b"a1 LOGIN erin@example.org".to_vec(),
            true,
            Expect::ByeOrClose,
        ),
        ("NUL after the command".into(), b"a1 NOOP\0\r\n".to_vec(), false, Expect::Refusal),
        ("NUL bytes only".into(), b"\0\0\0\0\r\n".to_vec(), false, Expect::Refusal),
        (
            "NUL in the password".into(),
            b"a1 LOGIN erin@example.org pw-\0erin\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        ("a lone DONE".into(), b"DONE\r\n".to_vec(), false, Expect::Refusal),
        ("IDLE before login".into(), b"a1 IDLE\r\n".to_vec(), false, Expect::Refusal),
        ("LOGIN without arguments".into(), b"a1 LOGIN\r\n".to_vec(), false, Expect::Refusal),
        (
            "LOGIN with an unterminated quote".into(),
            b"a1 LOGIN \"erin@example.org pw-erin\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "LOGIN with three arguments".into(),
            b"a1 LOGIN a b c\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "an unknown SASL mechanism".into(),
            b"a1 AUTHENTICATE CRAM-MD5\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "SASL-IR that is not base64".into(),
            b"a1 AUTHENTICATE PLAIN !!!notbase64\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "an empty PLAIN response".into(),
            b"a1 AUTHENTICATE PLAIN =\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "a PLAIN response without NULs".into(),
            b"a1 AUTHENTICATE PLAIN ZXJpbkBleGFtcGxlLm9yZw==\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "a cancelled AUTHENTICATE".into(),
            b"a1 AUTHENTICATE PLAIN\r\n*\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "AUTHENTICATE, then junk".into(),
            b"a1 AUTHENTICATE LOGIN\r\n\xff\xfe\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "AUTHENTICATE, then the end".into(),
            b"a1 AUTHENTICATE XOAUTH2\r\n".to_vec(),
            true,
            Expect::Either,
        ),
    ];
    for (i, line) in junk_lines(7, 12).into_iter().enumerate() {
        cases.push((format!("binary junk #{i}"), line, false, Expect::Either));
    }
    for (what, bytes, close_write, expect) in cases {
        let mut c = Conn::connect(proxy.imap);
        c.send(&bytes);
        if close_write {
            let _ = c.writer.shutdown(Shutdown::Write);
        }
        let outcome = c.outcome(&what);
        judge(&what, &outcome, expect);
    }
    // Clear text pipelined after STARTTLS (an injection): OK, then the
    // connection closes.
    let mut c = Conn::connect(proxy.imap);
    c.send(b"a1 STARTTLS\r\na2 LOGIN erin@example.org pw-erin\r\n");
    assert!(matches!(c.outcome("STARTTLS"), Outcome::Completed(l) if l.starts_with("a1 OK")));
    judge(
        "clear text after STARTTLS",
        &c.outcome("clear text after STARTTLS"),
        Expect::ByeOrClose,
    );
    // Pipelined: every garbage line of one connection gets its own BAD.
    let mut c = Conn::connect(proxy.imap);
    c.send(b"x\r\ny\r\nDONE\r\n\0\r\na1 NOOP\r\n");
    for what in ["x", "y", "DONE", "NUL"] {
        judge(what, &c.outcome(what), Expect::Refusal);
    }
    assert_eq!(c.line("NOOP").map(|l| lossy(&l)).as_deref(), Some("a1 OK NOOP completed\r\n"));
    still_serves(&proxy, USER);
}

#[test]
fn malformed_client_input_after_login() {
    let erin = User::new(USER);
    let proxy = Proxy::start(&erin, None, "");
    let pass = password(USER);
    let mut cases: Vec<(String, Vec<u8>, bool, Expect)> = vec![
        (
            "an unknown command".into(),
            b"a2 FROB nonsense\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        ("an untagged word".into(), b"garbage\r\n".to_vec(), false, Expect::Refusal),
        ("an empty line".into(), b"\r\n".to_vec(), false, Expect::Refusal),
        (
            "a line over 1 MiB".into(),
            [vec![b'a'; 1024 * 1024 + 100], b"\r\n".to_vec()].concat(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a 200 KiB line (within the proxy's limit, over Dovecot's)".into(),
            [&b"a2 NOOP "[..], &vec![b'a'; 200 * 1024], b"\r\n"].concat(),
            false,
            Expect::Either,
        ),
        ("{abc}".into(), b"a2 NOOP {abc}\r\n".to_vec(), false, Expect::ByeOrClose),
        (
            "{99999999999999999999}".into(),
            b"a2 SEARCH TEXT {99999999999999999999}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "a huge synchronizing literal for SEARCH".into(),
            b"a2 SEARCH TEXT {99999999999}\r\n".to_vec(),
            false,
            Expect::Either,
        ),
        (
            "an APPEND over the size limit".into(),
            b"a2 APPEND INBOX {99999999999}\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "a non-synchronizing APPEND over the size limit".into(),
            b"a2 APPEND INBOX {99999999999+}\r\n".to_vec(),
            false,
            Expect::ByeOrClose,
        ),
        (
            "an APPEND whose literal never arrives".into(),
            b"a2 APPEND INBOX {100}\r\nonly some".to_vec(),
            true,
            Expect::ByeOrClose,
        ),
        (
            "an APPEND cut after its literal".into(),
            b"a2 APPEND INBOX {5+}\r\nhello".to_vec(),
            true,
            Expect::ByeOrClose,
        ),
        (
            "an APPEND without a literal".into(),
            b"a2 APPEND INBOX\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "an APPEND with CATENATE".into(),
            b"a2 APPEND INBOX CATENATE (URL \"/INBOX;UID=1\")\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "an APPEND of binary junk to a missing mailbox".into(),
            [&b"a2 APPEND Sealpost-no-such-box {7+}\r\n"[..], b"\xff\0\xfe\r\n\r\n", b"\r\n"].concat(),
            false,
            Expect::Refusal,
        ),
        (
            "an APPEND with a broken flag list".into(),
            b"a2 APPEND INBOX (\\Seen {5+}\r\nhello\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "a cut command with a literal".into(),
            b"a2 SEARCH TEXT {10}\r\nabc".to_vec(),
            true,
            Expect::ByeOrClose,
        ),
        ("NUL after the command".into(), b"a2 NOOP\0\r\n".to_vec(), false, Expect::Refusal),
        (
            "NUL in a mailbox name".into(),
            b"a2 SELECT \"IN\0BOX\"\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        ("a lone DONE".into(), b"DONE\r\n".to_vec(), false, Expect::Refusal),
        (
            "IDLE, then garbage".into(),
            b"a2 IDLE\r\n\xff\xfe garbage\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "IDLE, then a command".into(),
            b"a2 IDLE\r\na3 NOOP\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "an unbalanced FETCH".into(),
            b"a2 FETCH 1 (BODY[\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        (
            "a FETCH with an unclosed section".into(),
            b"a2 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From])\r\n".to_vec(),
            false,
            Expect::Refusal,
        ),
        // Dovecot accepts this one.
        (
            "a FETCH with a stray bracket".into(),
            b"a2 FETCH 1 (FLAGS] BODY.PEEK[])\r\n".to_vec(),
            false,
            Expect::Either,
        ),
        ("a FETCH of nothing".into(), b"a2 FETCH 1 ()\r\n".to_vec(), false, Expect::Refusal),
        (
            "a FETCH with a bad partial".into(),
            b"a2 FETCH 1 BODY.PEEK[]<99999999999999999999.5>\r\n".to_vec(),
            false,
            Expect::Either,
        ),
        ("COMPRESS".into(), b"a2 COMPRESS DEFLATE\r\n".to_vec(), false, Expect::Refusal),
    ];
    for (i, line) in junk_lines(11, 12).into_iter().enumerate() {
        cases.push((format!("binary junk #{i}"), line, false, Expect::Either));
    }
    for (what, bytes, close_write, expect) in cases {
        let mut c = Conn::logged_in(proxy.imap, USER, &pass);
        c.send(&bytes);
        if close_write {
            let _ = c.writer.shutdown(Shutdown::Write);
        }
        let outcome = c.outcome(&what);
        judge(&what, &outcome, expect);
    }
    still_serves(&proxy, USER);
}

/// Regression (found here, fixed): a synchronizing literal the server refuses desynchronises the
/// proxy. For a command it does not handle itself, `client_to_server`
/// (src/imap/session.rs, the byte-for-byte loop) forwards the line and then
/// waits for the literal unconditionally; Dovecot answers `a BAD` at once
/// for an unknown command (or `a NO` for any error it finds before the
/// literal) and the client, correctly, never sends the literal. The proxy
/// then takes the client's next bytes as that literal and everything
/// after as other commands, byte for byte: an `APPEND` that follows reaches
/// Dovecot unparsed, and the message is stored in clear at the provider.
#[test]
fn a_refused_synchronizing_literal_does_not_desynchronise_the_proxy() {
    let erin = User::new(USER);
    let proxy = Proxy::start(&erin, None, "");
    let pass = password(USER);
    let secret = token("desync-secret");
    let message = format!("From: erin@example.org\r\nTo: erin@example.org\r\nSubject: desync\r\n\r\n{secret}\r\n");
    let mut c = Conn::logged_in(proxy.imap, USER, &pass);
    c.command("c1", "CREATE SealpostFuzz");
    c.send(b"c2 FROB {5}\r\n");
    let refused = c.outcome("FROB");
    assert!(matches!(&refused, Outcome::Refused(l) if l.starts_with("c2 BAD")), "{refused:?}");
    c.send(format!("c3 APPEND SealpostFuzz {{{}}}\r\n", message.len()).as_bytes());
    let invitation = lossy(&c.line("the APPEND continuation").expect("an answer to APPEND"));
    if invitation.starts_with('+') {
        c.send(message.as_bytes());
        c.send(b"\r\n");
    }
    let answer = c.until("c3").map(|a| lossy(&a));
    drop(c);
    // What the provider holds.
    let stack = stack();
    let mut direct = Conn::connect(SocketAddr::from(([127, 0, 0, 1], stack.imap_port)));
    assert!(direct.command("d1", &format!("LOGIN {USER} \"{pass}\"")).contains("d1 OK"));
    assert!(direct.command("d2", "SELECT SealpostFuzz").contains("d2 OK"));
    let found = direct.command("d3", &format!("UID SEARCH BODY \"{secret}\""));
    assert!(
        found.starts_with("* SEARCH\r\n"),
        "the provider holds the message in clear (continuation {invitation:?}, answer {answer:?}):\n{found}"
    );
    assert!(
        invitation.starts_with("+ Ready for literal data"),
        "the APPEND was not taken by the proxy: {invitation:?}"
    );
}

// ---------------------------------------------------------------------------
// Malformed server input, from a scripted upstream
// ---------------------------------------------------------------------------

/// A scripted IMAP server over implicit TLS (the stack's certificate):
/// argv = port, certificate, key, case directory. The password a client
/// logs in with names the case; any command other than CAPABILITY, LOGIN,
/// SELECT/EXAMINE, NOOP and LOGOUT is answered with `CASE.answer` (with
/// `@TAG@` replaced by the command's tag), after which `CASE.after` says
/// what the server does: `continue`, `close` the connection, or `hold` it
/// open until the proxy closes it.
const SCRIPT: &str = r#"
import os, socket, ssl, sys, threading
cert, key, cases = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(32)
caps = b"IMAP4rev1 LITERAL+ AUTH=PLAIN IDLE"
print("ready", srv.getsockname()[1], flush=True)
def serve(raw):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY " + caps + b"] scripted ready\r\n")
        case = "normal"
        while True:
            line = f.readline()
            if not line:
                return
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            words = rest.split(b" ")
            cmd = words[0].upper()
            if cmd == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
            elif cmd == b"LOGIN":
                case = words[-1].strip(b'"').decode()
                conn.sendall(tag + b" OK [CAPABILITY " + caps + b"] logged in\r\n")
            elif cmd in (b"SELECT", b"EXAMINE"):
                conn.sendall(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] valid\r\n" + tag + b" OK [READ-WRITE] selected\r\n")
            elif cmd == b"NOOP":
                conn.sendall(tag + b" OK noop\r\n")
            elif cmd == b"LOGOUT":
                conn.sendall(b"* BYE bye\r\n" + tag + b" OK out\r\n")
                return
            else:
                base = os.path.join(cases, case)
                answer = open(base + ".answer", "rb").read().replace(b"@TAG@", tag)
                after = open(base + ".after").read().strip()
                conn.sendall(answer)
                if after == "close":
                    return
                if after == "hold":
                    while conn.recv(65536):
                        pass
                    return
    except Exception:
        pass
    finally:
        try:
            raw.close()
        except Exception:
            pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The login of the account the scripted server serves.
const SCRIPTED_LOGIN: &str = "fuzz@example.com";

struct Scripted {
    child: Child,
    port: u16,
    cases: tempfile::TempDir,
}

impl Scripted {
    fn start() -> Scripted {
        let stack = stack();
        let cases = tempfile::tempdir().unwrap();
        let (child, port) = scripted_server(
            SCRIPT,
            &[
                stack.server_cert.to_str().unwrap(),
                stack.server_key.to_str().unwrap(),
                cases.path().to_str().unwrap(),
            ],
        );
        Scripted { child, port, cases }
    }

    /// Sets what the server answers in case `name`.
    fn case(&self, name: &str, answer: &[u8], after: &str) {
        std::fs::write(self.cases.path().join(format!("{name}.answer")), answer).unwrap();
        std::fs::write(self.cases.path().join(format!("{name}.after")), after).unwrap();
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy with two accounts: [`SCRIPTED_LOGIN`] on the scripted server,
/// and [`USER`] on the stack's Dovecot.
fn scripted_proxy(upstream: &Scripted) -> (User, Proxy) {
    let stack = stack();
    let mut user = User::new(SCRIPTED_LOGIN);
    user.store.generate(USER, Some(PASSPHRASE.into()), false).unwrap();
    let extra = format!(
        "[[account]]\nlogin = \"{USER}\"\nsmtp = \"smtp://{host}:{smtp}\"\nimap = \"imap://{host}:{imap}\"\nca_file = \"{ca}\"\n",
        host = stack.tls_name,
        smtp = stack.submission_port,
        imap = stack.imap_port,
        ca = stack.ca_file.display()
    );
    let url = format!("imaps://localhost:{}", upstream.port);
    let proxy = Proxy::start_with(
        &user,
        Setup {
            imap_upstream: Some(&url),
            account: "trust = \"ca\"\n",
            extra: &extra,
            ..Setup::default()
        },
    );
    (user, proxy)
}

/// Logs in to case `name` of the scripted server, selects INBOX and sends
/// the FETCH every case answers.
fn fetch_in_case(proxy: &Proxy, name: &str) -> Conn {
    fetch_items_in_case(proxy, name, "BODY.PEEK[] BODYSTRUCTURE")
}

/// [`fetch_in_case`] asking for `items`.
fn fetch_items_in_case(proxy: &Proxy, name: &str, items: &str) -> Conn {
    let mut c = Conn::logged_in(proxy.imap, SCRIPTED_LOGIN, name);
    c.send(format!("f1 UID FETCH 1 ({items})\r\n").as_bytes());
    c
}

/// `* 1 FETCH (` + items + `)` CRLF.
fn fetch_line(items: &[&[u8]]) -> Vec<u8> {
    [&b"* 1 FETCH ("[..], &items.join(&b' '), b")\r\n"].concat()
}

/// The items of the one FETCH answer in `bytes` (the client's view),
/// read with the proxy's own framer and cursor.
fn fetch_items(bytes: &[u8]) -> Items {
    let data = bytes.to_vec();
    within_time_limit("reading the client's answer", move || {
        block_on(async move {
            let mut r = tokio::io::BufReader::new(&data[..]);
            let mut first = Vec::new();
            let literal = read_segment(&mut r, 1 << 22, &mut first).await.unwrap();
            let wire = Wire::read::<_, Vec<u8>>(&mut r, first, literal, spool_dir(), unlimited(1 << 22), Continuations::None)
                .await
                .unwrap();
            walk_fetch(&wire).unwrap().expect("a well-formed FETCH answer")
        })
    })
}

/// The contents of a literal value (`{n}` CRLF data).
fn literal_data(value: &[u8]) -> &[u8] {
    let start = value.windows(2).position(|w| w == b"\r\n").expect("a literal") + 2;
    &value[start..]
}

/// A PGP/MIME message whose armor is garbage, and its FETCH items.
fn undecryptable() -> (Vec<u8>, Vec<u8>) {
    let message = common::pgp_mime(
        &[
            "From: Alice <alice@example.org>",
            "To: fuzz@example.com",
            "Subject: [...]",
            "Message-ID: <garbage@x>",
        ],
        FAKE_ARMOR,
    );
    (message.clone(), [&b"BODY[] "[..], &lit(&message)].concat())
}

#[test]
fn malformed_server_input() {
    let upstream = Scripted::start();
    let (_user, proxy) = scripted_proxy(&upstream);
    let tagged_ok = b"@TAG@ OK fetched\r\n";
    let probe = |data: &[u8]| [&b"BODY[TEXT]<0> "[..], &lit(data)].concat();

    // A well-formed answer about a plain message: as the server wrote it,
    // without the item only the proxy asked for (the start of the text:
    // the client asked for the header only).
    let header = &LETTER[..LETTER.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4];
    let body = [&b"BODY[HEADER] "[..], &lit(header)].concat();
    let structure = b"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 42 1 NIL NIL NIL NIL)";
    upstream.case(
        "normal",
        &[
            fetch_line(&[b"UID 1", structure, &body, &probe(b"The numbers")]),
            tagged_ok.to_vec(),
        ]
        .concat(),
        "continue",
    );
    let mut c = fetch_items_in_case(&proxy, "normal", "BODY.PEEK[HEADER] BODYSTRUCTURE");
    assert_eq!(
        lossy(&c.until("f1").unwrap()),
        lossy(&[fetch_line(&[b"UID 1", structure, &body]), b"f1 OK fetched\r\n".to_vec()].concat())
    );

    // Broken FETCH answers pass as the server wrote them, and the session
    // goes on.
    let broken = [
        b"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1 BODY[] {5}\r\nhello\r\n".to_vec(),
        b"* 1 FETCH (UID 1 FLAGS (\\Seen)))\r\n".to_vec(),
        b"* 1 FETCH (UID)\r\n".to_vec(),
        b"* 1 FETCH UID 1\r\n".to_vec(),
        b"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1 \"unterminated)\r\n".to_vec(),
        [
            &b"* 1 FETCH (UID 1 BODYSTRUCTURE "[..],
            &vec![b'('; 5000],
            &vec![b')'; 5000],
            b")\r\n",
        ]
        .concat(),
        [
            &b"* 1 FETCH (UID 1 BODYSTRUCTURE "[..],
            PGP_MIME_STRUCTURE,
            b" BODY[] {5}\r\nhello BODY[] ~{3}\r\nabc\r\n",
        ]
        .concat(),
    ]
    .concat();
    upstream.case("broken", &[broken.clone(), tagged_ok.to_vec()].concat(), "continue");
    let mut c = fetch_in_case(&proxy, "broken");
    assert_eq!(
        lossy(&c.until("f1").unwrap()),
        lossy(&[broken, b"f1 OK fetched\r\n".to_vec()].concat())
    );
    assert_eq!(c.command("n1", "NOOP"), "n1 OK noop\r\n");

    // Non-UTF-8 and NUL bytes everywhere: byte for byte (less the probe).
    let nonutf8_items: [&[u8]; 4] = [
        b"UID 1",
        b"FLAGS (\\Seen $Label\xff\xfe)",
        b"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"x-\xe9\xff\") NIL NIL \"8bit\" 4 1 NIL NIL NIL NIL)",
        b"BODY[] {4}\r\n\xff\xfe\x80\x00",
    ];
    let after = b"* 2 EXISTS \xc3\x28\r\n* OK [ALERT] \xff\x00\xfe\r\n@TAG@ OK \xff\xfe done\r\n";
    upstream.case(
        "nonutf8",
        &[
            fetch_line(&[nonutf8_items[0], nonutf8_items[1], nonutf8_items[2], nonutf8_items[3]]),
            after.to_vec(),
        ]
        .concat(),
        "continue",
    );
    let mut c = fetch_in_case(&proxy, "nonutf8");
    let expected = [fetch_line(&nonutf8_items), after.to_vec()].concat().replace_tag("f1");
    assert_eq!(c.until("f1").unwrap(), expected);

    // Undecryptable PGP/MIME: the client gets the original message plus
    // Sealpost-Status: failed, and a BODYSTRUCTURE that describes it.
    let (original, body) = undecryptable();
    upstream.case(
        "armor",
        &[
            fetch_line(&[b"UID 1", &[b"BODYSTRUCTURE ", PGP_MIME_STRUCTURE].concat(), &body]),
            tagged_ok.to_vec(),
        ]
        .concat(),
        "continue",
    );
    let mut c = fetch_in_case(&proxy, "armor");
    let answer = c.until("f1").unwrap();
    assert!(answer.ends_with(b"f1 OK fetched\r\n"), "{}", lossy(&answer));
    let items = fetch_items(&answer);
    let names: Vec<String> = items.iter().map(|(n, _)| lossy(n)).collect();
    assert_eq!(names, ["UID", "BODYSTRUCTURE", "BODY[]"]);
    let (status, rest) = common::without_status(literal_data(&items[2].1));
    assert!(status.starts_with("failed"), "{status}");
    assert_eq!(lossy(&rest), lossy(&original));
    assert_one_value("BODYSTRUCTURE", &items[1].1);
    assert_eq!(c.command("n1", "NOOP"), "n1 OK noop\r\n");

    // Answers that end the session: the client sees the connection close
    // (after whatever came before), never a hang.
    let huge_line = [&b"* OK "[..], &vec![b'x'; 2 * 1024 * 1024]].concat();
    let closing: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a connection closed mid-literal",
            b"* 1 FETCH (UID 1 BODY[] {100}\r\nonly ten b".to_vec(),
            "close",
        ),
        (
            "a giant literal, then the end",
            [&b"* 1 FETCH (UID 1 BODY[] {99999999999}\r\n"[..], &vec![b'x'; 65536]].concat(),
            "close",
        ),
        ("a bad literal announcement", b"* 1 FETCH (UID 1 BODY[] {12a}\r\n".to_vec(), "hold"),
        ("an untagged line of 2 MiB without CRLF", huge_line.clone(), "hold"),
        (
            "a FETCH line of 2 MiB after a literal",
            [&b"* 1 FETCH (UID 1 BODY[] {5}\r\nhello "[..], &huge_line].concat(),
            "hold",
        ),
        (
            "an untagged literal cut short",
            b"* 3 EXISTS\r\n* SEARCH {50}\r\nabc".to_vec(),
            "close",
        ),
        (
            "the end before the tagged answer",
            b"* 1 FETCH (UID 1 FLAGS ())\r\n".to_vec(),
            "close",
        ),
    ];
    for (i, (what, answer, after)) in closing.into_iter().enumerate() {
        let name = format!("closing{i}");
        upstream.case(&name, &answer, after);
        let mut c = fetch_in_case(&proxy, &name);
        let outcome = c.until("f1");
        assert!(outcome.is_err(), "{what}: the session went on: {:?}", outcome.map(|a| lossy(&a)));
    }

    // The proxy survived all of it: both accounts still work.
    upstream.case(
        "normal",
        &[fetch_line(&[b"UID 1", structure, &body]), tagged_ok.to_vec()].concat(),
        "continue",
    );
    let mut c = fetch_in_case(&proxy, "normal");
    assert!(c.until("f1").unwrap().ends_with(b"f1 OK fetched\r\n"));
    still_serves(&proxy, USER);
}

trait ReplaceTag {
    fn replace_tag(self, tag: &str) -> Vec<u8>;
}

impl ReplaceTag for Vec<u8> {
    fn replace_tag(self, tag: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = &self[..];
        while let Some(i) = rest.windows(5).position(|w| w == b"@TAG@") {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(tag.as_bytes());
            rest = &rest[i + 5..];
        }
        out.extend_from_slice(rest);
        out
    }
}

/// Regression (found here, fixed): a FETCH answer about an encrypted message with an item named
/// `BODY[` + non-UTF-8 + `]` panics the session. `answer_from`
/// (src/imap/fetch.rs) finds the `]` in the item's key, which is the name
/// through `String::from_utf8_lossy` (each bad byte becomes three), and
/// slices the raw name with that index: `&item.name[5..close]` is out of
/// range. The client's connection drops and the log shows the panic;
/// expected: the answer, with that item as the server wrote it (or
/// empty), and the tagged OK.
#[test]
fn a_non_utf8_section_name_from_the_server_does_not_panic() {
    let upstream = Scripted::start();
    let (_user, proxy) = scripted_proxy(&upstream);
    let (_original, body) = undecryptable();
    let answer = [
        fetch_line(&[
            b"UID 1",
            &[b"BODYSTRUCTURE ", PGP_MIME_STRUCTURE].concat(),
            &body,
            b"BODY[\xff\xfe] {3}\r\nabc",
        ]),
        b"@TAG@ OK fetched\r\n".to_vec(),
    ]
    .concat();
    upstream.case("badname", &answer, "continue");
    let mut c = fetch_in_case(&proxy, "badname");
    let got = c.until("f1");
    let log = proxy.log_text();
    assert!(
        !log.contains("panicked"),
        "the proxy panicked:\n{}",
        log.lines().filter(|l| l.contains("panicked")).collect::<Vec<_>>().join("\n")
    );
    assert!(got.is_ok_and(|a| a.ends_with(b"f1 OK fetched\r\n")));
}

/// Regression (found here, fixed): the session runs `capability::filter_line` on every server line
/// (src/imap/session.rs, `server_to_client`), and that function rewrites
/// any line containing `[CAPABILITY ` anywhere, not only capability
/// responses. A mailbox named `Projects [CAPABILITY BINARY] 2026` is
/// listed to the client as `Projects [CAPABILITY ] 2026`, a name that does
/// not exist; the same happens to status texts, ESEARCH, STATUS and any
/// FETCH answer the proxy does not rewrite.
#[test]
fn capability_text_inside_other_responses_passes_unchanged() {
    let upstream = Scripted::start();
    let (_user, proxy) = scripted_proxy(&upstream);
    let answer = b"* LIST (\\HasNoChildren) \"/\" \"Projects [CAPABILITY BINARY] 2026\"\r\n* STATUS \"x [CAPABILITY STARTTLS]\" (MESSAGES 1)\r\n@TAG@ OK listed\r\n";
    upstream.case("list", answer, "continue");
    let mut c = Conn::logged_in(proxy.imap, SCRIPTED_LOGIN, "list");
    let got = c.command("g1", "LIST \"\" \"*\"");
    assert_eq!(got, lossy(&answer.to_vec().replace_tag("g1")));
}
