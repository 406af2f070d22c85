//! Key discovery: finding a recipient's OpenPGP key over HTTPS when the key
//! store has none, from the recipient domain's Web Key Directory
//! ([`wkd`]) and, if configured, a verifying keyserver ([`keyserver`]).
//!
//! [`Discovery::lookup`] asks WKD first (the domain speaks for its own
//! users), then the keyserver if WKD had nothing or failed. Every request
//! goes through [`crate::tls::Connector`]: CA-verified (system roots plus
//! `keys.ca_file`), and pinned for hosts listed in `[keys.pins]`. Answers
//! are bounded in size ([`http::DEFAULT_MAX_BODY`]) and time, remembered
//! ([`cache`]), and filtered: only certificates with a user ID for exactly
//! the looked-up address (ASCII case ignored) are returned, stripped of
//! every other user ID, of user attributes and of any secret key material,
//! so that a directory cannot slip in a key for someone else's address.
//! Revoked and expired certificates are returned like others (they may be
//! updates of a known key); deciding what to encrypt to is the caller's
//! business, as is storing what was found: this module never writes to
//! the key store.
//!
//! A caller waits at most `keys.lookup_timeout`; a look-up still running
//! then goes on in the background (up to [`FETCH_TIMEOUT`]) and its answer
//! lands in the cache for the next message. Concurrent look-ups of one
//! address share one fetch.

pub mod cache;
pub mod http;
pub mod keyserver;
pub mod wkd;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;
use tokio::sync::watch;

pub use cache::{Clock, SystemClock, Ttl};
pub use http::{HttpError, HttpsUrl, Limits};

use crate::config::KeysConfig;
use crate::tls::Pin;
use cache::Cache;
use http::HttpsClient;

/// The longest a look-up runs in the background, whatever the caller's
/// wait (`keys.lookup_timeout`, if longer, replaces it).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The recipient domain's Web Key Directory.
    Wkd,
    /// The configured keyserver (`keys.keyserver`).
    Keyserver,
}

impl From<Source> for crate::pgp::KeySource {
    fn from(source: Source) -> Self {
        match source {
            Source::Wkd => crate::pgp::KeySource::Wkd,
            Source::Keyserver => crate::pgp::KeySource::Keyserver,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Wkd => "WKD",
            Source::Keyserver => "keyserver",
        })
    }
}

/// The answer to a look-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Certificates for the address (at least one), each with a user ID
    /// for exactly that address and no other user ID. They may be expired
    /// or revoked.
    Found {
        /// The certificates.
        certs: Vec<Cert>,
        /// Where they came from.
        source: Source,
        /// The URL that served them (after redirects).
        url: String,
    },
    /// Every method asked answered that it has no key for the address
    /// (404 or 410).
    NotFound,
    /// A look-up failed: the reason, worded for the log (what failed,
    /// where, and a hint where there is one).
    Failed(String),
    /// No answer within `keys.lookup_timeout`; the look-up goes on in the
    /// background and the next call may find its answer in the cache.
    TimedOut {
        /// How long the caller waited.
        after: Duration,
    },
    /// No method applies: WKD is off (or off for this domain) and no
    /// keyserver is configured. Nothing was asked.
    Disabled,
}

impl Lookup {
    /// The certificates found, if any.
    pub fn certs(&self) -> &[Cert] {
        match self {
            Lookup::Found { certs, .. } => certs,
            _ => &[],
        }
    }
}

/// Something about discovery that did not work.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The text is not an address keys can be looked up for.
    #[error("'{text}' is not an e-mail address keys can be looked up for: {reason}")]
    NotAnAddress {
        /// What was given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `[keys]` setting is unusable.
    #[error("{key}: {message}")]
    Config {
        /// The configuration key.
        key: String,
        /// What is wrong, with what to do.
        message: String,
    },
    /// An HTTPS request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The answer holds no readable OpenPGP certificate.
    #[error("{url}: the answer is not an OpenPGP key ({reason})")]
    BadData {
        /// Where it came from.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The answer holds keys, but none for the address.
    #[error("{url}: no key for <{email}> in the answer, only {offered}; keys for other addresses are refused")]
    WrongAddress {
        /// Where it came from.
        url: String,
        /// The address looked up.
        email: String,
        /// What was offered instead.
        offered: String,
    },
    /// WKD's advanced method said nothing useful and the direct method
    /// failed.
    #[error("advanced method: {advanced}; direct method: {direct}")]
    BothMethods {
        /// What the advanced method's server said (or why it could not
        /// be reached).
        advanced: String,
        /// Why the direct method failed.
        direct: HttpError,
    },
}

/// An address split for look-ups: the local part as given, the domain in
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses `local@domain`, optionally in angle brackets. Domains must be
    /// ASCII host names (internationalized ones in their `xn--` form).
    pub fn parse(text: &str) -> Result<Address, DiscoveryError> {
        let bad = |reason: &str| DiscoveryError::NotAnAddress {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        let trimmed = trimmed.strip_prefix('<').and_then(|t| t.strip_suffix('>')).unwrap_or(trimmed);
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(|| bad("no @"))?;
        if local.is_empty() {
            return Err(bad("empty local part"));
        }
        if local.len() > 64 {
            return Err(bad("the local part is longer than 64 bytes"));
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            return Err(bad("spaces, quotes and angle brackets are not supported in the local part"));
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(bad("empty domain"));
        }
        if !domain.is_ascii() {
            return Err(bad(
                "internationalized domain names are not supported yet; use the xn-- form of the domain",
            ));
        }
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !labels_ok || domain.len() > 253 {
            return Err(bad("the domain is not a valid host name"));
        }
        Ok(Address {
            local: local.to_string(),
            domain,
        })
    }

    /// The local part, unchanged.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, lower case.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The address with ASCII letters in lower case: the cache key, and
    /// the form [`crate::pgp::normalize_email`] gives.
    pub fn normalized(&self) -> String {
        format!("{}@{}", self.local.to_ascii_lowercase(), self.domain)
    }

    /// True when `email` (from a user ID) is this address, ASCII case
    /// ignored.
    pub fn matches(&self, email: &str) -> bool {
        match email.trim().rsplit_once('@') {
            Some((local, domain)) => {
                local.eq_ignore_ascii_case(&self.local) && domain.trim_end_matches('.').eq_ignore_ascii_case(&self.domain)
            }
            None => false,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The certificates in `bytes` (binary or armored) that carry a validly
/// self-signed user ID for `address`, reduced to those user IDs and to
/// public key material.
pub(crate) fn matching_certs(bytes: &[u8], address: &Address, url: &HttpsUrl) -> Result<Vec<Cert>, DiscoveryError> {
    let bad_data = |reason: String| DiscoveryError::BadData {
        url: url.to_string(),
        reason,
    };
    let parser = CertParser::from_bytes(bytes).map_err(|e| bad_data(e.to_string()))?;
    let mut unreadable = Vec::new();
    let mut offered = Vec::new();
    let mut kept = Vec::new();
    for cert in parser {
        let cert = match cert {
            Ok(cert) => cert,
            Err(e) => {
                unreadable.push(e.to_string());
                continue;
            }
        };
        let fingerprint = cert.fingerprint().to_hex();
        let emails: Vec<String> = cert
            .userids()
            .filter_map(|u| u.userid().email().ok().flatten().map(|e| format!("<{e}>")))
            .collect();
        let cert = cert
            .strip_secret_key_material()
            .retain_user_attributes(|_| false)
            .retain_userids(|u| u.userid().email().ok().flatten().is_some_and(|e| address.matches(e)));
        if cert.userids().next().is_none() {
            let emails = if emails.is_empty() {
                "no address".to_string()
            } else {
                emails.join(", ")
            };
            offered.push(format!("{fingerprint} for {emails}"));
            continue;
        }
        match cert.with_policy(&crate::pgp::POLICY, None) {
            Ok(valid) if valid.userids().next().is_some() => kept.push(cert),
            Ok(_) => offered.push(format!("{fingerprint}, whose user ID for <{address}> is not validly self-signed")),
            Err(e) => offered.push(format!("{fingerprint}, which is not usable ({e})")),
        }
    }
    if !kept.is_empty() {
        return Ok(kept);
    }
    if offered.is_empty() {
        let reason = match unreadable.first() {
            Some(e) => e.clone(),
            None => "no certificate in it".to_string(),
        };
        return Err(bad_data(reason));
    }
    Err(DiscoveryError::WrongAddress {
        url: url.to_string(),
        email: address.to_string(),
        offered: offered.join("; "),
    })
}

/// Looks keys up by WKD and keyserver, with a cache. Cheap to clone; one
/// per process is enough.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    wkd: bool,
    /// Lower case, without leading or trailing dots.
    wkd_disabled: Vec<String>,
    keyserver: Option<HttpsUrl>,
    lookup_timeout: Duration,
    fetch_timeout: Duration,
    client: HttpsClient,
    cache: Cache,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Lookup>>>>,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("wkd", &self.inner.wkd)
            .field("wkd_disabled", &self.inner.wkd_disabled)
            .field("keyserver", &self.inner.keyserver.as_ref().map(ToString::to_string))
            .field("lookup_timeout", &self.inner.lookup_timeout)
            .field("client", &self.inner.client)
            .finish()
    }
}

impl Discovery {
    /// Discovery as `config` says, with its cache in
    /// `data_dir/discovery-cache.toml` (read now, written on each new
    /// answer; the directory is created when first needed).
    pub fn new(config: &KeysConfig, data_dir: &Path) -> Result<Discovery, DiscoveryError> {
        Self::with_clock(config, data_dir, Arc::new(SystemClock))
    }

    /// Like [`Discovery::new`] with another clock for cache expiry (tests).
    /// `data_dir/discovery-cache.toml` keeps the negative answers across
    /// restarts; keys found are cached in memory only (store them).
    pub fn with_clock(config: &KeysConfig, data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Discovery, DiscoveryError> {
        let config_error = |key: String, message: String| DiscoveryError::Config { key, message };
        let keyserver = match config.keyserver.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(HttpsUrl::parse(url).map_err(|e| config_error("keys.keyserver".into(), e))?),
        };
        let mut pins = HashMap::new();
        for (host, texts) in &config.pins {
            let parsed = texts
                .iter()
                .map(|t| Pin::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(format!("keys.pins.\"{host}\""), e))?;
            if parsed.is_empty() {
                return Err(config_error(format!("keys.pins.\"{host}\""), "no pin given".into()));
            }
            pins.insert(host.to_ascii_lowercase(), parsed);
        }
        let lookup_timeout = Duration::from_secs(config.lookup_timeout.max(1));
        let limits = Limits::default();
        let client = HttpsClient::new(
            config.ca_file.as_deref(),
            &pins,
            config.connect_to.iter().map(|(h, a)| (h.clone(), *a)).collect(),
            limits,
            data_dir,
        )
        .map_err(|e| config_error("keys.ca_file".into(), e.to_string()))?;
        let cache = Cache::open(Some(data_dir.join(cache::FILE_NAME)), clock, Ttl::default());
        Ok(Discovery {
            inner: Arc::new(Inner {
                wkd: config.wkd,
                wkd_disabled: config
                    .wkd_disabled_domains
                    .iter()
                    .map(|d| d.trim().trim_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect(),
                keyserver,
                lookup_timeout,
                fetch_timeout: FETCH_TIMEOUT.max(lookup_timeout),
                client,
                cache,
                inflight: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// True when some method is on (WKD, or a keyserver): when it is not,
    /// every look-up answers [`Lookup::Disabled`].
    pub fn is_enabled(&self) -> bool {
        self.inner.wkd || self.inner.keyserver.is_some()
    }

    /// True when a look-up of `email` would ask anything.
    pub fn applies_to(&self, email: &str) -> bool {
        Address::parse(email).is_ok_and(|a| self.inner.applies(&a))
    }

    /// How long [`Discovery::lookup`] waits at most.
    pub fn lookup_timeout(&self) -> Duration {
        self.inner.lookup_timeout
    }

    /// The keys for `email`: from the cache if it has an unexpired answer,
    /// else from WKD, then the keyserver, waiting at most
    /// `keys.lookup_timeout` ([`Lookup::TimedOut`] after that, while the
    /// look-up goes on in the background and caches its answer). Found,
    /// not found and failed answers are cached (24 h, 1 h, 5 min; the
    /// last two also on disk).
    pub async fn lookup(&self, email: &str) -> Lookup {
        let address = match Address::parse(email) {
            Ok(address) => address,
            Err(e) => return Lookup::Failed(e.to_string()),
        };
        if !self.inner.applies(&address) {
            return Lookup::Disabled;
        }
        let key = address.normalized();
        if let Some(hit) = self.inner.cache.get(&key) {
            tracing::debug!(email = %key, answer = %summary(&hit), "key discovery: answered from the cache");
            return hit;
        }
        let mut answer = self.start(address, key);
        let wait = async move {
            loop {
                if let Some(lookup) = answer.borrow_and_update().clone() {
                    return lookup;
                }
                if answer.changed().await.is_err() {
                    return answer
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| Lookup::Failed("the key look-up stopped without an answer".into()));
                }
            }
        };
        let after = self.inner.lookup_timeout;
        match tokio::time::timeout(after, wait).await {
            Ok(lookup) => lookup,
            Err(_) => {
                tracing::info!(
                    email,
                    after_s = after.as_secs(),
                    "key discovery: no answer in time; continuing without a key, the look-up goes on in the background"
                );
                Lookup::TimedOut { after }
            }
        }
    }

    /// Asks again now, ignoring the cache (for `sealpost keys refresh`),
    /// waiting up to [`FETCH_TIMEOUT`]; the answer replaces the cached one.
    pub async fn refresh(&self, email: &str) -> Lookup {
        let address = match Address::parse(email) {
            Ok(address) => address,
            Err(e) => return Lookup::Failed(e.to_string()),
        };
        if !self.inner.applies(&address) {
            return Lookup::Disabled;
        }
        let lookup = self.inner.fetch_bounded(&address).await;
        self.inner.remember(address.normalized(), &lookup).await;
        lookup
    }

    /// The cached answer for `email`, without asking anyone.
    pub fn cached(&self, email: &str) -> Option<Lookup> {
        let address = Address::parse(email).ok()?;
        self.inner.cache.get(&address.normalized())
    }

    /// Drops the cached answer for `email` (for example after the user
    /// imported a key by hand).
    pub fn forget(&self, email: &str) {
        if let Ok(address) = Address::parse(email) {
            if let Err(e) = self.inner.cache.forget(&address.normalized()) {
                tracing::warn!(error = %e, "cannot write the key discovery cache");
            }
        }
    }

    /// The running fetch for `key`, or a new one.
    fn start(&self, address: Address, key: String) -> watch::Receiver<Option<Lookup>> {
        let mut inflight = self.inner.inflight.lock().expect("not poisoned");
        if let Some(running) = inflight.get(&key) {
            // A fetch whose task died (sender gone) is replaced.
            if running.has_changed().is_ok() {
                return running.clone();
            }
        }
        let (tx, rx) = watch::channel(None);
        // It may have finished between the caller's cache check and here.
        if let Some(hit) = self.inner.cache.get(&key) {
            let _ = tx.send(Some(hit));
            return rx;
        }
        inflight.insert(key.clone(), rx.clone());
        drop(inflight);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let lookup = inner.fetch_bounded(&address).await;
            inner.remember(key.clone(), &lookup).await;
            inner.inflight.lock().expect("not poisoned").remove(&key);
            let _ = tx.send(Some(lookup));
        });
        rx
    }
}

impl Inner {
    fn wkd_applies(&self, address: &Address) -> bool {
        self.wkd
            && !self
                .wkd_disabled
                .iter()
                .any(|d| address.domain() == d || address.domain().ends_with(&format!(".{d}")))
    }

    fn applies(&self, address: &Address) -> bool {
        self.wkd_applies(address) || self.keyserver.is_some()
    }

    async fn fetch_bounded(&self, address: &Address) -> Lookup {
        let lookup = match tokio::time::timeout(self.fetch_timeout, self.fetch(address)).await {
            Ok(lookup) => lookup,
            Err(_) => Lookup::Failed(format!(
                "key discovery for <{address}>: no answer within {} s",
                self.fetch_timeout.as_secs()
            )),
        };
        match &lookup {
            Lookup::Found { certs, source, url } => {
                let fingerprints: Vec<String> = certs.iter().map(|c| c.fingerprint().to_hex()).collect();
                tracing::info!(email = %address, %source, %url, ?fingerprints, "key discovery: found a key");
            }
            Lookup::Failed(reason) => tracing::warn!(email = %address, %reason, "key discovery failed"),
            _ => tracing::debug!(email = %address, "key discovery: no key published"),
        }
        lookup
    }

    async fn fetch(&self, address: &Address) -> Lookup {
        let mut failures = Vec::new();
        if self.wkd_applies(address) {
            match wkd::lookup(&self.client, address).await {
                Ok(Some(found)) => {
                    tracing::debug!(email = %address, method = ?found.method, "WKD answered");
                    return Lookup::Found {
                        certs: found.certs,
                        source: Source::Wkd,
                        url: found.url.to_string(),
                    };
                }
                Ok(None) => {}
                Err(e) => failures.push(format!("WKD: {e}")),
            }
        }
        if let Some(base) = &self.keyserver {
            match keyserver::lookup(&self.client, base, address).await {
                Ok(Some((certs, url))) => {
                    return Lookup::Found {
                        certs,
                        source: Source::Keyserver,
                        url: url.to_string(),
                    }
                }
                Ok(None) => {}
                Err(e) => failures.push(format!("keyserver: {e}")),
            }
        }
        if failures.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::Failed(format!("key discovery for <{address}> failed: {}", failures.join("; ")))
        }
    }

    /// Caches `lookup` (the file is written off the async threads).
    async fn remember(self: &Arc<Self>, key: String, lookup: &Lookup) {
        let inner = self.clone();
        let lookup = lookup.clone();
        let written = tokio::task::spawn_blocking(move || inner.cache.put(&key, &lookup)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the key discovery cache"),
            Err(e) => tracing::warn!(error = %e, "cannot write the key discovery cache"),
        }
    }
}

fn summary(lookup: &Lookup) -> &'static str {
    match lookup {
        Lookup::Found { .. } => "found",
        Lookup::NotFound => "not found",
        Lookup::Failed(_) => "failed",
        Lookup::TimedOut { .. } => "timed out",
        Lookup::Disabled => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::serialize::Serialize as _;

    fn url() -> HttpsUrl {
        HttpsUrl::parse("https://openpgpkey.example.org/k").unwrap()
    }

    fn cert(userids: &[&str]) -> Cert {
        let mut builder = CertBuilder::new().add_transport_encryption_subkey();
        for uid in userids {
            builder = builder.add_userid(*uid);
        }
        builder.generate().unwrap().0
    }

    fn bytes(certs: &[&Cert], secret: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in certs {
            if secret {
                c.as_tsk().serialize(&mut out).unwrap();
            } else {
                c.serialize(&mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn addresses_parse() {
        let a = Address::parse(" <Joe.Doe@Example.ORG.> ").unwrap();
        assert_eq!((a.local_part(), a.domain()), ("Joe.Doe", "example.org"));
        assert_eq!(a.to_string(), "Joe.Doe@example.org");
        assert_eq!(a.normalized(), "joe.doe@example.org");
        assert_eq!(a.normalized(), crate::pgp::normalize_email("Joe.Doe@Example.ORG"));
        assert!(a.matches("joe.doe@EXAMPLE.org"));
        assert!(!a.matches("joe.doe@example.org.evil"));
        assert!(!a.matches("xjoe.doe@example.org"));
        // Only ASCII case is ignored.
        let u = Address::parse("Ünï@example.org").unwrap();
        assert!(u.matches("Ünï@EXAMPLE.ORG"));
        assert!(!u.matches("ünï@example.org"));
        for (bad, why) in [
            ("no-at-sign", "no @"),
            ("@example.org", "empty local part"),
            ("joe@", "empty domain"),
            ("jo e@example.org", "spaces"),
            ("joe@exa mple.org", "not a valid host name"),
            ("joe@-x.org", "not a valid host name"),
            ("joe@x..org", "not a valid host name"),
            ("joe@[127.0.0.1]", "not a valid host name"),
            ("joe@bücher.example", "xn--"),
        ] {
            let e = Address::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn only_keys_for_the_address_are_kept_and_only_its_user_ids() {
        let address = Address::parse("Joe.Doe@Example.ORG").unwrap();
        let joe = cert(&["Joe Doe <joe.doe@example.org>", "<ceo@other.example>"]);
        let mallory = cert(&["<mallory@evil.example>"]);
        let got = matching_certs(&bytes(&[&mallory, &joe], true), &address, &url()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].fingerprint(), joe.fingerprint());
        let uids: Vec<String> = got[0]
            .userids()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .collect();
        assert_eq!(uids, ["Joe Doe <joe.doe@example.org>"]);
        assert!(!got[0].is_tsk(), "secret key material must be dropped");

        // Armored works too.
        let mut armored = Vec::new();
        joe.armored().serialize(&mut armored).unwrap();
        assert_eq!(matching_certs(&armored, &address, &url()).unwrap().len(), 1);

        let e = matching_certs(&bytes(&[&mallory], false), &address, &url()).unwrap_err();
        assert!(matches!(e, DiscoveryError::WrongAddress { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("<mallory@evil.example>") && text.contains("Joe.Doe@example.org") && text.contains("refused"),
            "{text}"
        );
        // A look-alike domain is another address.
        let lookalike = cert(&["<joe.doe@example.org.evil.example>"]);
        assert!(matching_certs(&bytes(&[&lookalike], false), &address, &url()).is_err());
    }

    #[test]
    fn junk_is_not_a_key() {
        let address = Address::parse("joe@example.org").unwrap();
        for junk in [&b""[..], b"<html>not found</html>", &[0x99, 0x01, 0x02]] {
            let e = matching_certs(junk, &address, &url()).unwrap_err();
            assert!(matches!(e, DiscoveryError::BadData { .. }), "{e}");
            assert!(e.to_string().contains("not an OpenPGP key"), "{e}");
        }
    }

    #[tokio::test]
    async fn disabled_domains_and_methods_ask_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeysConfig {
            wkd_disabled_domains: vec!["Example.ORG".into()],
            ..KeysConfig::default()
        };
        let discovery = Discovery::new(&config, dir.path()).unwrap();
        assert!(discovery.is_enabled());
        assert!(!discovery.applies_to("joe@example.org"));
        assert!(!discovery.applies_to("joe@lists.example.org"));
        assert!(discovery.applies_to("joe@notexample.org"));
        assert_eq!(discovery.lookup("joe@sub.example.org").await, Lookup::Disabled);
        assert!(matches!(discovery.lookup("not an address").await, Lookup::Failed(r) if r.contains("no @")));

        let off = Discovery::new(
            &KeysConfig {
                wkd: false,
                ..KeysConfig::default()
            },
            dir.path(),
        )
        .unwrap();
        assert!(!off.is_enabled());
        assert_eq!(off.lookup("joe@example.com").await, Lookup::Disabled);
        assert!(!dir.path().join(cache::FILE_NAME).exists(), "nothing was asked, nothing cached");
    }

    #[test]
    fn bad_settings_are_reported_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let with = |config: KeysConfig| Discovery::new(&config, dir.path()).unwrap_err().to_string();
        let e = with(KeysConfig {
            keyserver: Some("http://keys.example".into()),
            ..KeysConfig::default()
        });
        assert!(e.starts_with("keys.keyserver:") && e.contains("only https"), "{e}");
        let e = with(KeysConfig {
            pins: [("openpgpkey.example.org".to_string(), vec!["nope".to_string()])].into(),
            ..KeysConfig::default()
        });
        assert!(e.starts_with("keys.pins.\"openpgpkey.example.org\":"), "{e}");
        let e = with(KeysConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..KeysConfig::default()
        });
        assert!(e.starts_with("keys.ca_file:"), "{e}");
        // An empty keyserver is off.
        let d = Discovery::new(
            &KeysConfig {
                wkd: false,
                keyserver: Some(" ".into()),
                ..KeysConfig::default()
            },
            dir.path(),
        )
        .unwrap();
        assert!(!d.is_enabled());
    }
}
