//! A local HTTPS server for key discovery tests: a Web Key Directory or
//! a VKS keyserver on loopback, with a certificate from a test CA made
//! once per run (trusted through `keys.ca_file`, reached through
//! `[keys.connect_to]`: no DNS, no /etc/hosts). It answers by host and
//! path and counts every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sealpost::config::KeysConfig;
use sealpost::discovery::wkd;
use sequoia_openpgp::cert::CertBuilder;
use sequoia_openpgp::serialize::Serialize;
use sequoia_openpgp::Cert;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every name the test server's certificate is valid for.
pub const NAMES: [&str; 7] = [
    "openpgpkey.example.org",
    "example.org",
    "openpgpkey.example.com",
    "example.com",
    "direct.invalid",
    "keys.example.net",
    "openpgpkey.example.net",
];

/// The test CA and the server certificate it issued, made once per run.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM), for `keys.ca_file`.
    pub ca_file: PathBuf,
    /// The server certificate (DER).
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

pub fn pki() -> &'static Pki {
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
pub enum Reply {
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
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves `routes` (host, path, reply) until the runtime ends.
    pub async fn start(routes: Vec<(&str, String, Reply)>) -> Server {
        let routes: Arc<HashMap<(String, String), Reply>> = Arc::new(routes.into_iter().map(|(h, p, r)| ((h.to_string(), p), r)).collect());
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

    /// Every request so far, as "host target".
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Discovery settings that reach every test name at this server and
    /// trust the test CA.
    pub fn config(&self) -> KeysConfig {
        KeysConfig {
            ca_file: Some(pki().ca_file.clone()),
            connect_to: [
                "openpgpkey.example.org",
                "example.org",
                "openpgpkey.example.com",
                "example.com",
                "direct.invalid",
                "keys.example.net",
            ]
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
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
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
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/pgp-keys\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
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
pub fn key(userids: &[&str]) -> Cert {
    let mut builder = CertBuilder::new().add_transport_encryption_subkey();
    for uid in userids {
        builder = builder.add_userid(*uid);
    }
    builder.generate().unwrap().0
}

/// The certificate in binary form, as WKD serves it.
pub fn binary(cert: &Cert) -> Vec<u8> {
    let mut out = Vec::new();
    cert.serialize(&mut out).unwrap();
    out
}

/// The certificate armored, as keyservers serve it.
pub fn armored(cert: &Cert) -> Vec<u8> {
    let mut out = Vec::new();
    cert.armored().serialize(&mut out).unwrap();
    out
}

/// Host and path of the advanced method for `email`.
pub fn advanced_path(email: &str) -> (String, String) {
    let (local, domain) = email.rsplit_once('@').unwrap();
    (
        format!("openpgpkey.{domain}"),
        format!("/.well-known/openpgpkey/{domain}/hu/{}", wkd::hash(local)),
    )
}

/// Host and path of the direct method for `email`.
pub fn direct_path(email: &str) -> (String, String) {
    let (local, domain) = email.rsplit_once('@').unwrap();
    (domain.to_string(), format!("/.well-known/openpgpkey/hu/{}", wkd::hash(local)))
}
