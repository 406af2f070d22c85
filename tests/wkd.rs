//! Key discovery against local HTTPS servers: a Web Key Directory and a
//! VKS keyserver on loopback, with a certificate from a test CA that the
//! discovery trusts through `keys.ca_file`, reached through
//! `[keys.connect_to]` (no DNS, no /etc/hosts). The servers serve real key
//! files at the advanced and direct paths, keys for the wrong address,
//! oversized, slow, redirecting and failing answers, and count every
//! request they receive.

mod common;

use std::time::{Duration, Instant};

use common::wkd::*;
use sealpost::config::KeysConfig;
use sealpost::discovery::{wkd, Discovery, Lookup, Source};
use sequoia_openpgp::Cert;

fn found(lookup: &Lookup) -> (&[Cert], Source, &str) {
    match lookup {
        Lookup::Found { certs, source, url } => (certs, *source, url),
        other => panic!("expected a key, got {other:?}"),
    }
}

fn failure(lookup: &Lookup) -> &str {
    match lookup {
        Lookup::Failed(reason) => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_advanced_method_finds_the_key_once() {
    let joe = key(&["Joe Doe <joe.doe@example.org>"]);
    let (host, path) = advanced_path("joe.doe@example.org");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&joe)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("Joe.Doe@Example.ORG").await;
    let (certs, source, url) = found(&lookup);
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint(), joe.fingerprint());
    assert_eq!(source, Source::Wkd);
    assert_eq!(
        url,
        "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
    );
    // Exactly the draft's URL; the direct method is not asked.
    assert_eq!(
        server.requests(),
        ["openpgpkey.example.org /.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"]
    );
    // Remembered: asking again costs no request.
    assert_eq!(discovery.lookup("joe.doe@example.org").await, lookup);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_direct_method_is_used_when_there_is_no_openpgpkey_subdomain() {
    let bob = key(&["<bob@direct.invalid>"]);
    let (host, path) = direct_path("bob@direct.invalid");
    let server = Server::start(vec![(&host, path, Reply::Chunked(armored(&bob)))]).await;
    let dir = tempfile::tempdir().unwrap();
    // openpgpkey.direct.invalid is not in connect_to and, under .invalid,
    // never resolves.
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("bob@direct.invalid").await;
    let (certs, _, url) = found(&lookup);
    assert_eq!(certs[0].fingerprint(), bob.fingerprint());
    assert!(url.starts_with("https://direct.invalid/.well-known/openpgpkey/hu/"), "{url}");
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

#[tokio::test]
async fn a_server_that_only_serves_the_direct_method() {
    let carol = key(&["<carol@example.com>"]);
    let (host, path) = direct_path("carol@example.com");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&carol)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("carol@example.com").await;
    assert_eq!(found(&lookup).0[0].fingerprint(), carol.fingerprint());
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].starts_with("openpgpkey.example.com /.well-known/openpgpkey/example.com/hu/"));
    assert!(requests[1].starts_with("example.com /.well-known/openpgpkey/hu/"));
}

#[tokio::test]
async fn a_key_for_another_domain_is_refused() {
    // The same local part at another domain: not the address looked up.
    let impostor = key(&["Joe Doe <joe.doe@example.net>"]);
    let (host, path) = advanced_path("joe.doe@example.org");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&impostor)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("joe.doe@example.org").await;
    let reason = failure(&lookup);
    assert!(reason.contains("no key for <joe.doe@example.org>"), "{reason}");
    assert!(reason.contains("<joe.doe@example.net>") && reason.contains("refused"), "{reason}");
    assert!(reason.contains(&impostor.fingerprint().to_hex()), "{reason}");
    // What the advanced method served is final: the direct method is not asked.
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_key_with_other_user_ids_comes_back_with_only_the_one_asked_for() {
    let joe = key(&["<joe.doe@example.org>", "<ceo@bank.example>", "Joe <joe@gmail.example>"]);
    let (host, path) = advanced_path("joe.doe@example.org");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&joe)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("joe.doe@example.org").await;
    let certs = found(&lookup).0;
    let uids: Vec<String> = certs[0]
        .userids()
        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        .collect();
    assert_eq!(uids, ["<joe.doe@example.org>"]);
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let big = vec![0x99; 300 * 1024];
    let (host, path) = advanced_path("big@example.org");
    let (host2, path2) = advanced_path("endless@example.org");
    let server = Server::start(vec![
        (&host, path, Reply::Body(big.clone())),
        (&host2, path2, Reply::Chunked([big.clone(), big.clone(), big].concat())),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    for email in ["big@example.org", "endless@example.org"] {
        let lookup = discovery.lookup(email).await;
        let reason = failure(&lookup);
        assert!(reason.contains("larger than the limit of 262144 bytes"), "{reason}");
    }
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
}

#[tokio::test]
async fn a_slow_server_does_not_hold_up_the_caller_beyond_the_bound() {
    let slow = key(&["<slow@example.org>"]);
    let (host, path) = advanced_path("slow@example.org");
    let (host2, path2) = advanced_path("silent@example.org");
    let server = Server::start(vec![
        (&host, path, Reply::Slow(Duration::from_millis(2500), binary(&slow))),
        (&host2, path2, Reply::Slow(Duration::from_secs(120), Vec::new())),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig {
        lookup_timeout: 1,
        ..server.config()
    };
    let discovery = Discovery::new(&config, dir.path()).unwrap();

    for email in ["silent@example.org", "slow@example.org"] {
        let started = Instant::now();
        let lookup = discovery.lookup(email).await;
        let waited = started.elapsed();
        assert_eq!(
            lookup,
            Lookup::TimedOut {
                after: Duration::from_secs(1)
            }
        );
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_millis(1800),
            "{waited:?}"
        );
    }
    // The look-up went on in the background; its answer serves the next
    // message without asking again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while discovery.cached("slow@example.org").is_none() {
        assert!(Instant::now() < deadline, "the background look-up never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lookup = discovery.lookup("slow@example.org").await;
    assert_eq!(found(&lookup).0[0].fingerprint(), slow.fingerprint());
    let asked = server.requests().iter().filter(|r| r.contains(&wkd::hash("slow"))).count();
    assert_eq!(asked, 1);
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch() {
    let dave = key(&["<dave@example.com>"]);
    let (host, path) = advanced_path("dave@example.com");
    let server = Server::start(vec![(&host, path, Reply::Slow(Duration::from_millis(300), binary(&dave)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookups = futures_join(&discovery, "dave@example.com", 5).await;
    for lookup in &lookups {
        assert_eq!(found(lookup).0[0].fingerprint(), dave.fingerprint());
    }
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

async fn futures_join(discovery: &Discovery, email: &str, n: usize) -> Vec<Lookup> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (discovery, email) = (discovery.clone(), email.to_string());
        tasks.push(tokio::spawn(async move { discovery.lookup(&email).await }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn no_key_is_remembered_across_a_restart() {
    let server = Server::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    assert_eq!(discovery.lookup("nobody@example.org").await, Lookup::NotFound);
    assert_eq!(server.requests().len(), 2, "advanced then direct: {:?}", server.requests());
    assert_eq!(discovery.lookup("NOBODY@example.org").await, Lookup::NotFound);
    assert_eq!(server.requests().len(), 2, "the second look-up must not reach the server");

    let file = dir.path().join(sealpost::discovery::cache::FILE_NAME);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let restarted = Discovery::new(&server.config(), dir.path()).unwrap();
    assert_eq!(restarted.lookup("nobody@example.org").await, Lookup::NotFound);
    assert_eq!(server.requests().len(), 2, "a restart keeps the negative answer");

    // Forgetting asks again; refresh always asks.
    restarted.forget("nobody@example.org");
    assert_eq!(restarted.lookup("nobody@example.org").await, Lookup::NotFound);
    assert_eq!(server.requests().len(), 4);
    assert_eq!(restarted.refresh("nobody@example.org").await, Lookup::NotFound);
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn server_errors_fail_without_falling_back() {
    let (host, path) = advanced_path("err@example.org");
    let server = Server::start(vec![(&host, path, Reply::Status(500))]).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("err@example.org").await;
    let reason = failure(&lookup);
    assert!(reason.contains("answered 500") && reason.contains("WKD"), "{reason}");
    assert_eq!(server.requests().len(), 1);
    // Failures are remembered too (briefly).
    assert_eq!(discovery.lookup("err@example.org").await, lookup);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn redirects_are_followed_within_https_only() {
    let joe = key(&["<joe@example.org>"]);
    let (host, path) = advanced_path("joe@example.org");
    let (host2, path2) = advanced_path("plain@example.org");
    let (host3, path3) = advanced_path("loop@example.org");
    let server = Server::start(vec![
        (&host, path, Reply::Redirect("../../keys/joe.pgp".into())),
        (
            "openpgpkey.example.org",
            "/.well-known/openpgpkey/keys/joe.pgp".into(),
            Reply::Redirect("https://example.org/keys/joe.pgp".into()),
        ),
        ("example.org", "/keys/joe.pgp".into(), Reply::Body(binary(&joe))),
        (&host2, path2, Reply::Redirect("http://example.org/keys/joe.pgp".into())),
        (&host3, path3.clone(), Reply::Redirect(path3)),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&server.config(), dir.path()).unwrap();

    let lookup = discovery.lookup("joe@example.org").await;
    let (certs, _, url) = found(&lookup);
    assert_eq!(certs[0].fingerprint(), joe.fingerprint());
    assert_eq!(url, "https://example.org/keys/joe.pgp");

    let reason = discovery.lookup("plain@example.org").await;
    assert!(failure(&reason).contains("only https"), "{reason:?}");
    let reason = discovery.lookup("loop@example.org").await;
    assert!(failure(&reason).contains("more than 3 redirects"), "{reason:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let joe = key(&["<joe@example.org>"]);
    let (host, path) = advanced_path("joe@example.org");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&joe)))]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig {
        ca_file: None,
        ..server.config()
    };
    let discovery = Discovery::new(&config, dir.path()).unwrap();

    let lookup = discovery.lookup("joe@example.org").await;
    let reason = failure(&lookup);
    assert!(reason.contains("not signed by a trusted authority"), "{reason}");
    // Both methods were tried, neither got as far as a request.
    assert!(reason.contains("advanced method") && reason.contains("direct method"), "{reason}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn pinned_hosts_must_present_the_pinned_key() {
    let joe = key(&["<joe@example.org>"]);
    let (host, path) = advanced_path("joe@example.org");
    let server = Server::start(vec![(&host, path, Reply::Body(binary(&joe)))]).await;
    let server_pin = sealpost::tls::Pin::of_certificate(&pki().cert_der).unwrap().to_string();
    let other_pin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_string();

    let dir = tempfile::tempdir().unwrap();
    let pinned = |pin: &str| KeysConfig {
        pins: [("openpgpkey.example.org".to_string(), vec![pin.to_string()])].into(),
        ..server.config()
    };
    let discovery = Discovery::new(&pinned(&server_pin), dir.path()).unwrap();
    assert_eq!(
        found(&discovery.lookup("joe@example.org").await).0[0].fingerprint(),
        joe.fingerprint()
    );

    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery::new(&pinned(&other_pin), dir.path()).unwrap();
    let lookup = discovery.lookup("joe@example.org").await;
    let reason = failure(&lookup);
    assert!(reason.contains("pinned in [keys.pins]") && reason.contains(&other_pin), "{reason}");
    // A pin mismatch is not "unreachable": the direct method is not asked
    // (only the first, successful look-up reached the server).
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

#[tokio::test]
async fn keyserver_by_email() {
    let dave = key(&["Dave <dave@example.com>"]);
    let mallory = key(&["<mallory@evil.example>"]);
    let server = Server::start(vec![
        (
            "keys.example.net",
            "/vks/v1/by-email/dave%40example.com".into(),
            Reply::Body(armored(&dave)),
        ),
        (
            "keys.example.net",
            "/vks/v1/by-email/frank%40example.com".into(),
            Reply::Body(armored(&mallory)),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig {
        wkd: false,
        keyserver: Some("https://keys.example.net".into()),
        ..server.config()
    };
    let discovery = Discovery::new(&config, dir.path()).unwrap();

    let lookup = discovery.lookup("dave@example.com").await;
    let (certs, source, url) = found(&lookup);
    assert_eq!(certs[0].fingerprint(), dave.fingerprint());
    assert_eq!(
        (source, url),
        (Source::Keyserver, "https://keys.example.net/vks/v1/by-email/dave%40example.com")
    );
    assert_eq!(discovery.lookup("erin@example.com").await, Lookup::NotFound);
    let lookup = discovery.lookup("frank@example.com").await;
    let reason = failure(&lookup);
    assert!(
        reason.starts_with("key discovery for <frank@example.com> failed: keyserver:") && reason.contains("refused"),
        "{reason}"
    );
    // WKD is off: only the keyserver was asked.
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.starts_with("keys.example.net /vks/v1/by-email/")),
        "{:?}",
        server.requests()
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn the_keyserver_is_asked_after_wkd_has_nothing() {
    let erin = key(&["<erin@example.org>"]);
    let server = Server::start(vec![(
        "keys.example.net",
        "/vks/v1/by-email/erin%40example.org".into(),
        Reply::Body(armored(&erin)),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig {
        keyserver: Some("https://keys.example.net".into()),
        ..server.config()
    };
    let discovery = Discovery::new(&config, dir.path()).unwrap();

    let lookup = discovery.lookup("erin@example.org").await;
    let (certs, source, _) = found(&lookup);
    assert_eq!((certs[0].fingerprint(), source), (erin.fingerprint(), Source::Keyserver));
    let hosts: Vec<String> = server.requests().iter().map(|r| r.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(hosts, ["openpgpkey.example.org", "example.org", "keys.example.net"]);
}

#[tokio::test]
async fn a_disabled_domain_is_never_asked() {
    let server = Server::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig {
        wkd_disabled_domains: vec!["example.org".into()],
        ..server.config()
    };
    let discovery = Discovery::new(&config, dir.path()).unwrap();
    assert_eq!(discovery.lookup("joe@example.org").await, Lookup::Disabled);
    assert_eq!(discovery.lookup("carol@example.com").await, Lookup::NotFound);
    assert!(
        server.requests().iter().all(|r| r.contains("example.com")),
        "{:?}",
        server.requests()
    );
}

/// The SMTP proxy looks up a recipient it has no key for in the
/// recipient's Web Key Directory at RCPT time, stores what it finds and
/// encrypts to it; a recipient the directory does not know is refused
/// when the policy requires encryption.
#[test]
fn the_smtp_proxy_encrypts_to_a_key_found_in_the_recipients_directory() {
    use common::proxy::{python, token, Proxy, Setup};
    use common::stack::{password, stack};
    let stack = stack();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let carol = common::User::new("carol@example.com");
    let (host, path) = advanced_path("carol@example.com");
    let server = runtime.block_on(Server::start(vec![(&host, path, Reply::Body(binary(&carol.key.cert)))]));
    let alice = common::User::new("alice@example.org");
    let keys = format!(
        "ca_file = \"{}\"\n[keys.connect_to]\n\"openpgpkey.example.com\" = \"{addr}\"\n\"example.com\" = \"{addr}\"\n",
        pki().ca_file.display(),
        addr = server.addr
    );
    let proxy = Proxy::start_with(
        &alice,
        Setup {
            extra: "[policy]\nrequire_encryption_for = [\"example.com\"]\n",
            keys: Some(&keys),
            ..Setup::default()
        },
    );
    let tok = token("wkd-smtp");
    let script = r#"
port, user, pw, tok = sys.argv[1:5]
s = connect(port); s.login(user, pw)
msg = f"From: {user}\r\nTo: carol@example.com\r\nSubject: found by WKD\r\nMessage-ID: <{tok}@example.org>\r\n\r\nsecret for carol\r\n"
s.sendmail(user, ["carol@example.com"], msg.encode())
code, text = s.docmd("RSET")
code, text = s.docmd("MAIL", "FROM:<" + user + ">")
code, text = s.docmd("RCPT", "TO:<dave@example.com>")
print(code, text.decode())
s.quit()
"#;
    let out = python(
        script,
        &[
            &proxy.smtp.port().to_string(),
            "alice@example.org",
            &password("alice@example.org"),
            &tok,
        ],
    );
    assert!(
        out.starts_with("550 5.7.1 <dave@example.com>: encryption required but no OpenPGP key found"),
        "dave has no key anywhere: {out}"
    );
    let delivered = stack.wait_for_matching("carol@example.com", tok.as_bytes(), 1, Duration::from_secs(20));
    assert!(!common::contains(&delivered[0], b"secret for carol"));
    assert_eq!(
        carol.decrypt(&delivered[0]).status.header_value().split(';').next(),
        Some("decrypted")
    );
    assert!(server
        .requests()
        .iter()
        .any(|r| r.starts_with("openpgpkey.example.com /.well-known/openpgpkey/example.com/hu/")));
    let metrics = proxy.metrics_text();
    assert!(metrics.contains("sealpost_keys_learned_total{source=\"wkd\"} 1"), "{metrics}");
    assert!(
        metrics.contains("sealpost_key_lookups_total{result=\"found\",source=\"wkd\"} 1"),
        "{metrics}"
    );
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .args(["keys", "list"])
        .env("SEALPOST_DATA_DIR", alice.dir.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines().any(|l| l.starts_with("carol@example.com") && l.contains(" wkd ")),
        "{list}"
    );
}

/// `sealpost keys refresh` asks the directory again: a revocation
/// published there is merged into the stored key, which is then refused
/// for encryption with a clear message.
#[test]
fn refresh_merges_a_revocation_from_the_directory() {
    use sequoia_openpgp::policy::StandardPolicy;
    use sequoia_openpgp::types::ReasonForRevocation;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let carol = common::User::new("carol@example.com");
    let mut bob = common::User::new("bob@example.net");
    bob.knows(&[&carol]);
    let mut signer = carol.key.signer.clone().expect("the primary key signs");
    let revocation = carol
        .key
        .cert
        .revoke(&mut signer, ReasonForRevocation::KeyCompromised, b"lost laptop")
        .unwrap();
    let revoked = carol
        .key
        .cert
        .clone()
        .insert_packets(revocation)
        .unwrap()
        .0
        .strip_secret_key_material();
    assert!(revoked.with_policy(&StandardPolicy::new(), None).is_ok());
    let (host, path) = advanced_path("carol@example.com");
    let server = runtime.block_on(Server::start(vec![(&host, path, Reply::Body(binary(&revoked)))]));
    let config = bob.dir.path().join("sealpost.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[keys]\nca_file = \"{}\"\n[keys.connect_to]\n\"openpgpkey.example.com\" = \"{addr}\"\n",
            bob.dir.path().display(),
            pki().ca_file.display(),
            addr = server.addr
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("SEALPOST_PASSPHRASE", common::PASSPHRASE)
            .env("SEALPOST_LOG__LEVEL", "warn")
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let fpr = carol.key.cert.fingerprint().to_hex();
    let out = run(&["keys", "refresh"]);
    assert!(
        out.contains(&format!("carol@example.com: {fpr} updated from https://openpgpkey.example.com/")),
        "{out}"
    );
    let list = run(&["keys", "list"]);
    let line = list.lines().find(|l| l.contains(&fpr)).unwrap();
    assert!(
        line.contains("revoked") && line.contains("imported"),
        "the update is merged, the source stays: {line}"
    );
    let refused = run(&["encrypt", "--from", "bob@example.net", "--to", "carol@example.com"]);
    assert!(refused.contains("revoked"), "{refused}");
}
