//! The URLs in the configuration: mail servers (`smtp://`, `imaps://`, ...)
//! and HTTPS resources (Web Key Directory, keyserver). A leaf module: it
//! parses and prints, and knows nothing of who connects where.

use std::fmt;

/// An upstream server address from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// TLS from the first byte (`smtps://`) rather than STARTTLS.
    pub implicit_tls: bool,
    /// Host name (checked against the certificate).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl ServerUrl {
    /// Parses `smtp://host[:port]` or `smtps://host[:port]` (default ports
    /// 587 and 465; IPv6 literals in brackets).
    pub fn parse_smtp(url: &str) -> Result<ServerUrl, String> {
        Self::parse(url, ("smtp", 587), ("smtps", 465))
    }

    /// Parses `imap://host[:port]` (STARTTLS) or `imaps://host[:port]`
    /// (default ports 143 and 993).
    pub fn parse_imap(url: &str) -> Result<ServerUrl, String> {
        Self::parse(url, ("imap", 143), ("imaps", 993))
    }

    fn parse(url: &str, starttls: (&str, u16), implicit: (&str, u16)) -> Result<ServerUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("'{url}' is not a URL like {}://host:{}", starttls.0, starttls.1))?;
        let (implicit_tls, default_port) = match scheme.to_ascii_lowercase() {
            s if s == starttls.0 => (false, starttls.1),
            s if s == implicit.0 => (true, implicit.1),
            other => return Err(format!("unsupported scheme '{other}' (use {}:// or {}://)", starttls.0, implicit.0)),
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unterminated IPv6 address")?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("'{url}' has no valid host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("'{p}' is not a port number"))?,
            None => default_port,
        };
        Ok(ServerUrl { implicit_tls, host, port })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An `https:` URL: host (lower case), port and request target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpsUrl {
    host: String,
    port: u16,
    /// Path and query, already percent-encoded, starting with `/`.
    target: String,
}

impl HttpsUrl {
    /// Parses `https://host[:port][/path][?query]` (a fragment is dropped;
    /// IPv6 addresses in brackets). Plain `http:` is refused: keys fetched
    /// without TLS could come from anyone. Host names must be ASCII (write
    /// internationalized names in their `xn--` form).
    pub fn parse(text: &str) -> Result<HttpsUrl, String> {
        let text = text.trim();
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("'{text}' is not a URL like https://keys.example.org"))?;
        if scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "'{text}' uses plain http; only https is accepted, so that keys cannot be swapped on the way"
            ));
        }
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(format!("'{text}': unsupported scheme '{scheme}' (only https)"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!("'{text}': user names in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("'{text}': unterminated IPv6 address"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("'{text}': '{host}' is not an IPv6 address"))?;
            match after {
                "" => (host.to_string(), None),
                _ => (
                    host.to_string(),
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| format!("'{text}': junk after the IPv6 address"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let host = host.to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && (host.contains(':') // an IPv6 literal, checked above
                || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !host_ok {
            return Err(format!(
                "'{text}' has no valid host name (internationalized names must be written in their xn-- form)"
            ));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("'{text}': '{p}' is not a port number"))?,
        };
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if target.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(format!("'{text}': spaces and non-ASCII characters must be percent-encoded"));
        }
        Ok(HttpsUrl { host, port, target })
    }

    /// Builds a URL from parts; `target` must start with `/` and be
    /// percent-encoded already.
    pub(crate) fn from_parts(host: &str, port: u16, target: String) -> HttpsUrl {
        debug_assert!(target.starts_with('/'));
        HttpsUrl {
            host: host.to_ascii_lowercase(),
            port,
            target,
        }
    }

    /// The host name (or IP address), lower case, IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: path and query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// A copy with `more` (percent-encoded, no leading `/`) appended to the
    /// path, keeping exactly one `/` between them; any query is dropped.
    pub(crate) fn join_path(&self, more: &str) -> HttpsUrl {
        let base = self.path().trim_end_matches('/');
        HttpsUrl {
            host: self.host.clone(),
            port: self.port,
            target: format!("{base}/{more}"),
        }
    }

    /// The `Host` header value: the port only when it is not 443.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Where a `Location` header sends a request for this URL: an absolute
    /// `https:` URL, a network-path (`//host/...`), an absolute path, a
    /// query, or a path relative to this one. Any other scheme is refused.
    pub fn resolve(&self, location: &str) -> Result<HttpsUrl, String> {
        let location = location.trim();
        if location.is_empty() {
            return Err("a redirect with an empty Location".into());
        }
        if let Some(colon) = location.find(':') {
            let scheme = &location[..colon];
            if !scheme.is_empty()
                && !scheme.contains(['/', '?', '#'])
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            {
                if scheme.eq_ignore_ascii_case("https") {
                    return HttpsUrl::parse(location);
                }
                return Err(format!("refused to follow a redirect to '{location}': only https is followed"));
            }
        }
        if location.starts_with("//") {
            return HttpsUrl::parse(&format!("https:{location}"));
        }
        let location = location.split('#').next().unwrap_or_default();
        let target = if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') {
            format!("{}{location}", self.path())
        } else {
            let path = self.path();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        let target = match target.split_once('?') {
            Some((path, query)) => format!("{}?{query}", remove_dot_segments(path)),
            None => remove_dot_segments(&target),
        };
        if target.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(format!("a redirect to '{location}', which is not a valid URL"));
        }
        Ok(HttpsUrl {
            host: self.host.clone(),
            port: self.port,
            target,
        })
    }
}

/// RFC 3986 section 5.2.4 for an absolute path: `.` segments go, `..`
/// removes the segment before it (never above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print() {
        let u = HttpsUrl::parse("https://Keys.OpenPGP.org").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("keys.openpgp.org", 443, "/"));
        assert_eq!(u.to_string(), "https://keys.openpgp.org/");
        let u = HttpsUrl::parse("https://h.example:8443/a/b?x=1#frag").unwrap();
        assert_eq!((u.host(), u.port(), u.target(), u.path()), ("h.example", 8443, "/a/b?x=1", "/a/b"));
        assert_eq!(u.authority(), "h.example:8443");
        let u = HttpsUrl::parse("https://[::1]:4443?q").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("::1", 4443, "/?q"));
        assert_eq!(u.to_string(), "https://[::1]:4443/?q");
        assert_eq!(
            HttpsUrl::parse("https://h/base/").unwrap().join_path("vks/v1").target(),
            "/base/vks/v1"
        );
        assert_eq!(HttpsUrl::parse("https://h").unwrap().join_path("vks/v1").target(), "/vks/v1");
        for (bad, why) in [
            ("http://keys.example", "plain http"),
            ("ftp://keys.example", "unsupported scheme"),
            ("keys.example", "not a URL"),
            ("https://", "no valid host"),
            ("https://user@h/", "user names"),
            ("https://h:0/", "port"),
            ("https://h:99999/", "port"),
            ("https://bücher.example/", "xn--"),
            ("https://h/a b", "percent-encoded"),
            ("https://[::1/", "unterminated"),
        ] {
            let e = HttpsUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_request() {
        let base = HttpsUrl::parse("https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/abc?l=joe").unwrap();
        let to = |l: &str| base.resolve(l).map(|u| u.to_string());
        assert_eq!(to("https://Other.example/k").unwrap(), "https://other.example/k");
        assert_eq!(to("//other.example:444/k").unwrap(), "https://other.example:444/k");
        assert_eq!(to("/keys/joe.pgp").unwrap(), "https://openpgpkey.example.org/keys/joe.pgp");
        assert_eq!(
            to("def?l=joe").unwrap(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/def?l=joe"
        );
        assert_eq!(
            to("?l=x").unwrap(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/abc?l=x"
        );
        assert!(to("http://openpgpkey.example.org/k").unwrap_err().contains("only https"));
        assert!(to("HTTP://x/").unwrap_err().contains("only https"));
        assert!(to("data:text/plain,hi").unwrap_err().contains("only https"));
        assert!(to("").is_err());
        assert_eq!(
            to("../../keys/joe.pgp").unwrap(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/keys/joe.pgp"
        );
        assert_eq!(
            to("./x/../y/.?l=1").unwrap(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/y/?l=1"
        );
        assert_eq!(to("/../../a").unwrap(), "https://openpgpkey.example.org/a");
        assert_eq!(
            to("..").unwrap(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/"
        );
    }
}
