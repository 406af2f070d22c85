//! The `sealpost` command as a user runs it: exit codes, messages, files.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASSPHRASE: &str = "cli test passphrase";

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: via the CLI\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <cli-1@example.org>\r\n\r\nHello Bob\r\n";

/// One user's environment: a private HOME, XDG directories and data_dir.
struct User {
    home: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.home.path().join(name)
    }

    /// Runs `sealpost` with a clean environment: only this user's
    /// directories and, unless overridden, the test passphrase.
    fn run_with(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sealpost"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SEALPOST_PASSPHRASE", PASSPHRASE)
            .current_dir(self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.run_with(args, stdin, &[])
    }

    /// Runs and expects success.
    fn ok(&self, args: &[&str], stdin: &[u8]) -> Run {
        let run = self.run(args, stdin);
        assert_eq!(run.code, 0, "sealpost {args:?} failed: {}", run.stderr);
        run
    }

    /// Generates a key and exports the public half to a file.
    fn with_key(email: &str) -> (User, std::path::PathBuf) {
        let user = User::new();
        user.ok(&["keys", "generate", email], b"");
        let export = user.ok(&["keys", "export", email], b"");
        let file = user.path(&format!("{email}.asc"));
        std::fs::write(&file, &export.stdout).unwrap();
        (user, file)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn key_lifecycle_generate_list_export_import_remove() {
    let alice = User::new();
    let fpr = alice.ok(&["keys", "generate", "alice@example.org"], b"").stdout_text();
    let fpr = fpr.trim();
    assert_eq!(fpr.len(), 40, "prints the fingerprint: {fpr}");

    let list = alice.ok(&["keys", "list"], b"").stdout_text();
    let mut lines = list.lines();
    assert!(lines.next().unwrap().starts_with("EMAIL"));
    let row = lines.next().unwrap();
    for cell in ["alice@example.org", fpr, "ed25519/cv25519", "valid", "generated", "own"] {
        assert!(row.contains(cell), "{cell} missing from {row}");
    }

    let public = alice.ok(&["keys", "export", "alice@example.org"], b"").stdout_text();
    assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let secret = alice.ok(&["keys", "export", "--secret", "alice@example.org"], b"").stdout_text();
    assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));

    let bob = User::new();
    let file = bob.path("alice.asc");
    std::fs::write(&file, &public).unwrap();
    let imported = bob.ok(&["keys", "import", path_str(&file)], b"").stdout_text();
    assert_eq!(imported.trim(), format!("imported {fpr}"));
    let list = bob.ok(&["keys", "list"], b"").stdout_text();
    assert!(list.contains("imported") && list.contains("peer"), "{list}");
    let denied = bob.run(&["keys", "export", "--secret", "alice@example.org"], b"");
    assert_eq!(denied.code, 1);
    assert!(denied.stderr.contains("no secret key for <alice@example.org>"), "{}", denied.stderr);

    let removed = bob.ok(&["keys", "remove", fpr], b"").stdout_text();
    assert!(removed.starts_with(&format!("removed {fpr}")));
    assert_eq!(bob.ok(&["keys", "list"], b"").stdout_text().lines().count(), 1);
    let again = bob.run(&["keys", "remove", fpr], b"");
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("see 'sealpost keys list'"), "{}", again.stderr);
}

#[test]
fn encrypt_and_decrypt_between_two_users() {
    let (alice, alice_pub) = User::with_key("alice@example.org");
    let (bob, bob_pub) = User::with_key("bob@example.net");
    alice.ok(&["keys", "import", path_str(&bob_pub)], b"");
    bob.ok(&["keys", "import", path_str(&alice_pub)], b"");

    let encrypted = alice.ok(&["encrypt"], MESSAGE).stdout;
    assert!(!String::from_utf8_lossy(&encrypted).contains("Hello Bob"));
    let shown = bob.ok(&["decrypt"], &encrypted).stdout_text();
    assert!(shown.contains("\r\nSealpost-Status: decrypted; signature=good; signer="), "{shown}");
    assert!(shown.contains("Subject: via the CLI\r\n"));
    assert!(shown.contains("Hello Bob\r\n"));

    let signed = alice.ok(&["encrypt", "--sign-only"], MESSAGE).stdout;
    let shown = bob.ok(&["decrypt"], &signed).stdout_text();
    assert!(shown.contains("\r\nSealpost-Status: signed; signature=good"), "{shown}");
}

#[test]
fn clear_errors_for_missing_keys_and_passphrases() {
    let (alice, _) = User::with_key("alice@example.org");
    let run = alice.run(&["encrypt"], MESSAGE);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("no OpenPGP key found for <bob@example.net>; import one with 'sealpost keys import'"),
        "{}",
        run.stderr
    );

    let run = alice.run_with(&["encrypt", "--sign-only"], MESSAGE, &[("SEALPOST_PASSPHRASE", "wrong")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);

    let stranger = User::new();
    let run = stranger.run(&["encrypt", "--sign-only"], MESSAGE);
    assert!(
        run.stderr
            .contains("no secret key for <alice@example.org>; create one with 'sealpost keys generate alice@example.org'"),
        "{}",
        run.stderr
    );

    // Without SEALPOST_PASSPHRASE, a file or a terminal there is no way to
    // protect a new key: refuse instead of storing it unprotected.
    let run = stranger.run_with(&["keys", "generate", "x@example.org"], b"", &[("SEALPOST_PASSPHRASE", "")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("the passphrase is empty"), "{}", run.stderr);
    let nothing = User::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealpost"));
    let out = command
        .args(["keys", "generate", "y@example.org"])
        .env_clear()
        .env("HOME", nothing.home.path())
        .env("XDG_DATA_HOME", nothing.path("data"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a passphrase"));
}

#[test]
fn bcc_copies_need_an_output_directory() {
    let (alice, _) = User::with_key("alice@example.org");
    let (_bob, bob_pub) = User::with_key("bob@example.net");
    let (_dave, dave_pub) = User::with_key("dave@example.com");
    alice.ok(&["keys", "import", path_str(&bob_pub), path_str(&dave_pub)], b"");
    let message = [&MESSAGE[..MESSAGE.len() - 13], b"Bcc: dave@example.com\r\n\r\nHello Bob\r\n"].concat();
    let run = alice.run(&["encrypt"], &message);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("pass --output-dir DIR"), "{}", run.stderr);

    let out_dir = alice.path("out");
    let run = alice.ok(&["encrypt", "--output-dir", path_str(&out_dir)], &message);
    let listed = run.stdout_text();
    assert!(listed.contains("visible.eml\tbob@example.net"), "{listed}");
    assert!(listed.contains("bcc-dave@example.com.eml\tdave@example.com"), "{listed}");
    for file in ["visible.eml", "bcc-dave@example.com.eml"] {
        let bytes = std::fs::read(out_dir.join(file)).unwrap();
        // A Bcc field, not the three letters (which base64 armor may
        // contain by chance).
        let header = sealpost::mime::Entity::parse(&bytes);
        assert!(header.field("Bcc").is_none(), "{file} has a Bcc field");
        assert!(!String::from_utf8_lossy(&bytes).contains("Bcc:"), "{file} mentions Bcc:");
    }
}

#[test]
fn undecryptable_mail_is_returned_untouched_with_exit_code_1() {
    let (alice, _) = User::with_key("alice@example.org");
    let (bob, bob_pub) = User::with_key("bob@example.net");
    alice.ok(&["keys", "import", path_str(&bob_pub)], b"");
    let encrypted = alice.ok(&["encrypt"], MESSAGE).stdout;
    let stranger = User::with_key("carol@example.com").0;
    let run = stranger.run(&["decrypt"], &encrypted);
    assert_eq!(run.code, 1);
    let text = run.stdout_text();
    // The original, with the status as the last header field.
    let status_line = text.lines().find(|l| l.starts_with("Sealpost-Status: ")).unwrap().to_string();
    assert!(
        status_line.starts_with("Sealpost-Status: failed; reason=\"no secret key for this message"),
        "{status_line}"
    );
    assert_eq!(text.replacen(&format!("{status_line}\r\n"), "", 1).as_bytes(), &encrypted[..]);
    assert!(run.stderr.contains("no secret key"), "{}", run.stderr);
    let _ = bob;
}

#[test]
fn check_reports_every_problem_with_key_and_hint() {
    let user = User::new();
    let run = user.ok(&["check"], b"");
    assert!(run.stdout_text().starts_with("configuration OK"));

    let config = user.path("sealpost.toml");
    std::fs::write(&config, "data_dir = \"relative/dir\"\ncolour = \"red\"\n[log]\nformat = \"xml\"\n").unwrap();
    let run = user.run(&["check", "--config", path_str(&config)], b"");
    assert_eq!(run.code, 2);
    for expected in ["colour: unknown key", "log.format:", "hint:"] {
        assert!(run.stderr.contains(expected), "{expected} missing from {}", run.stderr);
    }

    // ./sealpost.toml is found without --config; the environment wins.
    std::fs::write(&config, format!("data_dir = \"{}\"\n", user.path("d").display())).unwrap();
    let run = user.ok(&["check"], b"");
    assert!(run.stdout_text().contains("file: sealpost.toml"), "{}", run.stdout_text());
    let run = user.run_with(&["check"], b"", &[("SEALPOST_LOG__LEVEL", "not a [filter")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("log.level"), "{}", run.stderr);
}

#[test]
fn json_logs_never_carry_secrets_or_content() {
    let (alice, alice_pub) = User::with_key("alice@example.org");
    let (bob, bob_pub) = User::with_key("bob@example.net");
    alice.ok(&["keys", "import", path_str(&bob_pub)], b"");
    let logging = [("SEALPOST_LOG__FORMAT", "json"), ("RUST_LOG", "trace")];
    let encrypted = alice.run_with(&["encrypt"], MESSAGE, &logging);
    assert_eq!(encrypted.code, 0, "{}", encrypted.stderr);
    let imported = bob.run_with(&["keys", "import", path_str(&alice_pub)], b"", &logging);
    let decrypted = bob.run_with(&["decrypt"], &encrypted.stdout, &logging);
    assert_eq!(decrypted.code, 0, "{}", decrypted.stderr);
    let logs = [encrypted.stderr, imported.stderr, decrypted.stderr].concat();
    assert!(logs.contains("imported key") && logs.contains("opened message"), "{logs}");
    for line in logs.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON line: {line}");
    }
    for secret in [PASSPHRASE, "Hello Bob", "via the CLI", "BEGIN PGP"] {
        assert!(!logs.contains(secret), "logs contain {secret:?}");
    }
}

#[test]
fn serve_refuses_to_start_with_a_clear_reason() {
    let user = User::new();
    let run = user.run(&["serve"], b"");
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no [[account]] is configured"), "{}", run.stderr);

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = user.path("sealpost.toml");
    let write_config = |listen: &str| {
        std::fs::write(
            &config,
            format!("[listen]\nsmtp = \"{listen}\"\n[[account]]\nlogin = \"alice@example.org\"\nsmtp = \"smtp://127.0.0.1:1\"\n"),
        )
        .unwrap();
    };
    write_config("127.0.0.1:0");
    let run = user.run(&["serve"], b"");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "account alice@example.org: no secret key for <alice@example.org>; create one with 'sealpost keys generate alice@example.org'"
        ),
        "{}",
        run.stderr
    );
    user.ok(&["keys", "generate", "alice@example.org"], b"");
    let run = user.run_with(&["serve"], b"", &[("SEALPOST_PASSPHRASE", "wrong")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
    let taken = busy.local_addr().unwrap().to_string();
    write_config(&taken);
    let run = user.run(&["serve"], b"");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("cannot listen on {taken} (listen.smtp)")),
        "{}",
        run.stderr
    );
}

#[test]
fn local_certificate_fingerprint_is_stable() {
    let user = User::new();
    let first = user.ok(&["local-cert"], b"").stdout_text();
    let second = user.ok(&["local-cert"], b"").stdout_text();
    assert_eq!(first, second);
    let fingerprint = first.lines().next().unwrap();
    assert_eq!(fingerprint.split(':').count(), 32, "{fingerprint}");
}
