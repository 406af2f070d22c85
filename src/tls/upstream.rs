//! Verified TLS to upstream servers. One connector per account applies the
//! account's trust mode: CA checking (system roots plus `ca_file`, host
//! name checked), pins, both, or trust on first use recorded in
//! `pins.toml`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{HistogramVec, IntCounterVec};

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::pin::{Pin, TrustMode};
use super::pinstore::{PinRecord, PinStore};
use super::verify::{PinMismatch, PinningVerifier};
use super::{provider, Stream, TlsError};

/// How an account authenticates its servers.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The mode.
    pub mode: TrustMode,
    /// Configured pins (`pin` and `ca+pin` modes).
    pub pins: Vec<Pin>,
    /// Where TOFU records live.
    pub store: PinStore,
}

/// Makes verified TLS connections for one account.
///
/// TLS sessions are resumed (TLS 1.3 tickets, TLS 1.2 session ids) from
/// a cache kept per server *and* per verification requirement (trust
/// mode, pins, CA checking): a resumed handshake skips certificate
/// verification, so it may only resume a session whose full handshake
/// passed exactly the checks in force now. When the pins change (a
/// `pin accept`, a new configuration), the old sessions are not used.
#[derive(Clone)]
pub struct Connector {
    trust: Trust,
    ca: Arc<WebPkiServerVerifier>,
    /// Client configurations (verifier and session cache) by server and
    /// requirement: rustls resumes a session only with the very verifier
    /// that checked it.
    configs: Arc<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>>,
    /// Servers (by the same key) a resumption attempt failed with: some
    /// (Cyrus IMAP, under concurrent logins) answer it with an alert.
    no_resumption: Arc<Mutex<HashSet<String>>>,
    handshakes: Arc<OnceLock<(IntCounterVec, HistogramVec)>>,
}

impl Connector {
    /// Trusts the system roots and, if given, every certificate in
    /// `ca_file` (for providers with a private CA), as `trust` says.
    pub fn new(ca_file: Option<&Path>, trust: Trust) -> Result<Connector, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        // A broken system bundle entry is skipped, not fatal: one bad file
        // must not take every account offline.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_error(path, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_error(path, e))?;
            if certs.is_empty() {
                return Err(TlsError::Pem {
                    path: path.to_path_buf(),
                    what: "no certificate in the file".into(),
                });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| pem_error(path, e))?;
            }
        }
        let ca = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Connector {
            trust,
            ca,
            configs: Arc::default(),
            no_resumption: Arc::default(),
            handshakes: Arc::default(),
        })
    }

    /// Counts handshakes in `counter` and times them in `seconds`, by
    /// kind (`full`, `resumed`).
    pub fn count_handshakes(&self, counter: IntCounterVec, seconds: HistogramVec) {
        let _ = self.handshakes.set((counter, seconds));
    }

    /// Runs the TLS handshake on `tcp` for `host:port`. Under TOFU, the
    /// first successful handshake records the server's key.
    pub async fn handshake(&self, tcp: TcpStream, host: &str, port: u16) -> Result<Stream, TlsError> {
        let server = format!("{host}:{port}");
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadName(host.to_string()))?;
        let recorded = match self.trust.mode {
            TrustMode::Tofu => self.trust.store.get(&server)?,
            _ => None,
        };
        let (required, check_ca) = match (self.trust.mode, &recorded) {
            (TrustMode::Ca, _) => (Vec::new(), true),
            (TrustMode::Pin, _) => (self.trust.pins.clone(), false),
            (TrustMode::CaAndPin, _) => (self.trust.pins.clone(), true),
            (TrustMode::Tofu, Some(record)) => (vec![record.required().map_err(TlsError::Certificate)?], false),
            (TrustMode::Tofu, None) => (Vec::new(), true),
        };
        // A first contact must see the certificate to record it: a fresh
        // verifier, and no resumption. Otherwise one configuration per
        // server and requirement, whose sessions resume.
        let first_contact = self.trust.mode == TrustMode::Tofu && recorded.is_none();
        let make_verifier = |required: Vec<Pin>| {
            Arc::new(PinningVerifier::new(
                server.clone(),
                self.trust.mode,
                required,
                check_ca.then(|| self.ca.clone()),
                provider().signature_verification_algorithms,
            ))
        };
        let pins: Vec<String> = required.iter().map(Pin::to_string).collect();
        let key = format!("{server} {:?} ca={check_ca} {}", self.trust.mode, pins.join(","));
        let resume = !first_contact && !self.no_resumption.lock().expect("resumption lock").contains(&key);
        let (config, verifier) = if !resume {
            let verifier = make_verifier(required);
            let mut config = PinningVerifier::client_config(&verifier)?;
            config.resumption = rustls::client::Resumption::disabled();
            (Arc::new(config), first_contact.then_some(verifier))
        } else {
            let mut configs = self.configs.lock().expect("config lock");
            let config = match configs.get(&key) {
                Some(config) => config.clone(),
                None => {
                    let config = Arc::new(PinningVerifier::client_config(&make_verifier(required))?);
                    configs.insert(key.clone(), config.clone());
                    config
                }
            };
            (config, None)
        };
        let started = std::time::Instant::now();
        let tls = match TlsConnector::from(config).connect(name, tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                let error = handshake_error(&server, &e);
                if resume {
                    if let TlsError::Handshake { host, reason } = error {
                        tracing::info!(server = %host, %reason, "a TLS handshake offering resumption failed; not resuming with this server again");
                        self.no_resumption.lock().expect("resumption lock").insert(key);
                        return Err(TlsError::Resumption { host, reason });
                    }
                }
                return Err(error);
            }
        };
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        if let Some((counter, seconds)) = self.handshakes.get() {
            let kind = if resumed { "resumed" } else { "full" };
            counter.with_label_values(&[kind]).inc();
            seconds.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
        }
        if let Some(verifier) = verifier {
            let presented = verifier.presented().expect("an accepted certificate was presented");
            let record = PinRecord {
                pin: presented.leaf.to_string(),
                issuer_pin: presented.issuer.as_ref().map(Pin::to_string),
                recorded: mail_builder::headers::date::Date::now().to_rfc822(),
                certificate_sha256: presented.certificate_sha256.clone(),
            };
            let in_force = self.trust.store.record_first(&server, record)?;
            // Two first contacts that saw different keys: one of them was
            // not talking to the real server.
            if in_force.pin != presented.leaf.to_string() {
                return Err(PinMismatch {
                    server,
                    seen: presented.leaf.to_string(),
                    pinned: in_force.pin,
                }
                .into());
            }
            tracing::info!(%server, pin = %presented.leaf, "first contact: recorded the server's key (trust on first use)");
        }
        Ok(Stream::Client(Box::new(tls)))
    }
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// Turns a handshake failure into an error that says what to do.
fn handshake_error(server: &str, e: &std::io::Error) -> TlsError {
    use rustls::CertificateError;
    let handshake = |reason: String| TlsError::Handshake {
        host: server.to_string(),
        reason,
    };
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return handshake(e.to_string());
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => match other.0.downcast_ref::<PinMismatch>() {
            Some(mismatch) => TlsError::PinMismatch(mismatch.clone()),
            None => handshake(other.to_string()),
        },
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => handshake(
            "the server's certificate is not signed by a trusted authority; if the provider uses a private CA, add it with ca_file, or pin its key (trust = \"pin\", see 'sealpost pin fetch')".into(),
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            handshake("the server's certificate is for a different host name; check the server name in the account's URL".into())
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            handshake("the server's certificate has expired".into())
        }
        other => handshake(other.to_string()),
    }
}
