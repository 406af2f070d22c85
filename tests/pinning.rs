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
    let record = PinStore::new(alice.dir.path())
        .get(&server)
        .unwrap()
        .expect("recorded on first contact");
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
        (
            "pin, a backup first",
            format!("trust = \"pin\"\npins = [\"{}\", \"{real}\"]\n", unrelated_pin()),
            true,
        ),
        (
            "pin, another key only",
            format!("trust = \"pin\"\npins = [\"{}\"]\n", unrelated_pin()),
            false,
        ),
        (
            "ca+pin, the server's key",
            format!("trust = \"ca+pin\"\npins = [\"{real}\"]\n"),
            true,
        ),
        (
            "ca+pin, another key",
            format!("trust = \"ca+pin\"\npins = [\"{}\"]\n", unrelated_pin()),
            false,
        ),
        ("ca", "trust = \"ca\"\n".to_string(), true),
    ];
    for (what, account, accepted) in cases {
        let proxy = Proxy::start_with(
            &alice,
            Setup {
                account: &account,
                ..Setup::default()
            },
        );
        let reply = login(&proxy);
        if accepted {
            assert!(reply.starts_with("235"), "{what}: {reply}");
        } else {
            assert!(
                reply.starts_with("421 4.7.0 Sealpost:") && reply.contains("presented an unexpected key"),
                "{what}: {reply}"
            );
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
    assert!(
        stderr.contains("account[1].pins: trust = \"pin\" or \"ca+pin\" needs at least one pin"),
        "{stderr}"
    );
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

/// A proxy whose account submits to `port` of the stack (same host name,
/// another certificate) with these account lines.
fn proxy_for(alice: &User, port: u16, account: &str) -> Proxy {
    let url = format!("smtp://{}:{}", stack().tls_name, port);
    Proxy::start_with(
        alice,
        Setup {
            upstream: Some(&url),
            account,
            ..Setup::default()
        },
    )
}

/// Records `pin` for `port` as if the first contact had shown it.
fn first_contact_saw(alice: &User, port: u16, pin: &Pin) {
    let record = sealpost::tls::PinRecord {
        pin: pin.to_string(),
        issuer_pin: None,
        recorded: "first contact".into(),
        certificate_sha256: String::new(),
    };
    PinStore::new(alice.dir.path())
        .record_first(&format!("{}:{port}", stack().tls_name), record)
        .unwrap();
}

/// Tests that log in at an impostor port, and tests that count the logins
/// there, take turns: a count must not see another test's login.
fn impostor_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sessions of the impostor service that saw an AUTH command (Postfix logs
/// `auth=1` or `auth=0/1` when the session ends), i.e. whether a
/// credential reached it.
fn impostor_logins() -> usize {
    std::fs::read_to_string(&stack().postfix_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("pin-impostor") && l.contains(" auth="))
        .count()
}

/// [`impostor_logins`] once Postfix has logged the sessions that ended.
fn impostor_logins_settled(expected_at_least: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = impostor_logins();
        if n >= expected_at_least || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn an_impostor_certificate_from_the_trusted_ca_fools_ca_mode_only() {
    let _turn = impostor_turn();
    let stack = stack();
    let real = pin_of(&stack.server_cert);
    let port = stack.impostor_submission_port;

    // The attack: a certificate for the right name from a trusted CA, but
    // not the provider's key. CA checking alone lets it through.
    let alice = User::new("alice@example.org");
    let before = impostor_logins();
    let proxy = proxy_for(&alice, port, "trust = \"ca\"\n");
    assert!(login(&proxy).starts_with("235"));
    drop(proxy);
    assert_eq!(impostor_logins_settled(before + 1), before + 1, "the login reached the impostor");

    let refused = [
        ("pin", format!("trust = \"pin\"\npins = [\"{real}\"]\n")),
        ("ca+pin", format!("trust = \"ca+pin\"\npins = [\"{real}\"]\n")),
        ("tofu after contact with the real key", String::new()),
    ];
    for (what, account) in refused {
        let alice = User::new("alice@example.org");
        if account.is_empty() {
            first_contact_saw(&alice, port, &real);
        }
        let before = impostor_logins_settled(0);
        let proxy = proxy_for(&alice, port, &account);
        let reply = login(&proxy);
        drop(proxy);
        assert!(
            reply.starts_with(&format!(
                "421 4.7.0 Sealpost: {}:{port} presented an unexpected key (seen {}",
                stack.tls_name,
                pin_of(&stack.impostor_cert)
            )),
            "{what}: {reply}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert_eq!(impostor_logins(), before, "{what}: no credential reached the impostor");
    }
}

#[test]
fn pins_need_no_ca_and_catch_certificates_from_other_cas() {
    let stack = stack();
    let alice = User::new("alice@example.org");
    let selfsigned = format!("trust = \"pin\"\npins = [\"{}\"]\n", pin_of(&stack.selfsigned_cert));
    assert!(login(&proxy_for(&alice, stack.selfsigned_submission_port, &selfsigned)).starts_with("235"));
    let ca_only = login(&proxy_for(&alice, stack.selfsigned_submission_port, "trust = \"ca\"\n"));
    assert!(
        ca_only.starts_with("421 4.7.0") && ca_only.contains("not signed by a trusted authority"),
        "{ca_only}"
    );
    let other_ca = login(&proxy_for(&alice, stack.other_ca_submission_port, "trust = \"ca\"\n"));
    assert!(other_ca.starts_with("421 4.7.0"), "{other_ca}");
}

#[test]
fn a_renewal_with_the_same_key_passes_and_a_backup_pin_allows_rotation() {
    let _turn = impostor_turn();
    let stack = stack();
    let alice = User::new("alice@example.org");
    let real = pin_of(&stack.server_cert);
    assert_eq!(pin_of(&stack.renewed_cert), real, "the renewal keeps the key");
    first_contact_saw(&alice, stack.renewed_submission_port, &real);
    assert!(
        login(&proxy_for(&alice, stack.renewed_submission_port, "")).starts_with("235"),
        "TOFU: same key, new certificate"
    );

    // The provider moves to its pre-announced backup key (here: the
    // impostor's key plays the new key); pinned in advance, it passes.
    let rotated = format!("trust = \"pin\"\npins = [\"{real}\", \"{}\"]\n", pin_of(&stack.impostor_cert));
    assert!(login(&proxy_for(&alice, stack.impostor_submission_port, &rotated)).starts_with("235"));
}

/// Logs in through the proxy's IMAP side with LOGIN and prints the
/// answer (`OK ...` or the error text).
fn imap_login(proxy: &Proxy) -> String {
    let script = r#"
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
try:
    typ, data = m.login("alice@example.org", sys.argv[2])
    print(typ, data[0].decode())
except imaplib.IMAP4.error as e:
    message = e.args[0]
    print("NO", message.decode() if isinstance(message, bytes) else message)
"#;
    python(script, &[&proxy.imap.port().to_string(), &password("alice@example.org")])
}

/// A proxy whose account reads mail from IMAPS `port` of the stack.
fn imap_proxy_for(alice: &User, port: u16, account: &str) -> Proxy {
    let url = format!("imaps://{}:{}", stack().tls_name, port);
    Proxy::start_with(
        alice,
        Setup {
            imap_upstream: Some(&url),
            account,
            ..Setup::default()
        },
    )
}

/// Connections in which the impostor IMAPS service saw a user name
/// (Dovecot names the user of every login attempt, failed or not).
fn impostor_imap_logins() -> usize {
    std::fs::read_to_string(stack().dir.join("log/dovecot-pin-impostor.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("user=<alice@example.org>"))
        .count()
}

#[test]
fn imap_an_impostor_certificate_fools_ca_mode_only() {
    let _turn = impostor_turn();
    let stack = stack();
    let real = pin_of(&stack.server_cert);
    let port = stack.impostor_imaps_port;

    let alice = User::new("alice@example.org");
    let before = impostor_imap_logins();
    let reply = imap_login(&imap_proxy_for(&alice, port, "trust = \"ca\"\n"));
    assert!(reply.starts_with("OK"), "ca mode logs in at the impostor: {reply}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(impostor_imap_logins() > before, "the login reached the impostor");

    let refused = [
        ("pin", format!("trust = \"pin\"\npins = [\"{real}\"]\n")),
        ("ca+pin", format!("trust = \"ca+pin\"\npins = [\"{real}\"]\n")),
        ("tofu after contact with the real key", String::new()),
    ];
    for (what, account) in refused {
        let alice = User::new("alice@example.org");
        if account.is_empty() {
            first_contact_saw(&alice, port, &real);
        }
        let before = impostor_imap_logins();
        let proxy = imap_proxy_for(&alice, port, &account);
        let reply = imap_login(&proxy);
        assert!(
            reply.starts_with(&format!(
                "NO [UNAVAILABLE] Sealpost: {}:{port} presented an unexpected key (seen {}",
                stack.tls_name,
                pin_of(&stack.impostor_cert)
            )),
            "{what}: {reply}"
        );
        assert!(
            reply.contains(&format!("run 'sealpost pin accept {}:{port}'", stack.tls_name)),
            "{what}: {reply}"
        );
        assert!(
            proxy.metrics_text().contains("sealpost_upstream_failures_total{kind=\"pin\"} 1"),
            "{what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(impostor_imap_logins(), before, "{what}: no credential reached the impostor");
    }
}

#[test]
fn imap_pins_need_no_ca_renewals_pass_and_backup_pins_allow_rotation() {
    let _turn = impostor_turn();
    let stack = stack();
    let alice = User::new("alice@example.org");
    let real = pin_of(&stack.server_cert);
    let selfsigned = format!("trust = \"pin\"\npins = [\"{}\"]\n", pin_of(&stack.selfsigned_cert));
    assert!(imap_login(&imap_proxy_for(&alice, stack.selfsigned_imaps_port, &selfsigned)).starts_with("OK"));
    let ca_only = imap_login(&imap_proxy_for(&alice, stack.selfsigned_imaps_port, "trust = \"ca\"\n"));
    assert!(
        ca_only.starts_with("NO [UNAVAILABLE]") && ca_only.contains("not signed by a trusted authority"),
        "{ca_only}"
    );
    assert!(imap_login(&imap_proxy_for(&alice, stack.other_ca_imaps_port, "trust = \"ca\"\n")).starts_with("NO [UNAVAILABLE]"));

    first_contact_saw(&alice, stack.renewed_imaps_port, &real);
    assert!(
        imap_login(&imap_proxy_for(&alice, stack.renewed_imaps_port, "")).starts_with("OK"),
        "TOFU: same key, new certificate"
    );
    let rotated = format!("trust = \"pin\"\npins = [\"{real}\", \"{}\"]\n", pin_of(&stack.impostor_cert));
    assert!(imap_login(&imap_proxy_for(&alice, stack.impostor_imaps_port, &rotated)).starts_with("OK"));
}
