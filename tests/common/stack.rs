//! The real mail test stack: a Postfix and a Dovecot configured like a small
//! mail provider, on 127.0.0.1 high ports, brought up by
//! `deploy/teststack/start.sh` (see `deploy/teststack/README.md` for the
//! ports, users and files).
//!
//! For certificate-pinning tests, more ports serve the same names
//! (`localhost`, 127.0.0.1, ::1, 127.0.0.2) with other certificates: one
//! submission port and one IMAPS port each for [`Stack::impostor_cert`],
//! [`Stack::other_ca_cert`], [`Stack::selfsigned_cert`] and
//! [`Stack::renewed_cert`]. None of them resumes a TLS session from another
//! port, so the certificate is presented on every connection.
//!
//! A Cyrus IMAP 3.6 runs beside Dovecot as a second, quite different IMAP
//! server with the same users and certificate ([`Stack::cyrus_imap_port`],
//! [`Stack::cyrus_imaps_port`]; `deploy/teststack/cyrus.sh`).
//!
//! [`stack()`] starts it once per test process and returns its description;
//! later calls, from any thread, return the same [`Stack`]. The stack itself
//! outlives the test process and is shared by every test binary, so mail
//! from earlier tests and earlier runs stays in the mailboxes: give each
//! test's messages a unique token (in the Subject or a `Message-ID`) and wait
//! with [`Stack::wait_for_matching`] rather than counting a whole INBOX.
//!
//! Needs root, like the rest of the stack: start.sh installs missing Debian
//! packages and runs the daemons, and the Maildirs belong to user `vmail`.
//! The stack's directory is `$SEALPOST_TESTSTACK_DIR`, default
//! [`DEFAULT_DIR`].
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the stack keeps its state when `SEALPOST_TESTSTACK_DIR` is unset.
pub const DEFAULT_DIR: &str = "/tmp/sealpost-teststack";

/// The mailbox users; each one's password is `pw-<localpart>` ([`password`]).
pub const USERS: [&str; 6] = [
    "alice@example.org",
    "bob@example.net",
    "carol@example.com",
    "dave@example.com",
    "erin@example.org",
    LIMITED_USER,
];

/// The user who keeps Dovecot's default limit of 10 IMAP connections per
/// user and IP; only tests of that limit log in as this user.
pub const LIMITED_USER: &str = "frank@example.com";

/// A running test stack: where to connect, which CA to trust, where the
/// mail and logs are. Every value comes from the `env` file start.sh writes.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The stack's state directory (certificates, configs, mail, queue, logs).
    pub dir: PathBuf,
    /// The address every service listens on: `127.0.0.1`.
    pub host: String,
    /// The name the server certificate is valid for: `localhost`.
    pub tls_name: String,
    /// `127.0.0.2`: the plain IMAP port ([`Stack::imap_port`]) is also
    /// served there, where Dovecot does not treat the connection as local
    /// and so advertises `LOGINDISABLED` until STARTTLS, as real providers
    /// do. On 127.0.0.1 Dovecot counts loopback as secure and allows LOGIN
    /// without TLS.
    pub imap_strict_host: String,
    /// `127.0.0.3`: the same Dovecot, IMAP port and mail, announcing no
    /// ESEARCH (the proxy's plain-SEARCH path).
    pub imap_noesearch_host: String,
    /// Plain SMTP without AUTH for injecting test mail to the stack's users
    /// (31025); STARTTLS offered, relaying refused.
    pub smtp_inject_port: u16,
    /// Submission (31587): STARTTLS required, AUTH PLAIN/LOGIN after it.
    pub submission_port: u16,
    /// Submissions (31465): implicit TLS, AUTH PLAIN/LOGIN.
    pub submissions_port: u16,
    /// A deliberately unsafe submission port (31588): no STARTTLS, AUTH in
    /// clear text. Sealpost must refuse to use it.
    pub plainauth_port: u16,
    /// IMAP with STARTTLS (31143).
    pub imap_port: u16,
    /// IMAP over implicit TLS (31993).
    pub imaps_port: u16,
    /// Dovecot LMTP (31024), where Postfix delivers.
    pub lmtp_port: u16,
    /// Dovecot's SASL auth service (31012), used by Postfix.
    pub sasl_port: u16,
    /// Pinning: submission (31591), the rules of [`Stack::submission_port`],
    /// presenting [`Stack::impostor_cert`] (same CA and names, another key).
    pub impostor_submission_port: u16,
    /// Pinning: submission (31592) presenting [`Stack::other_ca_cert`]
    /// (same names, signed by the second CA).
    pub other_ca_submission_port: u16,
    /// Pinning: submission (31593) presenting [`Stack::selfsigned_cert`]
    /// (same names, no CA).
    pub selfsigned_submission_port: u16,
    /// Pinning: submission (31594) presenting [`Stack::renewed_cert`] (same
    /// CA, names and key as [`Stack::server_cert`]: a renewal).
    pub renewed_submission_port: u16,
    /// Pinning: IMAP over implicit TLS (31995) presenting
    /// [`Stack::impostor_cert`]; same users and mailboxes as
    /// [`Stack::imaps_port`] (a separate Dovecot instance on the same mail).
    pub impostor_imaps_port: u16,
    /// Pinning: IMAPS (31996) presenting [`Stack::other_ca_cert`].
    pub other_ca_imaps_port: u16,
    /// Pinning: IMAPS (31997) presenting [`Stack::selfsigned_cert`].
    pub selfsigned_imaps_port: u16,
    /// Pinning: IMAPS (31998) presenting [`Stack::renewed_cert`].
    pub renewed_imaps_port: u16,
    /// Cyrus IMAP 3.6 (`deploy/teststack/cyrus.sh`), a second IMAP server
    /// beside Dovecot: IMAP with STARTTLS (31243), the same users, passwords
    /// and certificate, but its own mail store (nothing delivers there:
    /// APPEND). Unlike Dovecot it refuses LOGIN before STARTTLS even on
    /// loopback (`LOGINDISABLED`).
    pub cyrus_imap_port: u16,
    /// Cyrus IMAP over implicit TLS (31293). After LOGOUT's tagged OK,
    /// Cyrus closes the connection without a TLS close_notify.
    pub cyrus_imaps_port: u16,
    /// The test CA that signed the servers' certificate (`DIR/ca/ca.pem`).
    pub ca_file: PathBuf,
    /// A second, unrelated CA (`DIR/ca2/ca.pem`).
    pub ca2_file: PathBuf,
    /// The certificate the servers present (`DIR/tls/server.pem`).
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// Same names, same CA, another key (`DIR/tls/impostor.pem`): for
    /// pinning tests. Served on [`Stack::impostor_submission_port`] and
    /// [`Stack::impostor_imaps_port`].
    pub impostor_cert: PathBuf,
    /// Its private key.
    pub impostor_key: PathBuf,
    /// Same names from the second CA (`DIR/tls/other-ca.pem`). Served on
    /// [`Stack::other_ca_submission_port`] and [`Stack::other_ca_imaps_port`].
    pub other_ca_cert: PathBuf,
    /// Its private key.
    pub other_ca_key: PathBuf,
    /// A renewal of [`Stack::server_cert`] (`DIR/tls/renewed.pem`): same
    /// names, same CA, same private key ([`Stack::server_key`]), so the same
    /// SPKI, but another serial and validity. Served on
    /// [`Stack::renewed_submission_port`] and [`Stack::renewed_imaps_port`].
    pub renewed_cert: PathBuf,
    /// A self-signed certificate for the same names with its own key
    /// (`DIR/tls/selfsigned.pem`; `CA:FALSE`, it verifies only when it is
    /// itself the trust anchor). Served on
    /// [`Stack::selfsigned_submission_port`] and
    /// [`Stack::selfsigned_imaps_port`].
    pub selfsigned_cert: PathBuf,
    /// Its private key.
    pub selfsigned_key: PathBuf,
    /// Root of the Maildirs: `MAIL_ROOT/<domain>/<localpart>/Maildir`.
    pub mail_root: PathBuf,
    /// Postfix's queue; mail to other domains stays in its `deferred/`.
    pub postfix_queue_dir: PathBuf,
    /// Postfix's log file.
    pub postfix_log: PathBuf,
    /// Dovecot's log file.
    pub dovecot_log: PathBuf,
}

static STACK: OnceLock<Stack> = OnceLock::new();

/// The test stack, started (or checked, in well under a second when it is
/// already up) by `deploy/teststack/start.sh` on the first call in this
/// process. Panics with the script's output if it cannot be started.
pub fn stack() -> &'static Stack {
    STACK.get_or_init(|| {
        let dir = std::env::var_os("SEALPOST_TESTSTACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/teststack/start.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if !out.status.success() {
            panic!(
                "{} {} failed ({}):\n{}{}",
                script.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Stack::load(&dir)
    })
}

/// The password of a stack user: `pw-<localpart>`. Panics for an address
/// that is not one of [`USERS`].
pub fn password(user_email: &str) -> String {
    assert!(USERS.contains(&user_email), "{user_email} is not a test stack user ({USERS:?})");
    format!("pw-{}", localpart(user_email))
}

fn localpart(email: &str) -> &str {
    email.split('@').next().unwrap_or(email)
}

fn domain(email: &str) -> &str {
    email
        .split_once('@')
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("{email} is not an address"))
}

impl Stack {
    /// Reads the description of the stack in `dir` from its `env` file
    /// (written by start.sh); does not start anything. An `env` file from an
    /// older start.sh, without the pinning entries, still loads: those
    /// fields then get their fixed ports and `DIR/tls/` paths (whether
    /// anything listens there is another matter; [`stack()`] always runs
    /// the current start.sh first, which adds them). The Cyrus ports come
    /// from `cyrus.env` (written by cyrus.sh, which start.sh runs), with
    /// the same fallback.
    pub fn load(dir: &Path) -> Stack {
        let env_file = dir.join("env");
        let mut text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| panic!("cannot read {}: {e}", env_file.display()));
        if let Ok(cyrus) = std::fs::read_to_string(dir.join("cyrus.env")) {
            text.push('\n');
            text.push_str(&cyrus);
        }
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        let get = |k: &str| -> String {
            vars.get(k)
                .unwrap_or_else(|| panic!("{} has no {k}", env_file.display()))
                .to_string()
        };
        let port = |k: &str| -> u16 { get(k).parse().unwrap_or_else(|e| panic!("{k} in {}: {e}", env_file.display())) };
        let path = |k: &str| PathBuf::from(get(k));
        // Entries added after the first version of the env file.
        let port_or = |k: &str, default: u16| -> u16 {
            if vars.contains_key(k) {
                port(k)
            } else {
                default
            }
        };
        let tls_dir = path("STACK_DIR").join("tls");
        let path_or = |k: &str, file: &str| -> PathBuf { vars.get(k).map(PathBuf::from).unwrap_or_else(|| tls_dir.join(file)) };
        Stack {
            dir: path("STACK_DIR"),
            host: get("STACK_HOST"),
            tls_name: get("STACK_TLS_NAME"),
            imap_strict_host: get("IMAP_STRICT_HOST"),
            imap_noesearch_host: get("IMAP_NOESEARCH_HOST"),
            smtp_inject_port: port("SMTP_INJECT_PORT"),
            submission_port: port("SMTP_SUBMISSION_PORT"),
            submissions_port: port("SMTP_SUBMISSIONS_PORT"),
            plainauth_port: port("SMTP_PLAINAUTH_PORT"),
            imap_port: port("IMAP_PORT"),
            imaps_port: port("IMAPS_PORT"),
            lmtp_port: port("LMTP_PORT"),
            sasl_port: port("SASL_PORT"),
            impostor_submission_port: port_or("IMPOSTOR_SUBMISSION_PORT", 31591),
            other_ca_submission_port: port_or("OTHER_CA_SUBMISSION_PORT", 31592),
            selfsigned_submission_port: port_or("SELFSIGNED_SUBMISSION_PORT", 31593),
            renewed_submission_port: port_or("RENEWED_SUBMISSION_PORT", 31594),
            impostor_imaps_port: port_or("IMPOSTOR_IMAPS_PORT", 31995),
            other_ca_imaps_port: port_or("OTHER_CA_IMAPS_PORT", 31996),
            selfsigned_imaps_port: port_or("SELFSIGNED_IMAPS_PORT", 31997),
            renewed_imaps_port: port_or("RENEWED_IMAPS_PORT", 31998),
            cyrus_imap_port: port_or("CYRUS_IMAP_PORT", 31243),
            cyrus_imaps_port: port_or("CYRUS_IMAPS_PORT", 31293),
            ca_file: path("CA_FILE"),
            ca2_file: path("CA2_FILE"),
            server_cert: path("SERVER_CERT"),
            server_key: path("SERVER_KEY"),
            impostor_cert: path("IMPOSTOR_CERT"),
            impostor_key: path("IMPOSTOR_KEY"),
            other_ca_cert: path("OTHER_CA_CERT"),
            other_ca_key: path("OTHER_CA_KEY"),
            renewed_cert: path_or("RENEWED_CERT", "renewed.pem"),
            selfsigned_cert: path_or("SELFSIGNED_CERT", "selfsigned.pem"),
            selfsigned_key: path_or("SELFSIGNED_KEY", "selfsigned.key"),
            mail_root: path("MAIL_ROOT"),
            postfix_queue_dir: path("POSTFIX_QUEUE_DIR"),
            postfix_log: path("POSTFIX_LOG"),
            dovecot_log: path("DOVECOT_LOG"),
        }
    }

    /// The password of a stack user; see [`password`].
    pub fn password(&self, user_email: &str) -> String {
        password(user_email)
    }

    /// `host:port`, e.g. for `TcpStream::connect`.
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.host)
    }

    /// The user's Maildir: `MAIL_ROOT/<domain>/<localpart>/Maildir`.
    pub fn maildir(&self, user_email: &str) -> PathBuf {
        self.mail_root.join(domain(user_email)).join(localpart(user_email)).join("Maildir")
    }

    /// The message files in the user's INBOX (`new/` and `cur/`; Dovecot
    /// moves a message from new/ to cur/ once an IMAP client has seen it),
    /// oldest delivery first.
    pub fn maildir_messages(&self, user_email: &str) -> Vec<PathBuf> {
        message_files(&self.maildir(user_email))
    }

    /// The message files in another of the user's mailboxes, e.g. `"Sent"`
    /// or `"Drafts"` (Maildir++ layout: `Maildir/.Sent/{new,cur}`), oldest
    /// first. Empty if the mailbox does not exist yet.
    pub fn mailbox_messages(&self, user_email: &str, mailbox: &str) -> Vec<PathBuf> {
        if mailbox.eq_ignore_ascii_case("INBOX") {
            return self.maildir_messages(user_email);
        }
        message_files(&self.maildir(user_email).join(format!(".{mailbox}")))
    }

    /// Waits until the user's INBOX holds at least `count` messages and
    /// returns the contents of all of them (possibly more than `count`),
    /// oldest first. Panics after `timeout`, showing the end of the logs.
    /// Mail persists across runs, so prefer [`Stack::wait_for_matching`].
    pub fn wait_for_messages(&self, user_email: &str, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.wait_until(user_email, count, timeout, None)
    }

    /// Waits until the user's INBOX holds at least `count` messages whose
    /// first 64 KiB contain `needle` (a token the test put in the header), and
    /// returns those messages, oldest first. Panics after `timeout`.
    pub fn wait_for_matching(&self, user_email: &str, needle: &[u8], count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.wait_until(user_email, count, timeout, Some(needle))
    }

    /// The Postfix queue files (any queue: incoming, active, deferred, hold)
    /// that contain `needle`. Mail to domains outside the stack never
    /// leaves: it stays in `deferred/`, so this shows what the provider would
    /// have sent on. The files are Postfix's record format, but header and
    /// body lines appear in them verbatim.
    pub fn queue_files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for queue in ["incoming", "active", "deferred", "hold"] {
            walk(&self.postfix_queue_dir.join(queue), &mut |p| {
                if std::fs::read(p).map(|b| contains(&b, needle)).unwrap_or(false) {
                    found.push(p.to_path_buf());
                }
            });
        }
        found
    }

    /// The last `lines` lines of the Postfix and Dovecot logs, for messages
    /// of failing tests.
    pub fn log_tail(&self, lines: usize) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        format!(
            "--- {}\n{}\n--- {}\n{}",
            self.postfix_log.display(),
            tail(&self.postfix_log),
            self.dovecot_log.display(),
            tail(&self.dovecot_log)
        )
    }

    /// Delivers `message` to `to` through the plain inject port (no AUTH,
    /// no Sealpost), as mail from the outside arrives at a provider.
    pub fn inject(&self, to: &str, message: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import smtplib, sys\ns = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))\ns.sendmail('sender@example.net', [sys.argv[2]], sys.stdin.buffer.read())\ns.quit()",
                &self.smtp_inject_port.to_string(),
                to,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is installed");
        child.stdin.take().unwrap().write_all(message).unwrap();
        assert!(child.wait().unwrap().success(), "injecting a message to {to} failed");
    }

    /// Deletes the user's messages whose head contains `needle`, so big
    /// test messages do not pile up across runs.
    pub fn remove_matching(&self, user_email: &str, needle: &[u8]) {
        for path in message_files(&self.maildir(user_email)) {
            if read_head(&path, HEAD_BYTES).is_ok_and(|head| contains(&head, needle)) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn wait_until(&self, user: &str, count: usize, timeout: Duration, needle: Option<&[u8]>) -> Vec<Vec<u8>> {
        assert!(USERS.contains(&user), "{user} is not a test stack user ({USERS:?})");
        let deadline = Instant::now() + timeout;
        loop {
            let messages = read_messages(&self.maildir(user), needle);
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "after {timeout:?}, {} has {} message(s){}, wanted {count}\n{}",
                    user,
                    messages.len(),
                    needle
                        .map(|n| format!(" containing {:?}", String::from_utf8_lossy(n)))
                        .unwrap_or_default(),
                    self.log_tail(15)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How much of each message file a token search reads.
const HEAD_BYTES: u64 = 64 * 1024;

fn read_head(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut head)?;
    Ok(head)
}

/// Message files in a Maildir's new/ and cur/, in delivery order: Maildir
/// names start with `<seconds>.M<microseconds>P<pid>`.
fn message_files(maildir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        match std::fs::read_dir(maildir.join(sub)) {
            Ok(entries) => files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!(
                "cannot list {}: {e} (the Maildirs belong to vmail: run the tests as root)",
                maildir.join(sub).display()
            ),
        }
    }
    files.sort_by_key(|p| delivery_key(p));
    files
}

fn delivery_key(path: &Path) -> (u64, u64, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut parts = name.splitn(3, '.');
    let secs = parts.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|s| s.strip_prefix('M'))
        .and_then(|s| s.split('P').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (secs, micros, name)
}

/// Reads every message in the INBOX. A message can move from new/ to cur/
/// between listing and reading (an IMAP client opened the mailbox): then
/// list again.
fn read_messages(maildir: &Path, needle: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for path in message_files(maildir) {
        // Tokens live in the header (the Message-ID), so only the head of
        // each file is searched: mailboxes fill up with big messages over
        // many runs. A file that vanished meanwhile (Dovecot moved it to
        // cur/, or a test removed it) is skipped; the next poll sees it.
        let Ok(head) = read_head(&path, HEAD_BYTES) else { continue };
        if needle.is_some_and(|n| !contains(&head, n)) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&path) {
            out.push(bytes);
        }
    }
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
