//! Key discovery against local HTTPS servers: a Web Key Directory and a
//! VKS keyserver on loopback, with a certificate from a test CA that the
//! discovery trusts through `keys.ca_file`, reached through
//! `[keys.connect_to]` (no DNS, no /etc/hosts). The servers serve real key
//! files at the advanced and direct paths, keys for the wrong address,
//! oversized, slow, redirecting and failing answers, and count every
//! request they receive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sealpost::config::KeysConfig;
use sealpost::discovery::{wkd, Discovery, Lookup, Source};
use sequoia_openpgp::cert::CertBuilder;
use sequoia_openpgp::serialize::Serialize;
use sequoia_openpgp::Cert;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every name the test server's certificate is valid for.
const NAMES: [&str; 7] = [
    "openpgpkey.example.org",
    "example.org",
    "openpgpkey.example.com",
    "example.com",
    "direct.invalid",
    "keys.example.net",
    "openpgpkey.example.net",
];

/// The test CA and the server certificate it issued, made once per run.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Sealpost WKD test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

        let mut params = rcgen::CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "example.org");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            _dir: dir,
            ca_file,
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    })
}

/// What the server answers for one host and path.
#[derive(Clone)]
enum Reply {
    /// 200 with Content-Length.
    Body(Vec<u8>),
    /// 200, chunked.
    Chunked(Vec<u8>),
    /// 200 after a delay.
    Slow(Duration, Vec<u8>),
    /// 302 to this Location.
    Redirect(String),
    /// This status, empty body.
    Status(u16),
}

/// A local HTTPS server: routes by Host and path (query ignored), 404 for
/// anything else, every request logged as "host target".
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(routes: Vec<(&str, String, Reply)>) -> Server {
        let routes: Arc<HashMap<(String, String), Reply>> =
            Arc::new(routes.into_iter().map(|(h, p, r)| ((h.to_string(), p), r)).collect());
        let pki = pki();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.cert_der.clone().into()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key_der.clone()).into(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, routes, log) = (acceptor.clone(), routes.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let mut stream = BufReader::new(tls);
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.is_err() {
                        return;
                    }
                    let target = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
                    let mut host = String::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("host") {
                                host = value.trim().split(':').next().unwrap_or_default().to_string();
                            }
                        }
                    }
                    log.lock().unwrap().push(format!("{host} {target}"));
                    let path = target.split('?').next().unwrap_or_default().to_string();
                    let reply = routes.get(&(host, path)).cloned().unwrap_or(Reply::Status(404));
                    let stream = stream.get_mut();
                    let _ = respond(stream, reply).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Discovery settings that reach every test name at this server and
    /// trust the test CA.
    fn config(&self) -> KeysConfig {
        KeysConfig {
            ca_file: Some(pki().ca_file.clone()),
            connect_to: ["openpgpkey.example.org", "example.org", "openpgpkey.example.com", "example.com", "direct.invalid", "keys.example.net"]
                .iter()
                .map(|h| (h.to_string(), self.addr))
                .collect(),
            ..KeysConfig::default()
        }
    }
}

async fn respond<W: tokio::io::AsyncWrite + Unpin>(stream: &mut W, reply: Reply) -> std::io::Result<()> {
    let ok = |body: &[u8]| {
        [
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat()
    };
    match reply {
        Reply::Body(body) => stream.write_all(&ok(&body)).await,
        Reply::Slow(delay, body) => {
            tokio::time::sleep(delay).await;
            stream.write_all(&ok(&body)).await
        }
        Reply::Chunked(body) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/pgp-keys\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await?;
            for chunk in body.chunks(1000) {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await
        }
        Reply::Redirect(location) => {
            stream
                .write_all(format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
        }
        Reply::Status(status) => {
            stream
                .write_all(format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
        }
    }
}

/// A fresh certificate with these user IDs and an encryption subkey.
fn key(userids: &[&str]) -> Cert {
    let mut builder = CertBuilder::new().add_transport_encryption_subkey();
    for uid in userids {
        builder = builder.add_userid(*uid);
    }
    builder.generate().unwrap().0
}

fn binary(cert: &Cert) -> Vec<u8> {
    let mut out = Vec::new();
    cert.serialize(&mut out).unwrap();
    out
}

fn armored(cert: &Cert) -> Vec<u8> {
    let mut out = Vec::new();
    cert.armored().serialize(&mut out).unwrap();
    out
}

fn advanced_path(email: &str) -> (String, String) {
    let (local, domain) = email.rsplit_once('@').unwrap();
    (format!("openpgpkey.{domain}"), format!("/.well-known/openpgpkey/{domain}/hu/{}", wkd::hash(local)))
}

fn direct_path(email: &str) -> (String, String) {
    let (local, domain) = email.rsplit_once('@').unwrap();
    (domain.to_string(), format!("/.well-known/openpgpkey/hu/{}", wkd::hash(local)))
}

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
    let uids: Vec<String> = certs[0].userids().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()).collect();
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
        assert_eq!(lookup, Lookup::TimedOut { after: Duration::from_secs(1) });
        assert!(waited >= Duration::from_millis(950) && waited < Duration::from_millis(1800), "{waited:?}");
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
        ("openpgpkey.example.org", "/.well-known/openpgpkey/keys/joe.pgp".into(), Reply::Redirect("https://example.org/keys/joe.pgp".into())),
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
    assert_eq!(found(&discovery.lookup("joe@example.org").await).0[0].fingerprint(), joe.fingerprint());

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
        ("keys.example.net", "/vks/v1/by-email/dave%40example.com".into(), Reply::Body(armored(&dave))),
        ("keys.example.net", "/vks/v1/by-email/frank%40example.com".into(), Reply::Body(armored(&mallory))),
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
    assert_eq!((source, url), (Source::Keyserver, "https://keys.example.net/vks/v1/by-email/dave%40example.com"));
    assert_eq!(discovery.lookup("erin@example.com").await, Lookup::NotFound);
    let lookup = discovery.lookup("frank@example.com").await;
    let reason = failure(&lookup);
    assert!(reason.starts_with("key discovery for <frank@example.com> failed: keyserver:") && reason.contains("refused"), "{reason}");
    // WKD is off: only the keyserver was asked.
    assert!(server.requests().iter().all(|r| r.starts_with("keys.example.net /vks/v1/by-email/")), "{:?}", server.requests());
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
    assert!(server.requests().iter().all(|r| r.contains("example.com")), "{:?}", server.requests());
}
