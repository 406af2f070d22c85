//! A real `sealpost serve` process for the integration tests, configured
//! against the test stack, with its own ports and log file.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::stack::{stack, Stack};
use super::{User, PASSPHRASE};

/// A running proxy; stopped (SIGTERM) when dropped.
pub struct Proxy {
    child: Child,
    /// SMTP with STARTTLS.
    pub smtp: SocketAddr,
    /// SMTP with implicit TLS.
    pub smtps: SocketAddr,
    /// IMAP with STARTTLS offered.
    pub imap: SocketAddr,
    /// IMAP with implicit TLS.
    pub imaps: SocketAddr,
    /// Prometheus metrics.
    pub metrics: SocketAddr,
    /// The proxy's stderr.
    pub log: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    _config_dir: tempfile::TempDir,
}

/// How a test proxy is configured beyond the defaults.
#[derive(Default)]
pub struct Setup<'a> {
    /// The account's submission URL (default: the stack's STARTTLS port).
    pub upstream: Option<&'a str>,
    /// Top-level configuration (e.g. a `[policy]` table).
    pub extra: &'a str,
    /// Lines added to the `[[account]]` table (e.g. `trust = "pin"`).
    pub account: &'a str,
    /// Leave out the stack's CA as `ca_file`.
    pub without_ca_file: bool,
    /// The account's IMAP URL (default: the stack's STARTTLS IMAP port).
    pub imap_upstream: Option<&'a str>,
    /// Lines of the `[keys]` table. By default key discovery is off: tests
    /// talk to loopback only, and a Web Key Directory look-up would ask
    /// DNS for the recipient's domain.
    pub keys: Option<&'a str>,
    /// Lines added to the `[listen]` table (e.g. `shutdown_grace = 2`).
    pub listen: &'a str,
}

impl Proxy {
    /// Starts a proxy whose data_dir is `user`'s key store, with one
    /// account for `user` submitting to `upstream` (an `smtp://` or
    /// `smtps://` URL; `None` means the stack's STARTTLS submission port).
    /// `extra` is appended to the configuration (e.g. a `[policy]` table).
    pub fn start(user: &User, upstream: Option<&str>, extra: &str) -> Proxy {
        Proxy::start_with(
            user,
            Setup {
                upstream,
                extra,
                ..Setup::default()
            },
        )
    }

    /// Starts a proxy as [`Setup`] says.
    pub fn start_with(user: &User, setup: Setup<'_>) -> Proxy {
        let stack: &Stack = stack();
        let imap_upstream = setup
            .imap_upstream
            .map(str::to_string)
            .unwrap_or_else(|| format!("imap://{}:{}", stack.tls_name, stack.imap_port));
        let upstream = setup
            .upstream
            .map(str::to_string)
            .unwrap_or_else(|| format!("smtp://{}:{}", stack.tls_name, stack.submission_port));
        let ca_line = if setup.without_ca_file {
            String::new()
        } else {
            format!("ca_file = \"{}\"\n", stack.ca_file.display())
        };
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("sealpost.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{data}\"\n{extra}\n[keys]\n{keys}\n[listen]\n{LISTEN_ANY_PORT}{listen}\n\n\
[[account]]\nlogin = \"{login}\"\nsmtp = \"{upstream}\"\nimap = \"{imap_upstream}\"\n{ca_line}{account}\n",
                data = user.dir.path().display(),
                extra = setup.extra,
                keys = setup.keys.unwrap_or("wkd = false"),
                login = user.email,
                account = setup.account,
                listen = setup.listen,
            ),
        )
        .unwrap();
        Proxy::serve(config_dir, config, &[])
    }

    /// Runs `sealpost serve` on the configuration file `config` (kept,
    /// with the log, in `config_dir`, removed when the proxy is dropped),
    /// with `env` added to the environment, and waits until it listens.
    /// The file must put every listener (metrics too) on port 0, or `env`
    /// must ([`LISTEN_ANY_PORT_ENV`]).
    pub fn serve(config_dir: tempfile::TempDir, config: PathBuf, env: &[(&str, &str)]) -> Proxy {
        let log = config_dir.path().join("sealpost.log");
        let bound = config_dir.path().join("bound.toml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .arg("--config")
            .arg(&config)
            .args(["serve", "--bound-addresses", bound.to_str().unwrap()])
            .env("SEALPOST_PASSPHRASE", PASSPHRASE)
            .env("RUST_LOG", "sealpost=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addresses = wait_for_addresses(&mut child, &bound, &log);
        let address = |name: &str| addresses[name];
        Proxy {
            child,
            smtp: address("smtp"),
            smtps: address("smtps"),
            imap: address("imap"),
            imaps: address("imaps"),
            metrics: address("metrics"),
            log,
            config,
            _config_dir: config_dir,
        }
    }

    /// Runs `sealpost ARGS` with this proxy's configuration (as its
    /// administrator would, beside the running proxy): success and
    /// stdout followed by stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("SEALPOST_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    /// Sends SIGTERM, as systemd does to stop a service.
    pub fn sigterm(&self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
    }

    /// Sends SIGHUP, as `systemctl reload` does: reload the configuration.
    pub fn sighup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// Waits up to `limit` until the log holds `needle` `times` times,
    /// failing with the log if it does not.
    pub fn wait_for_log(&self, needle: &str, times: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.log_text().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {times} time(s) within {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, once the process has ended (waiting up to
    /// `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics page.
    pub fn metrics_text(&self) -> String {
        self.http_get("/metrics")
    }

    /// The whole HTTP response (status line, header, body) to a GET of
    /// `path` on the metrics listener.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sigterm();
        if self.wait_exit(Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every listener on port 0: the system picks free ports and the proxy
/// reports them (`serve --bound-addresses`), so parallel tests never race
/// for a port.
const LISTEN_ANY_PORT: &str =
    "smtp = \"127.0.0.1:0\"\nsmtps = \"127.0.0.1:0\"\nimap = \"127.0.0.1:0\"\nimaps = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n";

/// [`LISTEN_ANY_PORT`] as environment variables, for a configuration
/// file written with other addresses (by `sealpost init`, say).
pub const LISTEN_ANY_PORT_ENV: [(&str, &str); 5] = [
    ("SEALPOST_LISTEN__SMTP", "127.0.0.1:0"),
    ("SEALPOST_LISTEN__SMTPS", "127.0.0.1:0"),
    ("SEALPOST_LISTEN__IMAP", "127.0.0.1:0"),
    ("SEALPOST_LISTEN__IMAPS", "127.0.0.1:0"),
    ("SEALPOST_LISTEN__METRICS", "127.0.0.1:0"),
];

/// Waits for `serve` to write its bound addresses (it binds every
/// listener first), failing with its log if it exits or takes too long.
fn wait_for_addresses(child: &mut Child, bound: &Path, log: &Path) -> std::collections::HashMap<String, SocketAddr> {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sealpost serve exited ({status}):\n{}", log_text());
        }
        if let Ok(text) = std::fs::read_to_string(bound) {
            return text
                .lines()
                .filter_map(|line| line.split_once(" = "))
                .map(|(name, addr)| (name.to_string(), addr.trim_matches('"').parse().unwrap()))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sealpost serve did not report its addresses:\n{}", log_text());
}

/// Starts a scripted server (`python3 -c script args...`) that binds port
/// 0 and prints `ready PORT` once it listens; returns it and the port.
pub fn scripted_server(script: &str, args: &[&str]) -> (Child, u16) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let port = ready
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("the scripted server reports its port, not {ready:?}"))
        .parse()
        .unwrap();
    (child, port)
}

/// A proxy for `user` whose IMAP server is the test stack's Cyrus
/// (STARTTLS), everything else as [`Proxy::start`].
pub fn proxy_to_cyrus(user: &User) -> Proxy {
    let upstream = format!("imap://{}:{}", stack().tls_name, stack().cyrus_imap_port);
    Proxy::start_with(
        user,
        Setup {
            imap_upstream: Some(&upstream),
            ..Setup::default()
        },
    )
}

/// A unique token for this test run, to find its messages among others.
pub fn token(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// What every Python snippet starts with: the modules the tests use,
/// `connect(port)`, an SMTP session to a proxy after STARTTLS, and
/// `imap(port, user, password)`, a logged-in imaplib session after
/// STARTTLS (the proxy's certificate is its self-signed local one).
const PYTHON_PRELUDE: &str = r#"
import base64, imaplib, json, os, smtplib, ssl, sys
def local_tls():
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    return ctx
def connect(port):
    s = smtplib.SMTP("127.0.0.1", port); s.starttls(context=local_tls())
    return s
def imap(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", int(port)); m.starttls(ssl_context=local_tls())
    m.login(user, password)
    return m
"#;

/// The Python prelude, for tests that run python3 themselves.
pub fn prelude() -> &'static str {
    PYTHON_PRELUDE
}

/// Runs a Python 3 snippet (smtplib and friends) after
/// [`PYTHON_PRELUDE`], returning its stdout; panics with stderr if it
/// fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{PYTHON_PRELUDE}{script}"))
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs swaks with `args`, returning (exit success, transcript).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks is installed by deploy/teststack/start.sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Writes `bytes` to a file in a fresh temporary directory.
pub fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// The path as &str.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
