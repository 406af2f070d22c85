//! Upstream TLS sessions are resumed: once a full handshake verified the
//! provider's server under the pins in force, later connections resume
//! its session (the stack's Postfix accepts TLS 1.3 tickets; its Dovecot,
//! one login process per connection, does not, so SMTP is what shows it).

mod common;

use common::proxy::{python, Proxy};
use common::stack::password;
use common::User;

fn handshakes(proxy: &Proxy, kind: &str) -> u64 {
    metric(proxy, &format!("sealpost_upstream_tls_handshakes_total{{kind=\"{kind}\"}}"))
}

/// The value of the series `series` (name and labels), 0 when absent.
fn metric(proxy: &Proxy, series: &str) -> u64 {
    let wanted = format!("{series} ");
    proxy
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(wanted.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn later_connections_resume_the_tls_session() {
    let mut alice = User::new("alice@example.org");
    let bob = User::new("bob@example.net");
    alice.knows(&[&bob]);
    // With metrics.per_account the per-account series name the login.
    let proxy = Proxy::start(&alice, None, "[metrics]\nper_account = true\n");
    let script = r#"
for i in range(4):
    s = connect(int(sys.argv[1])); s.login("alice@example.org", sys.argv[2])
    s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: resumption\r\n\r\nbody\r\n"); s.quit()
print("sent")
"#;
    let out = python(script, &[&proxy.smtp.port().to_string(), &password("alice@example.org")]);
    assert!(out.contains("sent"), "{out}");
    let (full, resumed) = (handshakes(&proxy, "full"), handshakes(&proxy, "resumed"));
    eprintln!("upstream TLS handshakes: {full} full, {resumed} resumed");
    // The first contact (trust on first use) is never resumed, nor the
    // first under the recorded pin; later ones resume (when the server
    // sent a ticket in time).
    assert!(full >= 2 && resumed >= 1 && full + resumed >= 4, "{full} full, {resumed} resumed");
    // Each handshake was timed, and each command the provider answered
    // (EHLO, AUTH, MAIL, RCPT, the message...) too.
    for kind in ["full", "resumed"] {
        assert_eq!(
            metric(&proxy, &format!("sealpost_upstream_tls_handshake_seconds_count{{kind=\"{kind}\"}}")),
            handshakes(&proxy, kind)
        );
    }
    let commands = metric(&proxy, "sealpost_upstream_command_seconds_count{protocol=\"smtp\"}");
    assert!(commands >= 4 * 4, "{commands} SMTP commands timed");
    assert_eq!(
        metric(
            &proxy,
            "sealpost_smtp_messages_total{account=\"alice@example.org\",outcome=\"encrypted\"}"
        ),
        4
    );
}
