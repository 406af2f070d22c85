//! A minimal HTTPS/1.1 GET client for key discovery: one request per
//! connection (`Connection: close`), TLS through [`crate::tls::Connector`]
//! (CA-verified, and pinned where configured), with a connect timeout, a
//! total timeout and a cap on the response size.
//!
//! Answers are classified the way key look-ups need them: 200 is a body,
//! 404 and 410 are a definitive "nothing here" ([`Fetched::Gone`]), every
//! other status is an error. Bodies may be framed by `Content-Length`, by
//! chunked transfer coding, or by the end of the connection (which must
//! then be a clean TLS close, so that a cut connection is not mistaken for
//! a short key file).
//!
//! Redirects (301, 302, 303, 307, 308) are followed at most
//! [`MAX_REDIRECTS`] times and only to `https:` URLs: a redirect to plain
//! HTTP or to another scheme is refused. The WKD draft
//! (draft-koch-openpgp-webkey-service) says nothing specific about
//! redirects; real directories use them (to a canonical host, or to a
//! repository of key files), and a redirect received over verified TLS
//! from the directory's own host is as authentic as the key itself would
//! have been. The key that finally arrives is still only accepted if it
//! carries the looked-up address (see [`super`]). Each hop is verified
//! like the first, with the pins configured for its own host.
//!
//! No HTTP/2, no keep-alive, no proxies, no compression (`Accept-Encoding:
//! identity` is sent and a compressed answer is refused).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::tls::{Connector, Pin, PinStore, TlsError, Trust, TrustMode};
pub use crate::url::HttpsUrl;

/// The default cap on a response body: key files are a few kilobytes, a
/// key with many signatures rarely more than a hundred.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// The default time allowed for the TCP connection to one address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default time allowed for one request, redirects included.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(15);

/// How many redirects one request follows.
pub const MAX_REDIRECTS: usize = 3;

/// The cap on the status line and header fields together.
const MAX_HEAD: usize = 32 * 1024;

/// The cap on one chunk-size line.
const MAX_CHUNK_LINE: usize = 1024;

/// Time and size bounds for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// For the TCP connection to each address tried.
    pub connect_timeout: Duration,
    /// For a whole request: connection, TLS, redirects, the full body.
    pub total_timeout: Duration,
    /// The largest body accepted, in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), byte by byte of the UTF-8 form: safe in a path
/// segment and in a query value alike (`+` becomes `%2B`, `@` `%40`).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTPS request that did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to {host}:{port}: {reason}")]
    Connect {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
        /// Why, for the last address tried.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A host listed in `[keys.pins]` presented another key.
    #[error("{server} presented a key other than the one pinned in [keys.pins] (seen {seen}, pinned {pinned}); if the server really changed its key, update keys.pins")]
    PinMismatch {
        /// host:port.
        server: String,
        /// The key presented.
        seen: String,
        /// The pins required.
        pinned: String,
    },
    /// The request did not finish in time.
    #[error("{url}: no complete answer within {} s; the server is too slow or unreachable", after.as_secs_f32())]
    TimedOut {
        /// What was asked.
        url: String,
        /// The time allowed.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("{url}: {source}")]
    Io {
        /// What was asked.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// A status other than 200, 404, 410 or a redirect.
    #[error("{url}: the server answered {status} {reason}")]
    Status {
        /// What was asked.
        url: String,
        /// The status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The body is larger than allowed.
    #[error("{url}: the answer is larger than the limit of {limit} bytes, so it was refused (a key file is normally a few kilobytes)")]
    TooLarge {
        /// What was asked.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The connection ended before the whole answer arrived.
    #[error("{url}: the answer was cut short ({what}), so it was discarded")]
    Truncated {
        /// What was asked.
        url: String,
        /// What was missing.
        what: String,
    },
    /// The answer is not HTTP/1.x as understood here.
    #[error("{url}: not a valid HTTP answer: {what}")]
    Malformed {
        /// What was asked.
        url: String,
        /// What was wrong.
        what: String,
    },
    /// A redirect that is not followed.
    #[error("{url}: {what}")]
    Redirect {
        /// The URL that redirected.
        url: String,
        /// Why it was not followed.
        what: String,
    },
}

impl HttpError {
    /// True when the server could not be reached at all (no such name, no
    /// connection, a failed TLS handshake other than a pin mismatch):
    /// nothing was said about the key.
    pub fn is_unreachable(&self) -> bool {
        match self {
            HttpError::Resolve { .. } | HttpError::Connect { .. } => true,
            HttpError::Tls(TlsError::PinMismatch(_)) | HttpError::PinMismatch { .. } => false,
            HttpError::Tls(_) => true,
            _ => false,
        }
    }
}

/// A successful request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 200: the body.
    Body {
        /// The URL that answered (after redirects).
        url: HttpsUrl,
        /// The body.
        bytes: Vec<u8>,
    },
    /// 404 or 410: the server has nothing there.
    Gone {
        /// The URL that answered (after redirects).
        url: HttpsUrl,
        /// The status.
        status: u16,
    },
}

/// Makes GET requests over verified TLS.
#[derive(Clone)]
pub struct HttpsClient {
    ca: Connector,
    pinned: HashMap<String, Connector>,
    connect_to: HashMap<String, SocketAddr>,
    limits: Limits,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("pinned", &self.pinned.keys().collect::<Vec<_>>())
            .field("connect_to", &self.connect_to)
            .field("limits", &self.limits)
            .finish()
    }
}

impl HttpsClient {
    /// Trusts the system roots plus `ca_file`; a host in `pins` must also
    /// present one of its pins (`ca+pin`). A host in `connect_to` is
    /// reached at that address instead of resolving its name (its
    /// certificate is still checked for the name). Host names are compared
    /// in lower case. `data_dir` is where the connector's pin store would
    /// live; discovery never records pins (no TOFU), so nothing is written.
    pub fn new(
        ca_file: Option<&Path>,
        pins: &HashMap<String, Vec<Pin>>,
        connect_to: HashMap<String, SocketAddr>,
        limits: Limits,
        data_dir: &Path,
    ) -> Result<HttpsClient, TlsError> {
        let trust = |mode, pins: Vec<Pin>| Trust {
            mode,
            pins,
            store: PinStore::new(data_dir),
        };
        let ca = Connector::new(ca_file, trust(TrustMode::Ca, Vec::new()))?;
        let mut pinned = HashMap::new();
        for (host, host_pins) in pins {
            pinned.insert(
                host.to_ascii_lowercase(),
                Connector::new(ca_file, trust(TrustMode::CaAndPin, host_pins.clone()))?,
            );
        }
        let connect_to = connect_to.into_iter().map(|(h, a)| (h.to_ascii_lowercase(), a)).collect();
        Ok(HttpsClient {
            ca,
            pinned,
            connect_to,
            limits,
        })
    }

    /// The bounds requests run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// GETs `url`, following redirects, within the total timeout.
    pub async fn get(&self, url: &HttpsUrl) -> Result<Fetched, HttpError> {
        let total = self.limits.total_timeout;
        match tokio::time::timeout(total, self.get_following(url)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::TimedOut {
                url: url.to_string(),
                after: total,
            }),
        }
    }

    async fn get_following(&self, url: &HttpsUrl) -> Result<Fetched, HttpError> {
        let mut current = url.clone();
        let mut hops = 0;
        loop {
            let head = self.get_once(&current).await?;
            match head.status {
                200 => {
                    return Ok(Fetched::Body {
                        url: current,
                        bytes: head.body,
                    })
                }
                404 | 410 => {
                    return Ok(Fetched::Gone {
                        url: current,
                        status: head.status,
                    })
                }
                301 | 302 | 303 | 307 | 308 => {
                    let redirect = |what: String| HttpError::Redirect {
                        url: current.to_string(),
                        what,
                    };
                    if hops == MAX_REDIRECTS {
                        return Err(redirect(format!("more than {MAX_REDIRECTS} redirects; not followed further")));
                    }
                    let location = head
                        .header("location")
                        .ok_or_else(|| redirect(format!("a redirect ({}) without a Location", head.status)))?;
                    let next = current.resolve(location).map_err(redirect)?;
                    tracing::debug!(from = %current, to = %next, status = head.status, "key discovery: following a redirect");
                    current = next;
                    hops += 1;
                }
                status => {
                    return Err(HttpError::Status {
                        url: current.to_string(),
                        status,
                        reason: head.reason,
                    })
                }
            }
        }
    }

    async fn get_once(&self, url: &HttpsUrl) -> Result<Response, HttpError> {
        let tcp = self.connect(url).await?;
        let connector = self.pinned.get(url.host()).unwrap_or(&self.ca);
        let mut tls = connector.handshake(tcp, url.host(), url.port()).await.map_err(|e| match e {
            TlsError::PinMismatch(m) => HttpError::PinMismatch {
                server: m.server,
                seen: m.seen,
                pinned: m.pinned,
            },
            other => HttpError::Tls(other),
        })?;
        let io = |source| HttpError::Io {
            url: url.to_string(),
            source,
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Sealpost/{}\r\nAccept: application/octet-stream, application/pgp-keys, */*;q=0.5\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
            url.target(),
            url.authority(),
            env!("CARGO_PKG_VERSION"),
        );
        tls.write_all(request.as_bytes()).await.map_err(io)?;
        tls.flush().await.map_err(io)?;
        let mut reader = BufReader::new(tls);
        read_response(&mut reader, self.limits.max_body).await.map_err(|e| e.at(url))
    }

    async fn connect(&self, url: &HttpsUrl) -> Result<TcpStream, HttpError> {
        let addresses = match self.connect_to.get(url.host()) {
            Some(address) => vec![*address],
            None => self.resolve(url.host(), url.port()).await?,
        };
        let mut last = String::from("no address");
        for address in addresses {
            match tokio::time::timeout(self.limits.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = format!("{address}: {e}"),
                Err(_) => last = format!("{address}: no answer within {} s", self.limits.connect_timeout.as_secs_f32()),
            }
        }
        Err(HttpError::Connect {
            host: url.host().to_string(),
            port: url.port(),
            reason: last,
        })
    }

    /// The addresses of `host`: its `connect_to` entry, an IP literal, or
    /// what the system resolver answers within the connect timeout. Names
    /// under `.invalid` never resolve (RFC 6761).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
        let host = host.to_ascii_lowercase();
        if let Some(address) = self.connect_to.get(&host) {
            return Ok(vec![*address]);
        }
        let failed = |reason: String| HttpError::Resolve {
            host: host.clone(),
            reason,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if host == "invalid" || host.ends_with(".invalid") {
            return Err(failed("names under .invalid do not exist (RFC 6761)".into()));
        }
        let lookup = tokio::time::timeout(self.limits.connect_timeout, tokio::net::lookup_host((host.clone(), port))).await;
        match lookup {
            Ok(Ok(addresses)) => {
                let addresses: Vec<SocketAddr> = addresses.collect();
                if addresses.is_empty() {
                    Err(failed("no address".into()))
                } else {
                    Ok(addresses)
                }
            }
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no answer within {} s", self.limits.connect_timeout.as_secs_f32()))),
        }
    }
}

/// A parsed response: the final (non-1xx) head, and the body for 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    /// Field names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// Read only for status 200.
    pub body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a response could not be read; [`ResponseError::at`] adds the URL.
#[derive(Debug)]
pub(crate) enum ResponseError {
    Io(std::io::Error),
    TooLarge(usize),
    Truncated(String),
    Malformed(String),
}

impl ResponseError {
    fn at(self, url: &HttpsUrl) -> HttpError {
        let url = url.to_string();
        match self {
            ResponseError::Io(source) => HttpError::Io { url, source },
            ResponseError::TooLarge(limit) => HttpError::TooLarge { url, limit },
            ResponseError::Truncated(what) => HttpError::Truncated { url, what },
            ResponseError::Malformed(what) => HttpError::Malformed { url, what },
        }
    }
}

/// Reads one response. Interim (1xx) responses are skipped; the body is
/// read only for 200, bounded by `max_body`.
pub(crate) async fn read_response<R: AsyncBufRead + Unpin>(reader: &mut R, max_body: usize) -> Result<Response, ResponseError> {
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(reader, &mut budget, "the status line").await?;
        let (status, reason) = parse_status_line(&line).map_err(ResponseError::Malformed)?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader, &mut budget, "the header").await?;
            if line.is_empty() {
                break;
            }
            headers.push(parse_header_line(&line).map_err(ResponseError::Malformed)?);
        }
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(ResponseError::Malformed("an unexpected protocol switch (101)".into()));
            }
            continue;
        }
        let mut response = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        if status == 200 {
            response.body = read_body(reader, &response, max_body).await?;
        }
        return Ok(response);
    }
}

async fn read_body<R: AsyncBufRead + Unpin>(reader: &mut R, head: &Response, max_body: usize) -> Result<Vec<u8>, ResponseError> {
    if let Some(coding) = head
        .all("content-encoding")
        .map(str::trim)
        .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
    {
        return Err(ResponseError::Malformed(format!(
            "a compressed body (Content-Encoding: {coding}) although none was asked for"
        )));
    }
    let codings: Vec<String> = head
        .all("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if !codings.is_empty() {
        if codings != ["chunked"] {
            return Err(ResponseError::Malformed(format!(
                "unsupported transfer coding '{}'",
                codings.join(", ")
            )));
        }
        return read_chunked(reader, max_body).await;
    }
    let lengths: Vec<&str> = head.all("content-length").flat_map(|v| v.split(',')).map(str::trim).collect();
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(ResponseError::Malformed(format!("conflicting Content-Length values {lengths:?}")));
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ResponseError::Malformed(format!("Content-Length '{first}' is not a number")));
        }
        let length = first.parse::<u64>().map_err(|_| ResponseError::TooLarge(max_body))?;
        if length > max_body as u64 {
            return Err(ResponseError::TooLarge(max_body));
        }
        let mut body = vec![0; length as usize];
        let mut got = 0;
        while got < body.len() {
            match reader.read(&mut body[got..]).await {
                Ok(0) => return Err(ResponseError::Truncated(format!("{got} of {length} bytes"))),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(ResponseError::Truncated(format!("{got} of {length} bytes")))
                }
                Err(e) => return Err(ResponseError::Io(e)),
            }
        }
        return Ok(body);
    }
    // Delimited by the end of the connection.
    let mut body = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return Ok(body),
            Ok(n) => {
                if body.len() + n > max_body {
                    return Err(ResponseError::TooLarge(max_body));
                }
                body.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ResponseError::Truncated(
                    "the connection ended without a TLS close_notify, so the end of the body is uncertain".into(),
                ))
            }
            Err(e) => return Err(ResponseError::Io(e)),
        }
    }
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R, max_body: usize) -> Result<Vec<u8>, ResponseError> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_CHUNK_LINE;
        let line = read_line(reader, &mut budget, "a chunk size").await?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 15 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResponseError::Malformed(format!("bad chunk size '{}'", shorten(&text))));
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ResponseError::TooLarge(max_body))?;
        if size == 0 {
            let mut budget = MAX_HEAD;
            while !read_line(reader, &mut budget, "the trailer").await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > max_body {
            return Err(ResponseError::TooLarge(max_body));
        }
        let start = body.len();
        body.resize(start + size, 0);
        let mut got = start;
        while got < body.len() {
            match reader.read(&mut body[got..]).await {
                Ok(0) => {
                    return Err(ResponseError::Truncated(format!(
                        "a chunk ended after {} of {size} bytes",
                        got - start
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(ResponseError::Truncated(format!(
                        "a chunk ended after {} of {size} bytes",
                        got - start
                    )))
                }
                Err(e) => return Err(ResponseError::Io(e)),
            }
        }
        let mut budget = 2;
        if !read_line(reader, &mut budget, "the end of a chunk").await?.is_empty() {
            return Err(ResponseError::Malformed("a chunk longer than its size".into()));
        }
    }
}

/// One line without its CRLF (or bare LF), charged to `budget`.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, budget: &mut usize, what: &str) -> Result<Vec<u8>, ResponseError> {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => &[][..],
            Err(e) => return Err(ResponseError::Io(e)),
        };
        if buf.is_empty() {
            return Err(ResponseError::Truncated(format!("the connection ended in {what}")));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if take > *budget {
            return Err(ResponseError::Malformed(format!("{what} is too long")));
        }
        *budget -= take;
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

fn parse_status_line(line: &[u8]) -> Result<(u16, String), String> {
    let text = std::str::from_utf8(line).map_err(|_| "the status line is not text".to_string())?;
    let bad = || format!("'{}' is not an HTTP/1.x status line", shorten(text));
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().ok_or_else(bad)?;
    let reason = parts.next().unwrap_or_default().trim().to_string();
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = code.parse().map_err(|_| bad())?;
    if !(100..600).contains(&code) {
        return Err(bad());
    }
    Ok((code, reason))
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), String> {
    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return Err("a folded header line (obsolete line folding is not accepted)".into());
    }
    let text = String::from_utf8_lossy(line);
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header line '{}' has no colon", shorten(&text)))?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("'{}' is not a header field name", shorten(name)));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_string()))
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max: usize) -> Result<Response, ResponseError> {
        let mut reader = BufReader::new(bytes);
        read_response(&mut reader, max).await
    }

    /// A reader that fails like rustls does when the peer closes without
    /// close_notify, after yielding `bytes`.
    struct CutTls<'a>(&'a [u8]);

    impl tokio::io::AsyncRead for CutTls<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0.is_empty() {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn content_length_body() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/octet-stream\r\n\r\nhelloEXTRA",
            100,
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.reason.as_str(), r.body.as_slice()), (200, "OK", &b"hello"[..]));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(parse(wire, 100).await.unwrap().body, b"hello world");
        // Bare LF line ends are tolerated.
        let wire = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nA\n0123456789\n0\n\n";
        assert_eq!(parse(wire, 100).await.unwrap().body, b"0123456789");
    }

    #[tokio::test]
    async fn body_to_the_end_of_the_connection() {
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 100).await.unwrap().body,
            b"until the end"
        );
        // Without close_notify the end is uncertain: refused.
        let mut reader = BufReader::new(CutTls(b"HTTP/1.1 200 OK\r\n\r\npartial"));
        assert!(matches!(read_response(&mut reader, 100).await, Err(ResponseError::Truncated(_))));
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_only_200_bodies_read() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 100)
            .await
            .unwrap();
        assert_eq!(r.body, b"ok");
        let r = parse(b"HTTP/1.1 404 Not Found\r\nContent-Length: 999999\r\n\r\n", 100)
            .await
            .unwrap();
        assert_eq!((r.status, r.body.len()), (404, 0));
        let r = parse(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n", 100).await.unwrap();
        assert_eq!(r.header("location"), Some("/elsewhere"));
        assert!(matches!(
            parse(b"HTTP/1.1 101 Switching\r\n\r\n", 100).await,
            Err(ResponseError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn truncated_bodies_are_refused() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"",
        ] {
            let result = parse(wire, 100).await;
            assert!(
                matches!(result, Err(ResponseError::Truncated(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 100).await.unwrap_err();
        let url = HttpsUrl::parse("https://example.org/k").unwrap();
        assert_eq!(
            e.at(&url).to_string(),
            "https://example.org/k: the answer was cut short (5 of 10 bytes), so it was discarded"
        );
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_without_reading_them() {
        // Declared too large: refused before the body arrives.
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 100).await,
            Err(ResponseError::TooLarge(100))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 100).await,
            Err(ResponseError::TooLarge(100))
        ));
        // Exactly the limit is fine.
        let exact = [&b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&exact, 100).await.unwrap().body.len(), 100);
        // Chunked and connection-delimited bodies are cut off at the limit.
        let chunked = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n"[..],
            &[b'x'; 64],
            b"\r\n40\r\n",
            &[b'x'; 64],
            b"\r\n0\r\n\r\n",
        ]
        .concat();
        assert!(matches!(parse(&chunked, 100).await, Err(ResponseError::TooLarge(100))));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\n", 100).await,
            Err(ResponseError::TooLarge(100))
        ));
        let eof = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 101]].concat();
        assert!(matches!(parse(&eof, 100).await, Err(ResponseError::TooLarge(100))));
        // An endless header is cut off too.
        let endless = [&b"HTTP/1.1 200 OK\r\nX: "[..], &vec![b'x'; 40_000]].concat();
        assert!(matches!(parse(&endless, 100).await, Err(ResponseError::Malformed(_))));
    }

    #[tokio::test]
    async fn bad_status_lines_and_headers() {
        for wire in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 700 Odd\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            b"<html>hello</html>\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            let result = parse(wire, 100).await;
            assert!(
                matches!(result, Err(ResponseError::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // The reason phrase may be empty; repeated equal lengths are fine.
        let r = parse(b"HTTP/1.1 200\r\nContent-Length: 2, 2\r\n\r\nok", 100).await.unwrap();
        assert_eq!((r.reason.as_str(), r.body.as_slice()), ("", &b"ok"[..]));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("Joe.Doe"), "Joe.Doe");
        assert_eq!(percent_encode("a+b c/d?e&f=g%h"), "a%2Bb%20c%2Fd%3Fe%26f%3Dg%25h");
        assert_eq!(percent_encode("joe@example.org"), "joe%40example.org");
        assert_eq!(percent_encode("~x_y-z"), "~x_y-z");
        assert_eq!(percent_encode("Ünï"), "%C3%9Cn%C3%AF");
    }

    #[test]
    fn unreachable_is_only_about_reaching_the_server() {
        let url = "https://h/".to_string();
        assert!(HttpError::Resolve {
            host: "h".into(),
            reason: "x".into()
        }
        .is_unreachable());
        assert!(HttpError::Connect {
            host: "h".into(),
            port: 443,
            reason: "x".into()
        }
        .is_unreachable());
        assert!(HttpError::Tls(TlsError::Handshake {
            host: "h:443".into(),
            reason: "x".into()
        })
        .is_unreachable());
        assert!(!HttpError::Tls(TlsError::PinMismatch(crate::tls::PinMismatch {
            server: "h:443".into(),
            seen: "a".into(),
            pinned: "b".into()
        }))
        .is_unreachable());
        assert!(!HttpError::TooLarge {
            url: url.clone(),
            limit: 1
        }
        .is_unreachable());
        assert!(!HttpError::Status {
            url,
            status: 500,
            reason: "x".into()
        }
        .is_unreachable());
    }
}
