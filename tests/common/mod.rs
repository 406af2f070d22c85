//! Shared helpers for the integration tests: Sealpost users with their own
//! key stores, real GnuPG homes, and MIME walking for comparisons.
//!
//! Every test that needs GnuPG uses [`Gpg`], which owns a private
//! `GNUPGHOME` and stops its agent when dropped.
#![allow(dead_code)] // each test binary uses a different subset

pub mod decoded;
pub mod fault;
pub mod manifests;
pub mod messages;
pub mod proxy;
pub mod raw;
pub mod rawimap;
pub mod searchcorpus;
pub mod stack;
pub mod wkd;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sealpost::message::{decrypt_message, encrypt_message, DecryptOutcome, EncryptedCopy, Envelope};
use sealpost::mime::Entity;
use sealpost::pgp::{Keystore, PassphraseSource, UnlockedKey};

/// The passphrase every test key is protected with.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A Sealpost user: a key store of their own with one generated,
/// passphrase-protected key, unlocked.
pub struct User {
    pub email: String,
    pub dir: tempfile::TempDir,
    pub store: Keystore,
    pub key: UnlockedKey,
}

impl User {
    /// A new user with a fresh key for `email`.
    pub fn new(email: &str) -> User {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Keystore::open(dir.path()).unwrap();
        store.generate(email, Some(PASSPHRASE.into()), false).unwrap();
        let key = store
            .unlock(store.own_key(email).unwrap(), &PassphraseSource::Env(PASSPHRASE.into()))
            .unwrap();
        User {
            email: email.to_string(),
            dir,
            store,
            key,
        }
    }

    /// The armored public key.
    pub fn public_key(&self) -> Vec<u8> {
        armored(&self.key.cert, false)
    }

    /// The armored secret key, still protected by [`PASSPHRASE`].
    pub fn secret_key(&self) -> Vec<u8> {
        armored(&self.store.own_key(&self.email).unwrap().cert, true)
    }

    /// Imports other users' public keys into this user's store.
    pub fn knows(&mut self, others: &[&User]) {
        for other in others {
            self.store.import(&other.public_key(), &other.email).unwrap();
        }
    }

    /// Encrypts `message` from this user to `recipients`.
    pub fn encrypt(&self, message: &[u8], recipients: &[&str]) -> Vec<EncryptedCopy> {
        let envelope = Envelope {
            sender: self.email.clone(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        };
        encrypt_message(message, &envelope, &self.key, &self.store).unwrap()
    }

    /// Decrypts `message` as this user.
    pub fn decrypt(&self, message: &[u8]) -> DecryptOutcome {
        decrypt_message(message, std::slice::from_ref(&self.key), &self.store)
    }
}

fn armored(cert: &sequoia_openpgp::Cert, secret: bool) -> Vec<u8> {
    use sequoia_openpgp::serialize::Serialize;
    let mut out = Vec::new();
    if secret {
        cert.as_tsk().armored().serialize(&mut out).unwrap();
    } else {
        cert.armored().serialize(&mut out).unwrap();
    }
    out
}

/// A private GnuPG home. Dropping it stops its agent.
pub struct Gpg {
    home: tempfile::TempDir,
}

/// What one gpg run produced.
pub struct GpgRun {
    pub ok: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// The `[GNUPG:]` status lines, without the prefix.
    pub status: Vec<String>,
}

impl GpgRun {
    /// True when a status line starts with `keyword`.
    pub fn has(&self, keyword: &str) -> bool {
        self.status.iter().any(|l| l.split_whitespace().next() == Some(keyword))
    }

    /// The status lines starting with `keyword`.
    pub fn lines(&self, keyword: &str) -> Vec<&String> {
        self.status
            .iter()
            .filter(|l| l.split_whitespace().next() == Some(keyword))
            .collect()
    }
}

impl Gpg {
    /// A new empty home.
    pub fn new() -> Gpg {
        // Short paths: the agent's socket path must stay under 108 bytes.
        let home = tempfile::Builder::new().prefix("gpg").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    /// Runs gpg in batch mode with the test passphrase for any secret key.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> GpgRun {
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", PASSPHRASE])
            // Status lines go to stderr, where they are told apart by prefix.
            .args(["--trust-model", "always", "--status-fd", "2"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg is installed (deploy/setup-debian.sh installs it)");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        GpgRun {
            ok: status.success(),
            stdout,
            status: stderr
                .lines()
                .filter_map(|l| l.strip_prefix("[GNUPG:] ").map(str::to_string))
                .collect(),
            stderr,
        }
    }

    /// Imports armored or binary key material; panics if gpg refuses it.
    pub fn import(&self, keys: &[u8]) {
        let run = self.run(&["--import"], keys);
        assert!(run.ok, "gpg --import failed: {}", run.stderr);
    }

    /// Generates an Ed25519/Cv25519 key the way a GnuPG user would and
    /// returns its fingerprint.
    pub fn generate(&self, email: &str) -> String {
        let run = self.run(&["--quick-gen-key", email, "future-default", "default", "never"], b"");
        assert!(run.ok, "gpg key generation failed: {}", run.stderr);
        run.lines("KEY_CREATED")[0].split_whitespace().nth(2).unwrap().to_string()
    }

    /// The armored public key for `email`.
    pub fn export(&self, email: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", email], b"").stdout
    }

    /// The armored secret key for `email`, protected by [`PASSPHRASE`].
    pub fn export_secret(&self, email: &str) -> Vec<u8> {
        self.run(&["--armor", "--export-secret-keys", email], b"").stdout
    }

    /// Decrypts (and verifies) OpenPGP data.
    pub fn decrypt(&self, data: &[u8]) -> GpgRun {
        self.run(&["--decrypt"], data)
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A GnuPG home holding `user`'s secret key and the public keys of
/// `others`.
pub fn gpg_for(user: &User, others: &[&User]) -> Gpg {
    let gpg = Gpg::new();
    gpg.import(&user.secret_key());
    for other in others {
        gpg.import(&other.public_key());
    }
    gpg
}

/// The armored OpenPGP block of a PGP/MIME message.
pub fn armored_part(message: &[u8]) -> Vec<u8> {
    let start = find(message, b"-----BEGIN PGP MESSAGE-----").expect("armored block");
    let end = find(message, b"-----END PGP MESSAGE-----").expect("armor end") + 25;
    message[start..end].to_vec()
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// The leaf bodies of a MIME tree, depth first, as byte slices of the
/// input: what must survive a round trip unchanged.
pub fn leaf_bodies(bytes: &[u8]) -> Vec<Vec<u8>> {
    let entity = Entity::parse(bytes);
    match entity.parts() {
        Some(parts) => parts.iter().flat_map(|p| leaf_bodies(p)).collect(),
        None => vec![entity.body.to_vec()],
    }
}

/// Splits Sealpost's status field out of a message it returned: the value,
/// and the message without that line (which must then be the original).
pub fn without_status(message: &[u8]) -> (String, Vec<u8>) {
    let start = if message.starts_with(b"Sealpost-Status: ") {
        0
    } else {
        find(message, b"\nSealpost-Status: ").expect("a Sealpost-Status field") + 1
    };
    let end = start + message[start..].iter().position(|&b| b == b'\n').expect("a whole line") + 1;
    let value = String::from_utf8_lossy(&message[start + 17..end]).trim_end().to_string();
    (value, [&message[..start], &message[end..]].concat())
}

/// The value of the first `name` field, unfolded.
pub fn header(bytes: &[u8], name: &str) -> Option<String> {
    Entity::parse(bytes).field(name).map(|f| f.value())
}

/// Wraps armored data as an RFC 3156 PGP/MIME message with these outer
/// header lines (CRLF added).
pub fn pgp_mime(outer_headers: &[&str], armored: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in outer_headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        b"MIME-Version: 1.0\r\nContent-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n boundary=\"------------OUTER\"\r\n\r\n\
This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--------------OUTER\r\n\
Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
--------------OUTER\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
Content-Description: OpenPGP encrypted message\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n",
    );
    out.extend_from_slice(armored);
    out.extend_from_slice(b"\r\n\r\n--------------OUTER--\r\n");
    out
}

/// The test corpus: real-world message shapes (see tests/data/corpus).
pub const CORPUS: [&str; 10] = [
    "alternative.eml",
    "attachments.eml",
    "forwarded.eml",
    "iso2022jp.eml",
    "latin1-8bit.eml",
    "lf-only.eml",
    "long-lines.eml",
    "nested.eml",
    "utf8-headers.eml",
    "windows-1252-qp.eml",
];

/// Proptest settings: `cases` cases (or `PROPTEST_CASES`, for a deeper
/// run), no regression files written next to the tests (a failing input
/// is printed instead).
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Reads a file of the test corpus.
pub fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus").join(name)).unwrap()
}

/// Runs `work` on its own thread and returns its result. Fails the test if
/// it has not returned within `limit` (the stuck thread is left behind),
/// and re-raises its panic if it panicked: hangs in parsers become test
/// failures instead of stalled runs.
pub fn within<T: Send + 'static>(limit: std::time::Duration, what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    use std::sync::mpsc;
    let (done, result) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = done.send(work());
        })
        .expect("spawn worker thread");
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?}: it hangs on this input")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}
