//! `sealpost doctor` against the test stack: each problem a user can have
//! (a server presenting another key, a server that cannot be reached, a
//! wrong passphrase, a listener address taken) is one clear line and makes
//! the exit code non-zero; a working set-up passes, and the doctor records
//! no server key.

mod common;

use std::path::Path;
use std::process::Command;

use common::proxy::{Proxy, LISTEN_ANY_PORT_ENV};
use common::stack::stack;
use common::{User, PASSPHRASE};
use rustls::pki_types::pem::PemObject;

const ALICE: &str = "alice@example.org";

/// Runs `sealpost doctor` on `config` with `env`: the exit code and the
/// lines printed on stdout.
fn doctor(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let output = Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .arg("--config")
        .arg(config)
        .arg("doctor")
        .env("SEALPOST_PASSPHRASE", PASSPHRASE)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (output.status.code(), stdout.lines().map(str::to_string).collect())
}

/// The one line about `subject`, which must start with `verdict`.
fn line<'a>(lines: &'a [String], verdict: &str, subject: &str) -> &'a str {
    let about: Vec<&String> = lines.iter().filter(|l| l[5..].starts_with(subject)).collect();
    assert_eq!(about.len(), 1, "one line about {subject:?} in {lines:#?}");
    assert!(about[0].starts_with(verdict), "{verdict} expected: {}", about[0]);
    about[0]
}

/// A configuration for Alice's data_dir with one account on `imap` and
/// `smtp`, and `account` lines added.
fn config(dir: &tempfile::TempDir, alice: &User, imap: &str, smtp: &str, account: &str) -> std::path::PathBuf {
    let path = dir.path().join("sealpost.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[keys]\nwkd = false\n\n[[account]]\nlogin = \"{ALICE}\"\nimap = \"{imap}\"\nsmtp = \"{smtp}\"\nca_file = \"{}\"\n{account}\n",
            alice.dir.path().display(),
            stack().ca_file.display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_pin_mismatch_an_unreachable_server_and_a_wrong_passphrase_are_one_line_each() {
    let stack = stack();
    let alice = User::new(ALICE);
    let dir = tempfile::tempdir().unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_file(&stack.server_cert).unwrap();
    let server_pin = sealpost::tls::Pin::of_certificate(&der).unwrap();
    // The impostor port presents a CA-valid certificate for the same name,
    // with another key; port 1 has nothing listening.
    let imap = format!("imaps://{}:{}", stack.tls_name, stack.impostor_imaps_port);
    let smtp = format!("smtp://{}:1", stack.tls_name);
    let path = config(
        &dir,
        &alice,
        &imap,
        &smtp,
        &format!("trust = \"ca+pin\"\npins = [\"{server_pin}\"]"),
    );
    let mut env = LISTEN_ANY_PORT_ENV.to_vec();
    env.push(("SEALPOST_PASSPHRASE", "not the passphrase"));

    let (code, lines) = doctor(&path, &env);
    assert_eq!(code, Some(1), "{lines:#?}");
    let key = line(&lines, "FAIL", &format!("account {ALICE}: key:"));
    assert!(key.contains("wrong passphrase") && key.contains("SEALPOST_PASSPHRASE"), "{key}");
    let mismatch = line(&lines, "FAIL", &format!("account {ALICE}: imap {imap}"));
    assert!(
        mismatch.contains("pin mismatch") && mismatch.contains(&server_pin.to_string()) && mismatch.contains("sealpost pin accept"),
        "{mismatch}"
    );
    let unreachable = line(&lines, "FAIL", &format!("account {ALICE}: smtp {smtp}"));
    assert!(unreachable.contains("unreachable") && unreachable.contains("port"), "{unreachable}");
    line(&lines, "skip", "clock:");
    assert_eq!(lines.last().unwrap(), "3 check(s) failed");
}

#[test]
fn a_working_set_up_passes_and_the_doctor_records_no_server_key() {
    let stack = stack();
    let alice = User::new(ALICE);
    let dir = tempfile::tempdir().unwrap();
    let imap = format!("imap://{}:{}", stack.tls_name, stack.imap_port);
    let smtp = format!("smtp://{}:{}", stack.tls_name, stack.submission_port);
    let path = config(&dir, &alice, &imap, &smtp, "");

    let (code, lines) = doctor(&path, &LISTEN_ANY_PORT_ENV);
    assert_eq!(code, Some(0), "{lines:#?}");
    line(&lines, "ok  ", "config:");
    let key = line(&lines, "ok  ", &format!("account {ALICE}: key:"));
    assert!(key.contains(" unlocks and "), "{key}");
    for (protocol, url) in [("imap", &imap), ("smtp", &smtp)] {
        let server = line(&lines, "ok  ", &format!("account {ALICE}: {protocol} {url}"));
        assert!(
            server.contains("reachable, STARTTLS offered and done")
                && server.contains("no key recorded yet")
                && server.contains("login: ")
                && server.contains("PLAIN"),
            "{server}"
        );
    }
    line(&lines, "ok  ", "listen.imap:");
    assert!(!alice.dir.path().join("pins.toml").exists(), "the doctor recorded a server key");
}

#[test]
fn a_listener_held_by_the_running_sealpost_passes_one_held_by_another_program_fails() {
    let alice = User::new(ALICE);
    let proxy = Proxy::start(&alice, None, "");
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (ours, theirs) = (proxy.imap.to_string(), stranger.local_addr().unwrap().to_string());
    let (code, lines) = doctor(
        &proxy.config,
        &[("SEALPOST_LISTEN__IMAP", ours.as_str()), ("SEALPOST_LISTEN__SMTP", theirs.as_str())],
    );
    assert_eq!(code, Some(1), "{lines:#?}");
    let held = line(&lines, "ok  ", "listen.imap:");
    assert!(held.contains(&format!("{ours} is held by this Sealpost (pid ")), "{held}");
    let taken = line(&lines, "FAIL", "listen.smtp:");
    assert!(
        taken.contains(&format!("{theirs} is in use by another program")) && taken.contains("choose another listen.smtp"),
        "{taken}"
    );
}

#[test]
fn a_configuration_that_does_not_load_is_reported_in_doctor_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealpost.toml");
    std::fs::write(&path, "[policy]\nencrypt = \"sometimes\"\n").unwrap();
    let (code, lines) = doctor(&path, &[]);
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(
        lines[0].starts_with("FAIL config: ") && lines[0].contains("policy.encrypt"),
        "{lines:#?}"
    );
}
