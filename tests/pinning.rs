//! Certificate pinning against the test stack's real Postfix: what each
//! trust mode accepts and refuses, and what the client is told.

mod common;

use common::proxy::{python, Proxy, Setup};
use common::stack::{password, stack};
use common::*;
use rustls::pki_types::pem::PemObject;
use sealpost::tls::{Pin, PinStore};

/// Logs in through the proxy with AUTH PLAIN and prints the reply: the
/// first command that needs the provider, so the first one pinning guards.
fn login(proxy: &Proxy) -> String {
    let script = r#"
s = connect(int(sys.argv[1])); s.ehlo()
code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.org\0" + sys.argv[2].encode()).decode())
print(code, text.decode())
"#;
    python(script, &[&proxy.smtp.port().to_string(), &password("alice@example.org")])
}

/// The pin of a PEM certificate file.
fn pin_of(path: &std::path::Path) -> Pin {
    let der = rustls::pki_types::CertificateDer::from_pem_file(path).unwrap();
    Pin::of_certificate(&der).unwrap()
}

/// A valid pin of no key anyone has.
fn unrelated_pin() -> String {
    "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string()
}

fn submission(stack: &common::stack::Stack) -> String {
    format!("{}:{}", stack.tls_name, stack.submission_port)
}

#[test]
fn tofu_records_the_first_key_and_then_requires_it() {
    let stack = stack();
    let alice = User::new("alice@example.org");
    let proxy = Proxy::start(&alice, None, "");
    assert!(login(&proxy).starts_with("235"), "first contact, CA-verified");
    let server = submission(stack);
    let record = PinStore::new(alice.dir.path()).get(&server).unwrap().expect("recorded on first contact");
    assert_eq!(record.pin, pin_of(&stack.server_cert).to_string());
    assert!(login(&proxy).starts_with("235"), "the same key passes");

    // The server's key "changes": the recorded key no longer matches.
    let pins = alice.dir.path().join("pins.toml");
    let text = std::fs::read_to_string(&pins).unwrap().replace(&record.pin, &unrelated_pin());
    std::fs::write(&pins, text).unwrap();
    let reply = login(&proxy);
    let expected = format!(
        "421 4.7.0 Sealpost: {server} presented an unexpected key (seen {}, pinned {}); if the provider rotated keys, run 'sealpost pin accept {server}'",
        record.pin,
        unrelated_pin()
    );
    assert_eq!(reply.trim(), expected);
    assert!(proxy.metrics_text().contains("sealpost_upstream_failures_total{kind=\"pin\"} 1"));
    let log = proxy.log_text();
    assert!(log.contains("ERROR") && log.contains("presented an unexpected key"), "{log}");

    // The user checks and accepts the new key; connections work again.
    let accept = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .args(["pin", "accept", &format!("smtp://{server}"), "--yes"])
        .env("SEALPOST_DATA_DIR", alice.dir.path())
        .output()
        .unwrap();
    assert!(accept.status.success(), "{}", String::from_utf8_lossy(&accept.stderr));
    assert!(login(&proxy).starts_with("235"));
}

#[test]
fn pin_modes_accept_the_pinned_key_or_a_backup_and_nothing_else() {
    let stack = stack();
    let alice = User::new("alice@example.org");
    let real = pin_of(&stack.server_cert).to_string();
    let cases = [
        ("pin, the server's key", format!("trust = \"pin\"\npins = [\"{real}\"]\n"), true),
        ("pin, a backup first", format!("trust = \"pin\"\npins = [\"{}\", \"{real}\"]\n", unrelated_pin()), true),
        ("pin, another key only", format!("trust = \"pin\"\npins = [\"{}\"]\n", unrelated_pin()), false),
        ("ca+pin, the server's key", format!("trust = \"ca+pin\"\npins = [\"{real}\"]\n"), true),
        ("ca+pin, another key", format!("trust = \"ca+pin\"\npins = [\"{}\"]\n", unrelated_pin()), false),
        ("ca", "trust = \"ca\"\n".to_string(), true),
    ];
    for (what, account, accepted) in cases {
        let proxy = Proxy::start_with(&alice, Setup { account: &account, ..Setup::default() });
        let reply = login(&proxy);
        if accepted {
            assert!(reply.starts_with("235"), "{what}: {reply}");
        } else {
            assert!(reply.starts_with("421 4.7.0 Sealpost:") && reply.contains("presented an unexpected key"), "{what}: {reply}");
        }
    }
}

#[test]
fn pin_mode_needs_no_ca_but_ca_mode_does() {
    let stack = stack();
    let alice = User::new("alice@example.org");
    let untrusted = Proxy::start_with(
        &alice,
        Setup {
            account: "trust = \"ca\"\n",
            without_ca_file: true,
            ..Setup::default()
        },
    );
    let reply = login(&untrusted);
    assert!(
        reply.starts_with("421 4.7.0") && reply.contains("not signed by a trusted authority"),
        "{reply}"
    );
    let account = format!("trust = \"pin\"\npins = [\"{}\"]\n", pin_of(&stack.server_cert));
    let pinned = Proxy::start_with(
        &alice,
        Setup {
            account: &account,
            without_ca_file: true,
            ..Setup::default()
        },
    );
    assert!(login(&pinned).starts_with("235"), "a pinned key needs no CA");
}

#[test]
fn check_reports_bad_pins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sealpost.toml");
    std::fs::write(
        &config,
        "[[account]]\nlogin = \"a@x.test\"\nsmtp = \"smtp://h\"\ntrust = \"pin\"\npins = [\"md5/abc\"]\n[[account]]\nlogin = \"b@x.test\"\nsmtp = \"smtp://h\"\ntrust = \"ca+pin\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .args(["--config", config.to_str().unwrap(), "check"])
        .env("SEALPOST_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("account[0].pins: 'md5/abc' is not a pin"), "{stderr}");
    assert!(stderr.contains("account[1].pins: trust = \"pin\" or \"ca+pin\" needs at least one pin"), "{stderr}");
}

#[test]
fn pin_fetch_prints_the_chain_and_the_line_to_paste() {
    let stack = stack();
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("smtp://{}:{}", stack.tls_name, stack.submission_port),
        format!("smtps://{}:{}", stack.tls_name, stack.submissions_port),
        format!("imap://{}:{}", stack.tls_name, stack.imap_port),
        format!("imaps://{}:{}", stack.tls_name, stack.imaps_port),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .args(["pin", "fetch", &url])
            .env("SEALPOST_DATA_DIR", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("subject: O=Sealpost test stack, CN=localhost"), "{stdout}");
        assert!(stdout.contains(&format!("pins = [\"{}\"]", pin_of(&stack.server_cert))), "{stdout}");
    }
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .args(["pin", "fetch", &format!("smtp://{}:{}", stack.tls_name, stack.plainauth_port)])
        .env("SEALPOST_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("STARTTLS refused"));
}
