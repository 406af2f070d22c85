//! Reloading a running `sealpost serve` against the test stack: SIGHUP
//! and `sealpost reload` apply a changed policy to the next session while
//! open sessions (an IMAP IDLE, an SMTP transaction) carry on with the
//! configuration they started with; a broken file, or one changing what
//! only a restart applies, is refused with the old configuration kept,
//! logged and counted.

mod common;

use std::time::Duration;

use base64::Engine;
use common::proxy::{Proxy, Setup};
use common::raw::Raw;
use common::stack::password;
use common::User;

const ALICE: &str = "alice@example.org";

/// An SMTP session logged in as Alice, with MAIL FROM given.
fn smtp_transaction(proxy: &Proxy) -> Raw {
    let mut c = Raw::connect(proxy.smtp);
    assert!(c.smtp("EHLO test").starts_with("250"));
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{}", password(ALICE)));
    assert!(c.smtp(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    assert!(c.smtp(&format!("MAIL FROM:<{ALICE}>")).starts_with("250"));
    c
}

/// The value of `sealpost_config_reloads_total{result="..."}`.
fn reloads(proxy: &Proxy, result: &str) -> u64 {
    let series = format!("sealpost_config_reloads_total{{result=\"{result}\"}} ");
    let text = proxy.metrics_text();
    let line = text.lines().find_map(|l| l.strip_prefix(&series));
    line.unwrap_or_else(|| panic!("no {series} in\n{text}")).trim().parse().unwrap()
}

/// Replaces `from` with `to` in the proxy's configuration file.
fn edit_config(proxy: &Proxy, from: &str, to: &str) {
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(text.contains(from), "{from:?} not in\n{text}");
    std::fs::write(&proxy.config, text.replace(from, to)).unwrap();
}

const OPEN_POLICY: &str = "[policy]\nencrypt = \"opportunistic\"\n";
const STRICT_POLICY: &str = "[policy]\nencrypt = \"opportunistic\"\nrequire_encryption_for = [\"example.net\"]\n";
/// Bob has no key in Alice's store: refused once example.net requires
/// encryption.
const BOB: &str = "RCPT TO:<bob@example.net>";

#[test]
fn sighup_applies_a_changed_policy_to_the_next_session_while_an_idle_session_stays_up() {
    let alice = User::new(ALICE);
    let mut proxy = Proxy::start_with(
        &alice,
        Setup {
            extra: OPEN_POLICY,
            ..Setup::default()
        },
    );
    let timeout = Duration::from_secs(20);
    assert_eq!((reloads(&proxy, "ok"), reloads(&proxy, "refused")), (0, 0));

    // Sessions opened before the reload: IMAP in IDLE, SMTP mid-transaction.
    let mut idle = Raw::connect(proxy.imap);
    assert!(idle.command("a1", &format!("LOGIN {ALICE} {}", password(ALICE))).contains("a1 OK"));
    assert!(idle.command("a2", "SELECT INBOX").contains("a2 OK"));
    idle.send(b"a3 IDLE\r\n");
    assert!(idle.line().starts_with("+ "));
    let mut before = smtp_transaction(&proxy);

    // `sealpost reload` finds the process by its pid file and signals it.
    edit_config(&proxy, OPEN_POLICY, STRICT_POLICY);
    let (ok, out) = proxy.cli(&["reload"]);
    assert!(ok && out.contains("asked Sealpost (pid "), "{out}");
    proxy.wait_for_log("configuration reloaded", 1, timeout);
    assert_eq!(reloads(&proxy, "ok"), 1);

    let mut after = smtp_transaction(&proxy);
    let refused = after.smtp(BOB);
    assert!(
        refused.starts_with("550 5.7.1") && refused.contains("encryption required"),
        "{refused}"
    );
    // The session opened before the reload finishes on its configuration,
    // whose policy lets Bob through.
    let accepted = before.smtp(BOB);
    assert!(accepted.starts_with("250"), "{accepted}");
    assert!(before.smtp("QUIT").starts_with("221"));
    // The IDLE session is still there and answers.
    idle.send(b"DONE\r\n");
    let done = idle.until("a3");
    assert!(done.contains("a3 OK"), "{done}");
    assert!(idle.command("a4", "NOOP").contains("a4 OK"));

    // A broken file: refused, every problem logged, the last good
    // configuration kept. `reload` checks first and does not signal.
    edit_config(&proxy, "encrypt = \"opportunistic\"", "encrypt = \"sometimes\"");
    let (ok, out) = proxy.cli(&["reload"]);
    assert!(!ok && out.contains("policy.encrypt"), "{out}");
    proxy.sighup();
    proxy.wait_for_log("reload refused", 1, timeout);
    let log = proxy.log_text();
    assert!(log.contains("policy.encrypt"), "{log}");
    assert_eq!((reloads(&proxy, "ok"), reloads(&proxy, "refused")), (1, 1));
    let mut kept = smtp_transaction(&proxy);
    assert!(kept.smtp(BOB).starts_with("550 5.7.1"), "the reloaded policy stays in force");

    // A listener address changes only on a restart: refused, and said so.
    edit_config(&proxy, "encrypt = \"sometimes\"", "encrypt = \"opportunistic\"");
    edit_config(&proxy, "imap = \"127.0.0.1:0\"", "imap = \"127.0.0.1:1\"");
    proxy.sighup();
    proxy.wait_for_log("reload refused", 2, timeout);
    let log = proxy.log_text();
    assert!(
        log.contains("listen.imap changed (127.0.0.1:0 -> 127.0.0.1:1), which only a restart applies"),
        "{log}"
    );
    assert_eq!(reloads(&proxy, "refused"), 2);
    assert!(idle.command("a5", "NOOP").contains("a5 OK"), "IDLE session survives every reload");

    // The pid file goes with the process.
    let pid_file = alice.dir.path().join("sealpost.pid");
    assert!(pid_file.exists());
    proxy.sigterm();
    assert!(proxy.wait_exit(Duration::from_secs(30)).is_some());
    assert!(!pid_file.exists(), "serve removes its pid file on exit");
}

#[test]
fn reload_says_when_no_sealpost_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sealpost.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n", dir.path().display())).unwrap();
    let reload = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .arg("--config")
            .arg(&config)
            .arg("reload")
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, err) = reload();
    assert_eq!(code, Some(1));
    assert!(err.contains("no Sealpost is running") && err.contains("sealpost.pid"), "{err}");
    // A pid file left by a process that is gone.
    std::fs::write(dir.path().join("sealpost.pid"), "4000000\n").unwrap();
    let (code, err) = reload();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("process 4000000, which is not running") && err.contains("stale"),
        "{err}"
    );
}
