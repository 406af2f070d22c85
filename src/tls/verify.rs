//! The server-certificate verifier behind every upstream connection: CA
//! checking, pinning, or both, with TOFU. Handshake signatures are always
//! verified with rustls's own algorithms; only the question "is this the
//! right key?" changes with the trust mode.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use super::pin::{Pin, TrustMode};
use super::sha256_fingerprint;

/// A pinned server presented another key.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{server} presented an unexpected key (seen {seen}, pinned {pinned}); if the provider rotated keys, run 'sealpost pin accept {server}'"
)]
pub struct PinMismatch {
    /// host:port.
    pub server: String,
    /// The leaf key's pin as presented.
    pub seen: String,
    /// What was required (several pins joined by " or ").
    pub pinned: String,
}

/// What the chain presented on a successful handshake.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The leaf key's pin.
    pub leaf: Pin,
    /// The issuing certificate's key pin, if the server sent one.
    pub issuer: Option<Pin>,
    /// SHA-256 fingerprint of the leaf certificate.
    pub certificate_sha256: String,
    /// The whole chain as sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

/// Verifies one server (`server` is host:port) under one trust mode.
#[derive(Debug)]
pub(crate) struct PinningVerifier {
    server: String,
    mode: TrustMode,
    /// Pins that must match: configured ones, or the TOFU record.
    required: Vec<Pin>,
    /// The CA check, when the mode asks for it.
    ca: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    presented: Mutex<Option<Presented>>,
}

impl PinningVerifier {
    /// `ca` is consulted when given; `required` pins when not empty. The
    /// connector decides both from the trust mode and the pin store; with
    /// neither, the verifier only records what the server presents (for
    /// `sealpost pin fetch`), still checking the handshake signature.
    pub(crate) fn new(
        server: String,
        mode: TrustMode,
        required: Vec<Pin>,
        ca: Option<Arc<WebPkiServerVerifier>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> PinningVerifier {
        PinningVerifier {
            server,
            mode,
            required,
            ca,
            algorithms,
            presented: Mutex::new(None),
        }
    }

    /// A client configuration that authenticates servers with `verifier`
    /// (and only with it).
    pub(crate) fn client_config(verifier: &Arc<PinningVerifier>) -> Result<rustls::ClientConfig, super::TlsError> {
        Ok(rustls::ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| super::TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth())
    }

    /// What the server presented, once the certificate was accepted.
    pub(crate) fn presented(&self) -> Option<Presented> {
        self.presented.lock().expect("not poisoned").clone()
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let unreadable = |_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let leaf = Pin::of_certificate(end_entity).map_err(unreadable)?;
        let issuer = intermediates
            .first()
            .map(|c| Pin::of_certificate(c))
            .transpose()
            .map_err(unreadable)?;
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if !self.required.is_empty() {
            // Configured pins may name any key of the chain (RFC 7469), so
            // a user can pin a CA key; the TOFU record names the leaf only.
            let chain_matches = match self.mode {
                TrustMode::Tofu => self.required.contains(&leaf),
                _ => {
                    let mut chain = vec![leaf.clone()];
                    for cert in intermediates {
                        chain.push(Pin::of_certificate(cert).map_err(unreadable)?);
                    }
                    chain.iter().any(|p| self.required.contains(p))
                }
            };
            if !chain_matches {
                let mismatch = PinMismatch {
                    server: self.server.clone(),
                    seen: leaf.to_string(),
                    pinned: self.required.iter().map(Pin::to_string).collect::<Vec<_>>().join(" or "),
                };
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    mismatch,
                )))));
            }
        }
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.presented.lock().expect("not poisoned") = Some(Presented {
            leaf,
            issuer,
            certificate_sha256: sha256_fingerprint(end_entity),
            chain,
        });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
