//! `sealpost doctor`: checks what a working Sealpost needs, each check a
//! [`Finding`] of one line with its verdict and what to do. Owns the
//! checks; printing them and the exit code are the command's business.
//!
//! The servers are reached as `serve` reaches them (the account's
//! connector, the protocols' STARTTLS; `init` does the same), but nothing
//! is recorded: trust on first use works on a copy of `pins.toml`, so a
//! first contact made by the doctor is reported, not kept.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use crate::account;
use crate::config::{Config, Problem};
use crate::pgp::{Keystore, PassphraseSource};
use crate::tls::{Connector, PinStore, TlsError, TrustMode};
use crate::upstream::UpstreamError;
use crate::url::ServerUrl;

/// A key that expires within this many days is reported.
const EXPIRY_WARNING_DAYS: u64 = 30;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, but needs attention soon.
    Warn,
    /// Does not work.
    Fail,
    /// Not checked, and the line says why.
    Skipped,
}

/// One check's outcome: what was checked and what came out, with what to
/// do when something is wrong.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked (`config`, `listen.imap`, `account alice@...: key`).
    pub subject: String,
    /// What was found.
    pub text: String,
}

impl Finding {
    fn new(verdict: Verdict, subject: impl Into<String>, text: impl Into<String>) -> Finding {
        Finding {
            verdict,
            subject: subject.into(),
            text: text.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skip",
        };
        write!(f, "{verdict} {}: {}", self.subject, self.text)
    }
}

/// The configuration problems `load` found, one failed check each.
pub fn config_problems(problems: &[Problem]) -> Vec<Finding> {
    problems
        .iter()
        .map(|p| Finding::new(Verdict::Fail, "config", p.to_string()))
        .collect()
}

/// Every check for a configuration that loaded from `file`.
pub fn run(config: &Config, file: Option<&Path>, passphrases: &PassphraseSource) -> Vec<Finding> {
    let file = file
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "no file (defaults and environment)".into());
    let mut findings = vec![Finding::new(Verdict::Ok, "config", format!("{file} has no problems"))];
    if config.accounts.is_empty() {
        findings.push(Finding::new(
            Verdict::Fail,
            "accounts",
            "no [[account]] is configured; run 'sealpost init' or see config/sealpost.example.toml",
        ));
    }
    findings.extend(keys(config, passphrases));
    findings.extend(listeners(config));
    findings.extend(servers(config));
    findings.push(Finding::new(
        Verdict::Skipped,
        "clock",
        "skew not checked: IMAP and SMTP servers do not state their time; keep the clock synchronised (NTP), as TLS and signatures depend on it",
    ));
    findings
}

/// Per account: its own key is there, unlocks, and does not expire soon.
fn keys(config: &Config, passphrases: &PassphraseSource) -> Vec<Finding> {
    let store = match Keystore::open(&config.data_dir) {
        Ok(store) => store,
        Err(e) => return vec![Finding::new(Verdict::Fail, "key store", e.to_string())],
    };
    let mut findings = Vec::new();
    for account in &config.accounts {
        let subject = format!("account {}: key", account.login);
        let address = account.address();
        let own = match store.own_key(&address) {
            Ok(own) => own,
            Err(e) => {
                findings.push(Finding::new(Verdict::Fail, subject, e.to_string()));
                continue;
            }
        };
        if let Err(e) = store.unlock(own, passphrases) {
            findings.push(Finding::new(
                Verdict::Fail,
                subject,
                format!("{e}; give the right passphrase in SEALPOST_PASSPHRASE or passphrase_file"),
            ));
            continue;
        }
        let (verdict, expiry) = expiry(own.expiry(), SystemTime::now());
        findings.push(Finding::new(
            verdict,
            subject,
            format!("{} for <{address}> unlocks and {expiry}", own.fingerprint()),
        ));
    }
    findings
}

/// What a key's expiry time means `now`.
fn expiry(expires: Option<SystemTime>, now: SystemTime) -> (Verdict, String) {
    let Some(at) = expires else {
        return (Verdict::Ok, "does not expire".into());
    };
    let extend = "extend it (gpg --quick-set-expire) and import it again with 'sealpost keys import'";
    match at.duration_since(now).map(|left| left.as_secs() / 86_400) {
        Err(_) => (Verdict::Fail, format!("has expired: {extend}")),
        Ok(days) if days < EXPIRY_WARNING_DAYS => (Verdict::Warn, format!("expires in {days} day(s): {extend}")),
        Ok(days) => (Verdict::Ok, format!("expires in {days} days")),
    }
}

/// Each configured listener address: free, or held by the Sealpost
/// serving with this data_dir.
fn listeners(config: &Config) -> Vec<Finding> {
    let listen = &config.listen;
    let addresses = [
        ("listen.smtp", Some(listen.smtp)),
        ("listen.smtps", listen.smtps),
        ("listen.imap", Some(listen.imap)),
        ("listen.imaps", listen.imaps),
        ("listen.metrics", listen.metrics),
    ];
    addresses
        .into_iter()
        .filter_map(|(key, addr)| Some(listener(config, key, addr?)))
        .collect()
}

fn listener(config: &Config, key: &str, addr: SocketAddr) -> Finding {
    if addr.port() == 0 {
        return Finding::new(Verdict::Ok, key, format!("{addr}: port 0, the system picks a free port"));
    }
    let error = match std::net::TcpListener::bind(addr) {
        Ok(_) => return Finding::new(Verdict::Ok, key, format!("{addr} is free")),
        Err(e) => e,
    };
    if error.kind() != std::io::ErrorKind::AddrInUse {
        let hint = if error.kind() == std::io::ErrorKind::PermissionDenied {
            "; a port below 1024 needs CAP_NET_BIND_SERVICE"
        } else {
            ""
        };
        return Finding::new(Verdict::Fail, key, format!("cannot listen on {addr}: {error}{hint}"));
    }
    let running = crate::pidfile::running(&config.data_dir).ok();
    match running.map(|pid| (pid, listens_on(pid, addr.port()))) {
        Some((pid, Some(true))) => Finding::new(Verdict::Ok, key, format!("{addr} is held by this Sealpost (pid {pid})")),
        Some((pid, None)) => Finding::new(
            Verdict::Warn,
            key,
            format!("{addr} is in use and Sealpost (pid {pid}) runs, but its sockets cannot be read to tell whether it holds it; run doctor as its user"),
        ),
        _ => Finding::new(
            Verdict::Fail,
            key,
            format!("{addr} is in use by another program; stop it ('ss -ltnp' names it) or choose another {key}"),
        ),
    }
}

/// Whether process `pid` has a listening TCP socket on `port` (`None`:
/// its file descriptors cannot be read).
fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            let inode = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']'));
            inode.is_some_and(|inode| inodes.iter().any(|i| i == inode))
        })
    }))
}

/// The inodes of the sockets listening on `port` (any address), from the
/// kernel's TCP tables.
fn listening_inodes(port: u16) -> Vec<String> {
    let wanted = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1, the state field 3 (0A: LISTEN),
            // the inode field 9.
            if fields.len() > 9 && fields[1].ends_with(&wanted) && fields[3] == "0A" {
                inodes.push(fields[9].to_string());
            }
        }
    }
    inodes
}

/// Every server of every account, reached as `serve` would.
fn servers(config: &Config) -> Vec<Finding> {
    let not_checked = |e: std::io::Error| vec![Finding::new(Verdict::Fail, "servers", format!("not checked: {e}"))];
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return not_checked(e),
    };
    // Trust on first use records into a copy: the doctor only looks.
    let scratch = match scratch_pins(&config.data_dir) {
        Ok(scratch) => scratch,
        Err(e) => return not_checked(e),
    };
    let mut findings = Vec::new();
    for account in &config.accounts {
        let connector = match account::connector(account, scratch.path()) {
            Ok(connector) => connector,
            Err(e) => {
                findings.push(Finding::new(Verdict::Fail, format!("account {}", account.login), e.to_string()));
                continue;
            }
        };
        let urls = [
            ("imap", account.imap.as_deref().map(|t| (t, ServerUrl::parse_imap(t)))),
            ("smtp", account.smtp.as_deref().map(|t| (t, ServerUrl::parse_smtp(t)))),
        ];
        for (protocol, url) in urls {
            // validate() has refused bad URLs before the doctor runs.
            let Some((text, Ok(url))) = url else { continue };
            let subject = format!("account {}: {protocol} {text}", account.login);
            let reached = runtime.block_on(login_ways(protocol, &url, &connector, &config.listen.hostname));
            findings.push(match reached {
                Ok(ways) => reached_finding(subject, &url, account.trust, &config.data_dir, &ways),
                Err(e) => Finding::new(Verdict::Fail, subject, failure(&e)),
            });
        }
    }
    findings
}

/// A temporary directory holding a copy of `data_dir/pins.toml`.
fn scratch_pins(data_dir: &Path) -> std::io::Result<tempfile::TempDir> {
    let scratch = tempfile::tempdir()?;
    let pins = PinStore::new(data_dir);
    if pins.path().exists() {
        std::fs::copy(pins.path(), PinStore::new(scratch.path()).path())?;
    }
    Ok(scratch)
}

/// Connects to `url` (TLS verified, STARTTLS where the URL says) and
/// says how the server lets clients log in after TLS, as the protocol
/// names it (IMAP `AUTH=PLAIN`, the LOGIN command; SMTP `AUTH PLAIN`);
/// empty when it offers no way.
async fn login_ways(protocol: &str, url: &ServerUrl, connector: &Connector, hostname: &str) -> Result<String, UpstreamError> {
    if protocol == "imap" {
        let upstream = crate::imap::upstream::Upstream::connect(url, connector).await?;
        let mut ways: Vec<String> = upstream.capabilities.iter().filter(|c| c.starts_with("AUTH=")).cloned().collect();
        if !upstream.has("LOGINDISABLED") {
            ways.push("the LOGIN command".into());
        }
        Ok(ways.join(", "))
    } else {
        let upstream = crate::smtp::upstream::Upstream::connect(url, connector, hostname).await?;
        let mechanisms = upstream.capabilities.auth.join(" ");
        upstream.quit().await;
        Ok(if mechanisms.is_empty() {
            mechanisms
        } else {
            format!("AUTH {mechanisms}")
        })
    }
}

/// The line for a server that was reached: how TLS came about, how its
/// key was checked, and the login mechanisms.
fn reached_finding(subject: String, url: &ServerUrl, trust: TrustMode, data_dir: &Path, login: &str) -> Finding {
    let tls = if url.implicit_tls { "TLS" } else { "STARTTLS offered and done" };
    let key = match trust {
        TrustMode::Ca => "certificate CA-verified (no pin)",
        TrustMode::Pin => "server key matches a configured pin",
        TrustMode::CaAndPin => "certificate CA-verified and key matches a configured pin",
        TrustMode::Tofu => match PinStore::new(data_dir).get(&format!("{}:{}", url.host, url.port)) {
            Ok(Some(_)) => "server key matches the one recorded in pins.toml",
            _ => "certificate CA-verified; no key recorded yet ('sealpost serve' records it on first contact)",
        },
    };
    if login.is_empty() {
        return Finding::new(
            Verdict::Fail,
            subject,
            format!("reachable, {tls}, {key}, but no login mechanism is offered after TLS; check the URL's port"),
        );
    }
    Finding::new(Verdict::Ok, subject, format!("reachable, {tls}, {key}; login: {login}"))
}

/// What went wrong reaching a server, with what to do.
fn failure(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } => {
            format!("unreachable: {e}; check the host and port in the account's URL, and that the network lets Sealpost through")
        }
        UpstreamError::Tls(TlsError::PinMismatch(mismatch)) => format!("pin mismatch: {mismatch}"),
        UpstreamError::Tls(tls) => format!("TLS failed: {tls}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_line_starts_with_its_verdict() {
        let line = Finding::new(Verdict::Fail, "listen.imap", "127.0.0.1:1143 is in use").to_string();
        assert_eq!(line, "FAIL listen.imap: 127.0.0.1:1143 is in use");
        assert!(Finding::new(Verdict::Ok, "config", "fine").to_string().starts_with("ok   config: "));
    }

    #[test]
    fn keys_expiring_within_30_days_are_reported() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let days = |d: u64| Some(now + Duration::from_secs(d * 86_400 + 60));
        assert_eq!(expiry(None, now).0, Verdict::Ok);
        assert_eq!(expiry(days(400), now), (Verdict::Ok, "expires in 400 days".to_string()));
        let (verdict, text) = expiry(days(12), now);
        assert!(
            verdict == Verdict::Warn && text.starts_with("expires in 12 day(s): extend it"),
            "{text}"
        );
        let (verdict, text) = expiry(Some(now - Duration::from_secs(5)), now);
        assert!(verdict == Verdict::Fail && text.starts_with("has expired"), "{text}");
    }

    #[test]
    fn a_listener_of_this_process_is_found_in_the_tcp_tables() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(listens_on(std::process::id(), port), Some(true));
        drop(socket);
        assert_eq!(listens_on(std::process::id(), port), Some(false));
    }
}
