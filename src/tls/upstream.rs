//! Verified TLS to upstream servers: the system's trust anchors plus an
//! account's `ca_file`, host name always checked.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{provider, Stream, TlsError};

/// Makes verified TLS connections for one account.
#[derive(Clone)]
pub struct Connector {
    inner: TlsConnector,
}

impl Connector {
    /// Trusts the system roots and, if given, every certificate in
    /// `ca_file` (for providers with a private CA).
    pub fn new(ca_file: Option<&Path>) -> Result<Connector, TlsError> {
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
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector {
            inner: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake on `tcp` for `host` (`port` only names the
    /// server in errors).
    pub async fn handshake(&self, tcp: TcpStream, host: &str, port: u16) -> Result<Stream, TlsError> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadName(host.to_string()))?;
        match self.inner.connect(name, tcp).await {
            Ok(tls) => Ok(Stream::Client(Box::new(tls))),
            Err(e) => Err(TlsError::Handshake {
                host: format!("{host}:{port}"),
                reason: explain(&e),
            }),
        }
    }
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// Turns a handshake failure into a sentence with a hint.
fn explain(e: &std::io::Error) -> String {
    use rustls::CertificateError;
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted authority; if the provider uses a private CA, add it with ca_file".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate is for a different host name; check the server name in the account's URL".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        other => other.to_string(),
    }
}
