//! A minimal raw-socket IMAP client for the tests that compare FETCH
//! answers byte for byte: it reads answers with their literals and splits
//! FETCH items without interpreting the values, so that a value is
//! compared exactly as it was sent. It talks to Dovecot directly, or to a
//! Sealpost IMAP listener after STARTTLS.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

use super::stack::{password, stack};

/// A byte stream to an IMAP server: plain TCP, or TLS after STARTTLS.
pub trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

/// A logged-in IMAP session that reads answers with their literals and
/// leaves every value as it was sent.
pub struct Imap {
    reader: BufReader<Box<dyn Stream>>,
    tag: u32,
}

impl Imap {
    /// Logs `user` in at the test stack's Dovecot, without TLS.
    pub fn connect(user: &str) -> Imap {
        let s = stack();
        let stream = TcpStream::connect(s.addr(s.imap_port)).expect("Dovecot listens");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut imap = Imap {
            reader: BufReader::new(Box::new(stream)),
            tag: 0,
        };
        let greeting = imap.read_response();
        assert!(greeting.starts_with(b"* OK"), "greeting: {}", show(&greeting));
        imap.login(user);
        imap
    }

    /// Logs `user` in at the test stack's Cyrus over IMAPS, its
    /// certificate verified against the stack's CA.
    pub fn cyrus(user: &str) -> Imap {
        use rustls::pki_types::pem::PemObject;
        let s = stack();
        let stream = TcpStream::connect(s.addr(s.cyrus_imaps_port)).expect("Cyrus listens");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&s.ca_file).expect("the stack's CA"))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(s.tls_name.clone()).unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut imap = Imap {
            reader: BufReader::new(Box::new(rustls::StreamOwned::new(connection, stream))),
            tag: 0,
        };
        let greeting = imap.read_response();
        assert!(greeting.starts_with(b"* OK"), "greeting: {}", show(&greeting));
        imap.login(user);
        imap
    }

    /// Logs `user` in at a Sealpost IMAP listener (`addr`, STARTTLS)
    /// whose local certificate is `certificate` (PEM): the certificate is
    /// accepted only if it is exactly that one.
    pub fn through_proxy(addr: SocketAddr, certificate: &Path, user: &str) -> Imap {
        let mut stream = TcpStream::connect(addr).expect("Sealpost listens");
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut plain = BufReader::new(stream.try_clone().unwrap());
        let mut line = Vec::new();
        plain.read_until(b'\n', &mut line).unwrap();
        assert!(line.starts_with(b"* OK"), "greeting: {}", show(&line));
        stream.write_all(b"s STARTTLS\r\n").unwrap();
        loop {
            line.clear();
            plain.read_until(b'\n', &mut line).unwrap();
            if line.starts_with(b"s ") {
                assert!(ok(&line), "STARTTLS: {}", show(&line));
                break;
            }
        }
        let tls = pinned_tls(certificate, stream);
        let mut imap = Imap {
            reader: BufReader::new(Box::new(tls)),
            tag: 0,
        };
        imap.login(user);
        imap
    }

    fn login(&mut self, user: &str) {
        let (_, done) = self.command(format!("LOGIN {user} {}", password(user)).as_bytes());
        assert!(ok(&done), "LOGIN: {}", show(&done));
    }

    /// One response line with any literals it announces, inlined.
    pub fn read_response(&mut self) -> Vec<u8> {
        self.try_read_response().expect("Dovecot closed the connection")
    }

    /// One response line with its literals; `None` when the server closed
    /// the connection (or broke off in the middle of a response).
    fn try_read_response(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            if self.reader.read_until(b'\n', &mut out).ok()? == 0 {
                return None;
            }
            let line = &out[start..];
            let Some(size) = literal_announcement(line) else {
                return Some(out);
            };
            let mut literal = vec![0u8; size];
            self.reader.read_exact(&mut literal).ok()?;
            out.extend_from_slice(&literal);
        }
    }

    /// Sends a command; returns the untagged responses and the tagged one.
    pub fn command(&mut self, cmd: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        self.try_command(cmd).expect("Dovecot closed the connection")
    }

    /// Sends a command; the untagged responses and the tagged one, or
    /// `None` when the server closed the connection instead of answering.
    pub fn try_command(&mut self, cmd: &[u8]) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
        self.tag += 1;
        let tag = format!("v{}", self.tag);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&line).ok()?;
        self.try_finish(&tag)
    }

    /// Reads answers up to the tagged one for `tag`.
    pub fn finish(&mut self, tag: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
        self.try_finish(tag).expect("Dovecot closed the connection")
    }

    fn try_finish(&mut self, tag: &str) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
        let mut untagged = Vec::new();
        loop {
            let resp = self.try_read_response()?;
            if resp.starts_with(format!("{tag} ").as_bytes()) {
                return Some((untagged, resp));
            }
            untagged.push(resp);
        }
    }

    /// Writes `bytes` as they are (a command under a tag of the caller's
    /// own, such as `i1 IDLE`, or `DONE`); read the answers with
    /// [`Imap::read_response`] and [`Imap::finish`].
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
        self.reader.get_mut().flush().unwrap();
    }

    /// APPENDs a message; its UID, or the server's refusal.
    pub fn append(&mut self, mailbox: &str, message: &[u8]) -> Result<u32, String> {
        self.tag += 1;
        let tag = format!("v{}", self.tag);
        self.reader
            .get_mut()
            .write_all(format!("{tag} APPEND {mailbox} {{{}}}\r\n", message.len()).as_bytes())
            .unwrap();
        let cont = self.read_response();
        if !cont.starts_with(b"+") {
            return Err(show(&cont));
        }
        self.reader.get_mut().write_all(message).unwrap();
        self.reader.get_mut().write_all(b"\r\n").unwrap();
        let (_, done) = self.finish(&tag);
        if !ok(&done) {
            return Err(show(&done));
        }
        let text = String::from_utf8_lossy(&done);
        let uid = text
            .split("[APPENDUID ")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|u| u.parse().ok())
            .expect("APPENDUID in the answer");
        Ok(uid)
    }
}

/// True for a tagged `OK`.
pub fn ok(tagged: &[u8]) -> bool {
    tagged.split(|&b| b == b' ').nth(1) == Some(b"OK")
}

/// `n` if the line ends with a `{n}` literal announcement.
pub fn literal_announcement(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

/// Splits `* n FETCH (name value name value ...)` into its items, each value
/// exactly as sent (a literal with its `{n}\r\n`).
pub fn fetch_items(resp: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let start = resp.windows(7).position(|w| w == b"FETCH (")? + 7;
    let mut items = HashMap::new();
    let mut i = start;
    loop {
        while resp.get(i) == Some(&b' ') {
            i += 1;
        }
        if *resp.get(i)? == b')' {
            return Some(items);
        }
        let name_start = i;
        while i < resp.len() && resp[i] != b' ' {
            if resp[i] == b'[' {
                i += resp[i..].iter().position(|&b| b == b']')?;
            }
            i += 1;
        }
        let name = String::from_utf8_lossy(&resp[name_start..i]).into_owned();
        i += 1;
        let end = skip_value(resp, i)?;
        items.insert(name, resp[i..end].to_vec());
        i = end;
    }
}

fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'(' => {
            i += 1;
            loop {
                while b.get(i) == Some(&b' ') {
                    i += 1;
                }
                if *b.get(i)? == b')' {
                    return Some(i + 1);
                }
                i = skip_value(b, i)?;
            }
        }
        b'"' => {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
        }
        b'{' | b'~' => {
            let open = i + usize::from(b[i] == b'~');
            let close = i + b[i..].iter().position(|&c| c == b'}')?;
            let n: usize = std::str::from_utf8(&b[open + 1..close]).ok()?.parse().ok()?;
            let end = close + 3 + n;
            (end <= b.len()).then_some(end)
        }
        _ => {
            while i < b.len() && !matches!(b[i], b' ' | b')' | b'(') {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The bytes with CR, LF and non-ASCII made visible.
pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// Deletes `user`'s test mailbox `name` when the test ends, however it
/// ends.
pub struct Mailbox {
    /// Whose mailbox.
    pub user: &'static str,
    /// Its name.
    pub name: String,
    /// How to log in where it is (Dovecot: [`Imap::connect`]).
    pub at: fn(&str) -> Imap,
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut imap = (self.at)(self.user);
        imap.command(b"SELECT INBOX");
        let (_, done) = imap.command(format!("DELETE {}", self.name).as_bytes());
        if !ok(&done) {
            eprintln!("could not delete {}: {}", self.name, show(&done));
        }
        imap.command(b"LOGOUT");
    }
}

/// TLS over `stream` to a server whose certificate must be exactly the one
/// in `certificate`.
fn pinned_tls(certificate: &Path, stream: TcpStream) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let expected = CertificateDer::from_pem_file(certificate).expect("the proxy's local certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { expected, provider }))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(connection, stream)
}

/// Accepts exactly one certificate (the proxy's self-signed local one),
/// and checks the handshake signatures with its key.
#[derive(Debug)]
struct Pinned {
    expected: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the proxy's local certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// What to ask for
// ---------------------------------------------------------------------------

/// A `BODY.PEEK[...]` request: the spec in brackets and an optional partial.
pub struct Probe {
    /// Between the brackets.
    pub spec: String,
    /// Origin and length.
    pub partial: Option<(u64, u64)>,
}

impl Probe {
    /// How it is asked for.
    pub fn request(&self) -> String {
        self.request_as("BODY")
    }

    /// How the answer names it.
    pub fn response_name(&self) -> String {
        self.response_name_as("BODY")
    }

    /// How it is asked for as `item` (`BODY`, `BINARY`).
    pub fn request_as(&self, item: &str) -> String {
        match self.partial {
            None => format!("{item}.PEEK[{}]", self.spec),
            Some((o, l)) => format!("{item}.PEEK[{}]<{o}.{l}>", self.spec),
        }
    }

    /// How the answer to it names it as `item`.
    pub fn response_name_as(&self, item: &str) -> String {
        match self.partial {
            None => format!("{item}[{}]", self.spec),
            Some((o, _)) => format!("{item}[{}]<{o}>", self.spec),
        }
    }
}

/// Sections of every kind (whole, header, text, field lists, every part
/// number up to three levels with its MIME, HEADER and TEXT) and partials.
pub fn probes() -> Vec<Probe> {
    let mut specs: Vec<String> = [
        "",
        "HEADER",
        "TEXT",
        "0",
        "4",
        "9",
        "1.0",
        "HEADER.FIELDS (SUBJECT FROM)",
        "HEADER.FIELDS.NOT (SUBJECT)",
        "HEADER.FIELDS (CONTENT-TYPE MIME-VERSION)",
        "HEADER.FIELDS (X-NOPE)",
        "HEADER.FIELDS.NOT (TO CC CONTENT-TYPE)",
        "1.HEADER.FIELDS (FROM SUBJECT)",
        "1.HEADER.FIELDS.NOT (FROM)",
        "2.HEADER.FIELDS (CONTENT-TYPE)",
        "1.1.HEADER.FIELDS.NOT (SUBJECT)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every part number up to three levels and three parts per level.
    let mut paths = vec![String::new()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for p in &paths {
            for n in 1..=3 {
                next.push(if p.is_empty() { n.to_string() } else { format!("{p}.{n}") });
            }
        }
        for p in &next {
            specs.push(p.clone());
            specs.push(format!("{p}.MIME"));
            specs.push(format!("{p}.HEADER"));
            specs.push(format!("{p}.TEXT"));
        }
        paths = next;
    }
    let mut probes: Vec<Probe> = specs.into_iter().map(|spec| Probe { spec, partial: None }).collect();
    for (spec, o, l) in [
        ("", 5, 100),
        ("", 0, 1),
        ("", 1_000_000, 5),
        ("TEXT", 0, 10),
        ("TEXT", 3, 4_000_000_000),
        ("1", 3, 5),
        ("1.MIME", 10, 10),
        ("HEADER.FIELDS (SUBJECT)", 2, 5),
        ("2.1", 1, 1),
    ] {
        probes.push(Probe {
            spec: spec.to_string(),
            partial: Some((o, l)),
        });
    }
    probes
}

/// `BINARY` requests, each asked in a FETCH of its own: a section that
/// cannot be decoded fails the whole command. The sections of every kind
/// that `BINARY` decodes (the whole message, its text, parts at three
/// levels, the text of attached messages), some it serves as `BODY` does,
/// and partials.
pub fn binary_probes() -> Vec<Probe> {
    let mut probes: Vec<Probe> = [
        "", "TEXT", "1", "2", "3", "1.1", "1.2", "2.1", "2.2", "1.1.1", "2.1.1", "1.TEXT", "2.TEXT", "1.MIME", "HEADER",
    ]
    .into_iter()
    .map(|spec| Probe {
        spec: spec.to_string(),
        partial: None,
    })
    .collect();
    for (spec, o, l) in [("", 5, 100), ("1", 2, 3), ("TEXT", 0, 10)] {
        probes.push(Probe {
            spec: spec.to_string(),
            partial: Some((o, l)),
        });
    }
    probes
}

/// `BINARY.SIZE` sections, asked after every `BINARY` request: Dovecot
/// keeps what it computed for `BINARY.SIZE` and then announces `BINARY[]`
/// as a literal8 whatever it holds.
pub const BINARY_SIZES: [&str; 6] = ["", "TEXT", "1", "2", "1.1", "2.1"];

/// `s`, shortened to 600 characters for a failure report.
pub fn cut(s: &str) -> String {
    if s.len() > 600 {
        let mut end = 600;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} chars)", &s[..end], s.len())
    } else {
        s.to_string()
    }
}

/// How the server answered a FETCH of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Tagged `OK`, and the item's value as sent.
    Value(Vec<u8>),
    /// Tagged `NO` with this response code, and no such item.
    Refused(String),
    /// The server closed the connection instead of answering.
    Closed,
    /// Anything else, shown.
    Other(String),
}

impl Answer {
    /// The answer with its bytes made visible.
    pub fn show(&self) -> String {
        match self {
            Answer::Value(v) => show(v),
            other => format!("{other:?}"),
        }
    }
}

/// Asks for one item (`request`) of message `uid` in a FETCH of its own;
/// `name` is how the answer names it.
pub fn ask(imap: &mut Imap, uid: u32, request: &str, name: &str) -> Answer {
    let Some((untagged, done)) = imap.try_command(format!("UID FETCH {uid} ({request})").as_bytes()) else {
        return Answer::Closed;
    };
    let item = untagged
        .iter()
        .filter(|r| r.windows(7).any(|w| w == b"FETCH ("))
        .filter_map(|r| fetch_items(r))
        .find_map(|mut items| items.remove(name));
    let code = response_code(&done);
    match (ok(&done), item, code) {
        (true, Some(value), _) => Answer::Value(value),
        (false, None, Some(code)) if done.split(|&b| b == b' ').nth(1) == Some(b"NO") => Answer::Refused(code),
        (_, item, _) => Answer::Other(format!("{} / {}", show(&done), item.map_or("no item".into(), |v| show(&v)))),
    }
}

/// The response code of a status response (`OK [CODE ...] text`).
fn response_code(status: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(status);
    let code = text.split_once(" [")?.1.split_once(']')?.0;
    Some(code.split(' ').next()?.to_string())
}
