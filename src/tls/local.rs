//! The certificate of the local listeners: the user's own, or one
//! generated on first start and kept in `data_dir/tls` so that it stays the
//! same across restarts and upgrades (clients pin it after the first
//! "accept this certificate" dialog).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::{provider, sha256_fingerprint, TlsError};

/// The local TLS identity, ready to accept connections.
#[derive(Clone)]
pub struct LocalTls {
    /// Accepts TLS from mail clients.
    pub acceptor: TlsAcceptor,
    /// SHA-256 fingerprint of the leaf certificate, for the user to compare
    /// with what the client shows.
    pub fingerprint: String,
    /// The certificate file in use.
    pub cert_path: PathBuf,
}

/// Time allowed for a client's TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl LocalTls {
    /// Runs the TLS handshake of a mail client on `tcp` (implicit TLS or
    /// after STARTTLS), within 30 s.
    pub async fn accept(&self, tcp: tokio::net::TcpStream) -> std::io::Result<super::Stream> {
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the client's TLS handshake timed out"))??;
        Ok(super::Stream::Server(Box::new(tls)))
    }

    /// Loads `cert`/`key` when given, else the generated pair under
    /// `data_dir/tls`, generating it (ECDSA P-256, SAN localhost,
    /// 127.0.0.1, ::1) if it does not exist yet.
    pub fn load_or_generate(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<LocalTls, TlsError> {
        let (cert_path, key_path) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
            _ => {
                let dir = data_dir.join("tls");
                let pair = (dir.join("local-cert.pem"), dir.join("local-key.pem"));
                if !pair.0.exists() || !pair.1.exists() {
                    generate(&dir, &pair.0, &pair.1)?;
                }
                pair
            }
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| pem_error(&cert_path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_error(&cert_path, e))?;
        let leaf = chain.first().ok_or_else(|| TlsError::Pem {
            path: cert_path.clone(),
            what: "no certificate in the file".into(),
        })?;
        let fingerprint = sha256_fingerprint(leaf);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_error(&key_path, e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{} and {}: {e}", cert_path.display(), key_path.display())))?;
        Ok(LocalTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
            cert_path,
        })
    }
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Sealpost local proxy");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    crate::files::create_private_dir(dir).map_err(io(dir))?;
    crate::files::write_private_file(key_path, key.serialize_pem().as_bytes()).map_err(io(key_path))?;
    crate::files::write_private_file(cert_path, cert.pem().as_bytes()).map_err(io(cert_path))?;
    tracing::info!(cert = %cert_path.display(), "generated the local TLS certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalTls::load_or_generate(dir.path(), None, None).unwrap();
        let second = LocalTls::load_or_generate(dir.path(), None, None).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/local-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
