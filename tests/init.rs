//! `sealpost init` as a new user runs it: against the test stack (the
//! generic preset, pointed at the stack's loopback ports) it writes a
//! configuration that `sealpost check` accepts and `sealpost serve` runs,
//! and mail then goes through both proxies; it picks the preset from the
//! address's domain, imports a key or generates one, never overwrites a
//! configuration without `--force`, and says clearly what is wrong.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::proxy::{python, s, token, Proxy, LISTEN_ANY_PORT_ENV};
use common::stack::{password, stack};
use common::{User, PASSPHRASE};

/// A new user's home: their own XDG directories, and where init writes.
struct Home {
    dir: tempfile::TempDir,
}

/// What one run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sealpost.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `sealpost ARGS` with only this home in the environment (and the
    /// test passphrase for new keys), `stdin` as its input.
    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("SEALPOST_PASSPHRASE", PASSPHRASE)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `sealpost --config FILE init --data-dir DIR ARGS`.
    fn init(&self, args: &[&str], stdin: &str) -> Run {
        let (config, data) = (self.config(), self.data_dir());
        let mut all = vec!["--config", s(&config), "init", "--data-dir", s(&data)];
        all.extend_from_slice(args);
        self.run(&all, stdin)
    }

    /// `sealpost --config FILE ARGS`, which must succeed; its stdout.
    fn cli(&self, args: &[&str]) -> String {
        let config = self.config();
        let mut all = vec!["--config", s(&config)];
        all.extend_from_slice(args);
        let run = self.run(&all, "");
        assert!(run.ok, "sealpost {args:?} failed:\n{}{}", run.stdout, run.stderr);
        run.stdout
    }
}

/// The flags that point the generic preset at the test stack (STARTTLS
/// on both, the stack's CA for the first contact).
fn stack_servers() -> Vec<String> {
    let stack = stack();
    vec![
        "--provider".into(),
        "generic".into(),
        "--imap".into(),
        format!("imap://{}:{}", stack.tls_name, stack.imap_port),
        "--smtp".into(),
        format!("smtp://{}:{}", stack.tls_name, stack.submission_port),
        "--ca-file".into(),
        stack.ca_file.display().to_string(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The value after `label` on the line that has it.
fn after<'a>(text: &'a str, label: &str) -> &'a str {
    let start = text.find(label).unwrap_or_else(|| panic!("no {label:?} in:\n{text}")) + label.len();
    text[start..].lines().next().unwrap().trim()
}

const SEND: &str = r#"
smtp_port, user, pw, tok, secret = sys.argv[1:6]
s = connect(int(smtp_port))
s.login(user, pw)
msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s\r\n" % (user, user, secret, tok, secret)).encode()
s.sendmail(user, [user], msg)
s.quit()
print("sent")
"#;

const READ_BACK: &str = r#"
imap_port, user, pw, tok = sys.argv[1:5]
m = imap(imap_port, user, pw)
m.select("INBOX")
typ, d = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)
uids = d[0].split()
assert uids, "no message with " + tok
typ, d = m.uid("FETCH", uids[-1], "(BODY.PEEK[])")
sys.stdout.write(d[0][1].decode("utf-8", "replace"))
m.logout()
"#;

#[test]
fn init_against_the_stack_gives_a_config_check_accepts_and_mail_goes_through_both_proxies() {
    let stack = stack();
    let home = Home::new();
    let user = "erin@example.org";
    let mut args = vec!["--non-interactive", "--address", user];
    let servers = stack_servers();
    args.extend(strs(&servers));
    let run = home.init(&args, "");
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(out.contains("preset generic"), "{out}");
    assert!(after(out, "Key: ").ends_with("(generated)"), "{out}");
    // First contact recorded both servers' keys, and says which.
    for port in [stack.imap_port, stack.submission_port] {
        let server = format!("localhost:{port}");
        assert!(after(out, &format!("  {server} (")).ends_with("recorded"), "{out}");
        assert!(home.cli(&["pin", "list"]).contains(&server));
    }
    assert!(after(out, "    pin ").starts_with("sha256/"), "{out}");
    // What to enter in each client, and the certificate to compare.
    for client in ["Thunderbird:", "Outlook (classic):", "Apple Mail:"] {
        assert!(out.contains(client), "{out}");
    }
    assert!(out.contains(&format!("user name {user}")), "{out}");
    let local = home.cli(&["local-cert"]);
    let fingerprint = local.lines().next().unwrap();
    assert!(
        out.contains(&format!("Accept it only if its SHA-256 fingerprint is:\n  {fingerprint}")),
        "{out}"
    );
    assert!(!out.contains(PASSPHRASE) && !run.stderr.contains(PASSPHRASE));

    assert!(home.cli(&["check"]).starts_with("configuration OK"));

    // The proxies run on the written file (listeners moved to port 0).
    let config = home.config();
    let proxy = Proxy::serve(home.dir, config, &LISTEN_ANY_PORT_ENV);
    let tok = token("init");
    let secret = token("init-secret");
    let pw = password(user);
    let sent = python(SEND, &[&proxy.smtp.port().to_string(), user, &pw, &tok, &secret]);
    assert_eq!(sent.trim(), "sent");
    // The provider stores it encrypted: the Message-ID readable, the
    // subject and body not.
    let stored = stack.wait_for_matching(user, tok.as_bytes(), 1, Duration::from_secs(20));
    let stored = String::from_utf8_lossy(&stored[0]);
    assert!(
        stored.contains("-----BEGIN PGP MESSAGE-----") && !stored.contains(&secret),
        "{stored}"
    );
    let read = python(READ_BACK, &[&proxy.imap.port().to_string(), user, &pw, &tok]);
    assert!(read.contains(&secret), "{read}");
    assert!(read.contains("Sealpost-Status: "), "{read}");
}

#[test]
fn an_imported_key_is_used_and_a_config_is_replaced_only_with_force() {
    let home = Home::new();
    let carol = User::new("carol@example.com");
    let key_file = home.dir.path().join("carol.asc");
    std::fs::write(&key_file, carol.secret_key()).unwrap();
    let public_only = home.dir.path().join("carol-public.asc");
    std::fs::write(&public_only, carol.public_key()).unwrap();
    let servers = stack_servers();
    let with = |extra: &[&str]| {
        let mut args = vec!["--non-interactive", "--address", "carol@example.com"];
        args.extend(strs(&servers));
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };

    let run = home.init(&strs(&with(&["--import-key", s(&public_only)])), "");
    assert!(!run.ok);
    assert!(run.stderr.contains("holds no secret key for <carol@example.com>"), "{}", run.stderr);
    assert!(!home.config().exists(), "nothing written after a failed step");

    let run = home.init(&strs(&with(&["--import-key", s(&key_file)])), "");
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let fingerprint = carol.key.cert.fingerprint().to_hex();
    assert_eq!(after(&run.stdout, "Key: "), format!("{fingerprint} (imported)"));
    let written = std::fs::read(home.config()).unwrap();
    assert!(home.cli(&["check"]).starts_with("configuration OK"));

    let run = home.init(&strs(&with(&[])), "");
    assert!(!run.ok);
    assert!(
        run.stderr.contains("exists already; nothing was changed. Pass --force"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(home.config()).unwrap(), written);

    std::fs::write(home.config(), "# edited by hand\n").unwrap();
    let run = home.init(&strs(&with(&["--force"])), "");
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(after(&run.stdout, "Key: ").starts_with(&format!("{fingerprint} (already in ")));
    assert!(after(&run.stdout, "  localhost:").ends_with("already recorded, and it matches"));
    assert_eq!(std::fs::read(home.config()).unwrap(), written);
}

#[test]
fn an_unknown_provider_or_domain_is_a_clear_error() {
    let home = Home::new();
    let run = home.init(&["--non-interactive", "--address", "me@example.org", "--provider", "aol"], "");
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("there is no provider preset 'aol'; the presets are: gmail, outlook"),
        "{}",
        run.stderr
    );
    let run = home.init(&["--non-interactive", "--address", "me@example.org"], "");
    assert!(!run.ok);
    assert!(
        run.stderr.contains("no provider preset covers 'example.org'") && run.stderr.contains("--provider generic with --imap URL"),
        "{}",
        run.stderr
    );
    let run = home.init(&["--non-interactive", "--provider", "generic"], "");
    assert!(run.stderr.contains("--address is needed with --non-interactive"), "{}", run.stderr);
    let run = home.init(&["--non-interactive", "--address", "me@example.org", "--provider", "generic"], "");
    assert!(run.stderr.contains("give them as --imap"), "{}", run.stderr);
    let run = home.init(
        &[
            "--non-interactive",
            "--address",
            "me@example.org",
            "--provider",
            "generic",
            "--imap",
            "https://mail.example.org",
            "--smtp",
            "smtp://mail.example.org",
            "--ca-file",
            "/nonexistent/ca.pem",
        ],
        "",
    );
    for problem in [
        "the configuration would have 2 problem(s); nothing was written",
        "- account[0].imap: unsupported scheme 'https'",
        "- account[0].ca_file: /nonexistent/ca.pem does not exist",
    ] {
        assert!(run.stderr.contains(problem), "{problem}: {}", run.stderr);
    }
    assert!(!home.config().exists() && !home.data_dir().exists(), "nothing done");
}

#[test]
fn the_preset_is_picked_from_the_address_domain() {
    let home = Home::new();
    let run = home.init(&["--non-interactive", "--address", "Someone@GMail.com"], "");
    let out = &run.stdout;
    assert!(
        out.starts_with("Provider: Gmail (preset gmail, from the address's domain)"),
        "{out}"
    );
    assert!(
        out.contains("Gmail needs an app password") && out.contains("https://support.google.com/mail/answer/185833"),
        "{out}"
    );
    // Only loopback is reachable here: the first contact with Gmail fails,
    // says so, and no configuration is written. (With a network it would
    // record Gmail's keys and write the file.)
    if !run.ok {
        assert!(
            run.stderr.contains("first contact with imaps://imap.gmail.com:993 failed"),
            "{}",
            run.stderr
        );
        assert!(!home.config().exists());
    }
}

#[test]
fn interactive_init_asks_for_what_the_flags_do_not_say() {
    let stack = stack();
    let home = Home::new();
    // The address (no preset for its domain), the preset, both servers,
    // and no key to import; the CA comes as a flag.
    let answers = format!(
        "dave@example.com\ngeneric\nimaps://localhost:{}\nsmtps://localhost:{}\n\n",
        stack.imaps_port, stack.submissions_port
    );
    let run = home.init(&["--ca-file", s(&stack.ca_file)], &answers);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    for question in [
        "Your email address: ",
        "Provider preset: ",
        "IMAP server",
        "SMTP submission server",
        "Secret key file",
    ] {
        assert!(run.stderr.contains(question), "{question}: {}", run.stderr);
    }
    assert!(after(&run.stdout, "Key: ").ends_with("(generated)"));
    let config = std::fs::read_to_string(home.config()).unwrap();
    assert!(
        config.contains(&format!("imap = \"imaps://localhost:{}\"", stack.imaps_port)),
        "{config}"
    );
    assert!(home.cli(&["check"]).starts_with("configuration OK"));

    // Standard input ending early is an error naming the flag to pass.
    let other = Home::new();
    let run = other.init(&[], "");
    assert!(!run.ok);
    assert!(run.stderr.contains("(standard input ended); pass --address"), "{}", run.stderr);
}

#[test]
fn a_server_key_other_than_the_recorded_one_stops_init() {
    let stack = stack();
    let home = Home::new();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    let recorded = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    std::fs::write(
        home.data_dir().join("pins.toml"),
        format!(
            "[\"localhost:{}\"]\npin = \"{recorded}\"\nrecorded = \"earlier\"\ncertificate_sha256 = \"AA\"\n",
            stack.imap_port
        ),
    )
    .unwrap();
    let mut args = vec!["--non-interactive", "--address", "erin@example.org"];
    let servers = stack_servers();
    args.extend(strs(&servers));
    let run = home.init(&args, "");
    assert!(!run.ok);
    for needle in [
        format!("first contact with imap://localhost:{} failed", stack.imap_port),
        "presented an unexpected key (seen sha256/".to_string(),
        format!(
            "pinned {recorded}); if the provider rotated keys, run 'sealpost pin accept localhost:{}'",
            stack.imap_port
        ),
        "No configuration was written".to_string(),
    ] {
        assert!(run.stderr.contains(&needle), "{needle}: {}", run.stderr);
    }
    assert!(!home.config().exists());
}
