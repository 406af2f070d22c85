//! Exact round trips through the IMAP proxy: a message a client uploads
//! (a draft, a Sent copy, a message moved by copy-and-delete) reads back
//! exactly as it was uploaded. Every message of a varied corpus (the test
//! corpus, also with LF line endings, and the hand-written and generated
//! messages of `imap_view.rs`) is APPENDed twice: through Sealpost, which
//! stores it encrypted to the account's own key, and directly to Dovecot,
//! which stores it as it is. For every FETCH item that depends on the
//! content (`BODY[]`, `RFC822*`, every section form and partial,
//! `BODYSTRUCTURE`, `BODY`, `ENVELOPE`, `RFC822.SIZE`) the answer through
//! Sealpost about the encrypted copy must equal, byte for byte, Dovecot's
//! answer about the plain one.
//!
//! The items that decode bodies, `BINARY[...]`, `BINARY.SIZE[...]` and
//! `PREVIEW` (`common::decoded`), are asked one FETCH each, since a part
//! that cannot be decoded fails the command: Sealpost's answer, tagged
//! response code included (`NO [UNKNOWN-CTE]`, `NO [PARSE]`), must equal
//! Dovecot's; where Dovecot's answer is one of its own errors (named in
//! `common::decoded`), Sealpost's must be what `MessageView` computes,
//! which `imap_view.rs` holds to Dovecot everywhere else.
//!
//! The same runs with Cyrus IMAP as the server, where only the whole
//! message is compared (its bytes, size, header): Sealpost answers every
//! item in Dovecot's forms and with Dovecot's reading of MIME, which
//! Cyrus does not share (see [`Server::compares`]). Messages Cyrus refuses
//! or rewrites when stored directly are skipped, and listed.
//!
//! `ROUNDTRIP_COUNT` (default 150) sets how many generated messages are
//! checked, `ROUNDTRIP_SEED` the first seed, `ROUNDTRIP_ONLY` keeps only
//! the cases whose name contains it. A failing message is written to
//! `$TMPDIR/roundtrip-fail-NAME.eml`, with both answers of each differing
//! item next to it (`.dovecot` or `.cyrus`, and `.sealpost`).

mod common;

use std::collections::HashMap;

use common::decoded;
use common::messages::{corpus_cases, generated, hand_written, Case};
use common::proxy::{proxy_to_cyrus, Proxy};
use common::rawimap::{cut, fetch_items, ok, probes, show, Imap, Mailbox};
use common::{contains, User};
use sealpost::imap::view::MessageView;

const USER: &str = "dave@example.com";

/// The corpus files again, with bare LF line endings, as some local tools
/// write mail: Dovecot serves them with CRLF, and so must Sealpost.
fn lf_only() -> Vec<Case> {
    corpus_cases()
        .into_iter()
        .map(|c| Case {
            name: c.name.replace("corpus/", "corpus-lf/"),
            bytes: c.bytes.iter().copied().filter(|&b| b != b'\r').collect(),
        })
        .collect()
}

/// FETCH items as asked for, and as the answer names them.
type Requests = Vec<(String, String)>;

/// Every content item: the whole message, its header and text in each
/// `RFC822*` form, the sections and partials `imap_view.rs` checks. The
/// forms that set `\Seen` come second, to be asked after the others.
fn requests() -> (Requests, Requests) {
    let mut peek: Requests = ["BODYSTRUCTURE", "BODY", "ENVELOPE", "RFC822.SIZE", "RFC822.HEADER"]
        .iter()
        .map(|s| (s.to_string(), s.to_string()))
        .collect();
    peek.extend(probes().iter().map(|p| (p.request(), p.response_name())));
    let seen = ["RFC822", "RFC822.TEXT", "BODY[]", "BODY[TEXT]", "BODY[1]"]
        .iter()
        .map(|s| (s.to_string(), s.to_string()))
        .collect();
    (peek, seen)
}

/// The answers to `requests` about message `uid` of the selected mailbox,
/// by response name.
fn fetch(imap: &mut Imap, uid: u32, requests: &[(String, String)], name: &str) -> HashMap<String, Vec<u8>> {
    let mut got = HashMap::new();
    for chunk in requests.chunks(40) {
        let asked: Vec<&str> = chunk.iter().map(|(r, _)| r.as_str()).collect();
        let cmd = format!("UID FETCH {uid} ({})", asked.join(" "));
        let (untagged, done) = imap.command(cmd.as_bytes());
        assert!(ok(&done), "{name}: {cmd}: {}", show(&done));
        for resp in untagged.iter().filter(|r| r.windows(7).any(|w| w == b"FETCH (")) {
            let items = fetch_items(resp).unwrap_or_else(|| panic!("{name}: unreadable answer {}", show(resp)));
            got.extend(items);
        }
    }
    got
}

/// One message, uploaded both ways.
struct Uploaded<'a> {
    case: &'a Case,
    plain_uid: u32,
    sealed_uid: u32,
}

fn compare(
    server: Server,
    direct: &mut Imap,
    through: &mut Imap,
    one: &Uploaded<'_>,
    requests: &[(String, String)],
    failures: &mut Vec<String>,
) {
    let name = &one.case.name;
    let want = fetch(direct, one.plain_uid, requests, name);
    let have = fetch(through, one.sealed_uid, requests, name);
    let mut failed = false;
    for (_, item) in requests.iter().filter(|(_, item)| server.compares(item)) {
        match (want.get(item), have.get(item)) {
            (Some(want), Some(have)) if want == have => {}
            (Some(want), Some(have)) if server.same_content(want, have) => {}
            (want, have) => {
                let stem = std::env::temp_dir().join(format!(
                    "roundtrip-fail-{}-{}",
                    name.replace(['/', ' '], "_"),
                    item.replace(['/', ' ', '[', ']', '(', ')', '"'], "_")
                ));
                let none = b"(no answer)".to_vec();
                let _ = std::fs::write(stem.with_extension(server.name().to_ascii_lowercase()), want.unwrap_or(&none));
                let _ = std::fs::write(stem.with_extension("sealpost"), have.unwrap_or(&none));
                failures.push(format!(
                    "{name}: {item}\n    {}:  {}\n    sealpost: {}",
                    server.name(),
                    cut(&show(want.unwrap_or(&none))),
                    cut(&show(have.unwrap_or(&none)))
                ));
                failed = true;
            }
        }
    }
    if failed {
        let path = std::env::temp_dir().join(format!("roundtrip-fail-{}.eml", name.replace(['/', ' '], "_")));
        let _ = std::fs::write(&path, &one.case.bytes);
        failures.push(format!("    (message written to {})", path.display()));
    }
}

fn has_bare_cr(message: &[u8]) -> bool {
    message
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && message.get(i + 1) != Some(&b'\n'))
}

/// The octets of an IMAP string as answered (`{n}` literal or quoted).
fn string_value(answer: &[u8]) -> Option<Vec<u8>> {
    if let Some(rest) = answer.strip_prefix(b"{") {
        let close = rest.iter().position(|&b| b == b'}')?;
        return rest[close + 1..].strip_prefix(b"\r\n").map(<[u8]>::to_vec);
    }
    let inner = answer.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if b == b'\\' && !escaped {
            escaped = true;
        } else {
            out.push(b);
            escaped = false;
        }
    }
    Some(out)
}

/// The decoding items of one message, both ways. `plain` is the mailbox
/// the direct connection has selected, to select again after Dovecot
/// dropped the connection (one of its errors).
fn compare_decoded(direct: &mut Imap, through: &mut Imap, one: &Uploaded<'_>, plain: &str, failures: &mut Vec<String>) {
    let name = &one.case.name;
    let view = MessageView::parse(&one.case.bytes);
    let items = decoded::items(&view);
    let mut reconnect = || {
        let mut imap = Imap::connect(USER);
        let (_, done) = imap.command(format!("SELECT {plain}").as_bytes());
        assert!(ok(&done), "SELECT: {}", show(&done));
        imap
    };
    let want = decoded::ask_all(direct, one.plain_uid, &items, &mut reconnect);
    let have = decoded::ask_all(through, one.sealed_uid, &items, &mut || {
        panic!("{name}: Sealpost dropped the connection")
    });
    for (i, item) in items.iter().enumerate() {
        let (dovecot, sealpost) = (&want[i], &have[i]);
        let excused = || decoded::dovecot_error(&view, &items, &want, i).is_some() && decoded::agrees(&item.wanted, sealpost);
        if dovecot != sealpost && !excused() {
            failures.push(format!(
                "{name}: {}\n    dovecot:  {}\n    sealpost: {}",
                item.request,
                cut(&dovecot.show()),
                cut(&sealpost.show())
            ));
        }
    }
}

/// The IMAP server behind the proxy, and the direct connection to it.
#[derive(Clone, Copy)]
enum Server {
    Dovecot,
    Cyrus,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Dovecot => "Dovecot",
            Server::Cyrus => "Cyrus",
        }
    }

    /// Whether an item is compared against this server. Sealpost answers
    /// in Dovecot's forms and with Dovecot's reading of MIME (see
    /// `src/imap/view`), so against Dovecot every item and every byte
    /// counts. Cyrus differs from Dovecot in form (upper-case
    /// BODYSTRUCTURE atoms, `NIL` for a part that does not exist, `""` for
    /// `{0}`, its own placeholders in ENVELOPE) and in reading: a part's
    /// `HEADER.FIELDS` on a non-message part, sections of malformed MIME.
    /// Against Cyrus the whole message must be the same: its bytes, size,
    /// header and text, decoded from their string forms.
    fn compares(self, item: &str) -> bool {
        match self {
            Server::Dovecot => true,
            Server::Cyrus => matches!(item, "BODY[]" | "RFC822" | "RFC822.SIZE" | "RFC822.HEADER" | "BODY[HEADER]"),
        }
    }

    /// How many messages must be compared: the 100 for Dovecot;
    /// Cyrus refuses much of the generated corpus itself (NUL octets,
    /// lines it does not take for a header), and what it takes is fewer.
    fn min_corpus(self) -> usize {
        match self {
            Server::Dovecot => 100,
            Server::Cyrus => 80,
        }
    }

    /// Whether answers that differ in their bytes say the same (for
    /// Cyrus: the same string in another form).
    fn same_content(self, want: &[u8], have: &[u8]) -> bool {
        match self {
            Server::Dovecot => false,
            Server::Cyrus => string_value(want).is_some() && string_value(want) == string_value(have),
        }
    }

    /// How to log in there directly.
    fn direct(self) -> fn(&str) -> Imap {
        match self {
            Server::Dovecot => Imap::connect,
            Server::Cyrus => Imap::cyrus,
        }
    }

    fn proxy(self, user: &User) -> Proxy {
        match self {
            Server::Dovecot => Proxy::start(user, None, ""),
            Server::Cyrus => proxy_to_cyrus(user),
        }
    }
}

#[test]
fn uploads_read_back_exactly_as_dovecot_serves_them_in_clear() {
    round_trips(Server::Dovecot);
}

#[test]
fn uploads_read_back_exactly_as_cyrus_serves_them_in_clear() {
    round_trips(Server::Cyrus);
}

fn round_trips(server: Server) {
    let count: usize = std::env::var("ROUNDTRIP_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(150);
    let seed: u64 = std::env::var("ROUNDTRIP_SEED").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let mut cases = corpus_cases();
    cases.extend(lf_only());
    cases.extend(hand_written());
    cases.extend(generated(seed, count));
    if let Ok(only) = std::env::var("ROUNDTRIP_ONLY") {
        cases.retain(|c| c.name.contains(&only));
    }

    let dave = User::new(USER);
    let proxy = server.proxy(&dave);
    let certificate = dave.dir.path().join("tls/local-cert.pem");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let run = format!("{}-{nanos}", std::process::id());
    let plain = Mailbox {
        user: USER,
        name: format!("roundtrip-plain-{run}"),
        at: server.direct(),
    };
    let sealed = Mailbox {
        user: USER,
        name: format!("roundtrip-sealed-{run}"),
        at: server.direct(),
    };
    let mut direct = server.direct()(USER);
    for mailbox in [&plain, &sealed] {
        let (_, done) = direct.command(format!("CREATE {}", mailbox.name).as_bytes());
        assert!(ok(&done), "CREATE: {}", show(&done));
    }
    let mut through = Imap::through_proxy(proxy.imap, &certificate, USER);

    let mut uploaded = Vec::with_capacity(cases.len());
    let mut refused_directly = Vec::new();
    for case in &cases {
        if matches!(server, Server::Cyrus) && has_bare_cr(&case.bytes) {
            // Cyrus stores a bare CR as CRLF (Dovecot drops it, and so
            // does Sealpost's view): what it serves is no longer the upload.
            refused_directly.push(format!("{}: bare CR, which Cyrus rewrites", case.name));
            continue;
        }
        let plain_uid = match direct.append(&plain.name, &case.bytes) {
            Ok(uid) => uid,
            // Cyrus refuses some messages Dovecot takes (NUL octets, no
            // header first): nothing to compare with then.
            Err(e) if matches!(server, Server::Cyrus) => {
                refused_directly.push(format!("{}: {e}", case.name));
                continue;
            }
            Err(e) => panic!("{}: {e}", case.name),
        };
        let sealed_uid = through
            .append(&sealed.name, &case.bytes)
            .unwrap_or_else(|e| panic!("{} through Sealpost: {e}", case.name));
        uploaded.push(Uploaded {
            case,
            plain_uid,
            sealed_uid,
        });
    }

    // What the provider stores: every upload encrypted.
    let (_, done) = direct.command(format!("EXAMINE {}", sealed.name).as_bytes());
    assert!(ok(&done), "EXAMINE: {}", show(&done));
    for one in &uploaded {
        let stored = fetch(
            &mut direct,
            one.sealed_uid,
            &[("BODY.PEEK[]".into(), "BODY[]".into())],
            &one.case.name,
        );
        let stored = &stored["BODY[]"];
        assert!(
            contains(stored, b"Content-Type: multipart/encrypted;"),
            "{}: stored as {}",
            one.case.name,
            cut(&show(stored))
        );
        assert!(contains(stored, b"-----BEGIN PGP MESSAGE-----"), "{}", one.case.name);
    }

    let (peek, seen) = requests();
    let (_, done) = direct.command(format!("SELECT {}", plain.name).as_bytes());
    assert!(ok(&done), "SELECT: {}", show(&done));
    let (_, done) = through.command(format!("SELECT {}", sealed.name).as_bytes());
    assert!(ok(&done), "SELECT through Sealpost: {}", show(&done));
    eprintln!(
        "{}: {} messages compared, {} skipped: {refused_directly:#?}",
        server.name(),
        uploaded.len(),
        refused_directly.len()
    );
    let mut failures = Vec::new();
    for one in &uploaded {
        compare(server, &mut direct, &mut through, one, &peek, &mut failures);
        compare(server, &mut direct, &mut through, one, &seen, &mut failures);
        // Dovecot's decoding is the reference (its known errors excused);
        // Cyrus decodes in its own way, not compared.
        if matches!(server, Server::Dovecot) {
            compare_decoded(&mut direct, &mut through, one, &plain.name, &mut failures);
        }
    }
    direct.command(b"LOGOUT");
    through.command(b"LOGOUT");
    assert!(
        failures.is_empty(),
        "{} difference(s) from {} in {} messages:\n{}",
        failures.iter().filter(|f| !f.starts_with("    (")).count(),
        server.name(),
        uploaded.len(),
        failures.join("\n")
    );
    assert!(
        uploaded.len() >= server.min_corpus() || std::env::var_os("ROUNDTRIP_ONLY").is_some(),
        "a corpus of at least {} messages ({} refused by {} itself: {refused_directly:?})",
        server.min_corpus(),
        refused_directly.len(),
        server.name()
    );
}
