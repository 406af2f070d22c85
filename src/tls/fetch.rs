//! `sealpost pin fetch` and `pin accept`: connect to a server (STARTTLS
//! where the URL says so), and report the certificate chain it presents,
//! without trusting it. Nothing is sent but the protocol's own greeting
//! and STARTTLS; the connection is closed right after the handshake.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::pin::{Pin, TrustMode};
use super::verify::PinningVerifier;
use super::{provider, sha256_fingerprint, TlsError};
use crate::url::ServerUrl;

/// Which protocol's STARTTLS to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SMTP (`smtp://` STARTTLS, `smtps://` implicit).
    Smtp,
    /// IMAP (`imap://` STARTTLS, `imaps://` implicit).
    Imap,
}

/// A server to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    /// The protocol.
    pub protocol: Protocol,
    /// TLS from the first byte.
    pub implicit_tls: bool,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl FetchTarget {
    /// Parses `smtp://`, `smtps://`, `imap://` or `imaps://` URLs, with
    /// the usual default ports.
    pub fn parse(url: &str) -> Result<FetchTarget, String> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
        let (protocol, parsed) = if scheme.starts_with("imap") {
            (Protocol::Imap, ServerUrl::parse_imap(url)?)
        } else if scheme.starts_with("smtp") {
            (Protocol::Smtp, ServerUrl::parse_smtp(url)?)
        } else {
            return Err(format!("'{url}' is not a URL like smtps://host:465 or imaps://host:993"));
        };
        Ok(FetchTarget {
            protocol,
            implicit_tls: parsed.implicit_tls,
            host: parsed.host,
            port: parsed.port,
        })
    }

    /// `host:port`, as pins are recorded.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One certificate of a fetched chain, described for a person.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Validity, from.
    pub not_before: String,
    /// Validity, until.
    pub not_after: String,
    /// SHA-256 of the certificate.
    pub sha256: String,
    /// The SPKI pin.
    pub pin: Pin,
}

/// Connects, performs STARTTLS if needed and returns the chain the server
/// presents (leaf first). The handshake signature is verified (the server
/// holds the leaf's key); the chain itself is not judged.
pub async fn fetch_chain(target: &FetchTarget) -> Result<Vec<ChainEntry>, TlsError> {
    let server = target.server();
    let failed = |reason: String| TlsError::Handshake {
        host: server.clone(),
        reason,
    };
    let io = |e: std::io::Error| failed(e.to_string());
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let mut tcp = tokio::time::timeout(std::time::Duration::from_secs(30), connect)
        .await
        .map_err(|_| failed("no connection within 30 s".into()))?
        .map_err(io)?;
    if !target.implicit_tls {
        starttls(&mut tcp, target.protocol).await.map_err(failed)?;
    }
    // No CA and no pins: the verifier only records the chain (and checks
    // that the server signed the handshake with the leaf's key).
    let recorder = Arc::new(PinningVerifier::new(
        server.clone(),
        TrustMode::Pin,
        Vec::new(),
        None,
        provider().signature_verification_algorithms,
    ));
    let config = PinningVerifier::client_config(&recorder)?;
    let name = ServerName::try_from(target.host.clone()).map_err(|_| TlsError::BadName(target.host.clone()))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(io)?;
    let _ = tls.shutdown().await;
    let presented = recorder
        .presented()
        .ok_or_else(|| failed("the server presented no certificate".into()))?;
    presented.chain.iter().map(|der| describe(der)).collect()
}

fn describe(der: &CertificateDer<'_>) -> Result<ChainEntry, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Certificate(format!("unreadable certificate: {e}")))?;
    let time = |t: x509_parser::time::ASN1Time| t.to_rfc2822().unwrap_or_else(|_| t.to_string());
    Ok(ChainEntry {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        sha256: sha256_fingerprint(der),
        pin: Pin::of_certificate(der)?,
    })
}

/// Speaks just enough of the protocol to reach the TLS handshake.
async fn starttls(tcp: &mut TcpStream, protocol: Protocol) -> Result<(), String> {
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    let read_line = async |reader: &mut BufReader<&mut TcpStream>, line: &mut String| -> Result<(), String> {
        line.clear();
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_line(line))
            .await
            .map_err(|_| "the server did not answer within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    };
    match protocol {
        Protocol::Smtp => {
            // Multi-line replies end with "NNN " (space after the code).
            let reply = async |reader: &mut BufReader<&mut TcpStream>, line: &mut String| -> Result<String, String> {
                loop {
                    read_line(reader, line).await?;
                    if line.as_bytes().get(3) != Some(&b'-') {
                        return Ok(line.trim_end().to_string());
                    }
                }
            };
            let greeting = reply(&mut reader, &mut line).await?;
            if !greeting.starts_with("220") {
                return Err(format!("unexpected greeting: {greeting}"));
            }
            reader
                .get_mut()
                .write_all(b"EHLO sealpost.localhost\r\n")
                .await
                .map_err(|e| e.to_string())?;
            let ehlo = reply(&mut reader, &mut line).await?;
            if !ehlo.starts_with("250") {
                return Err(format!("EHLO refused: {ehlo}"));
            }
            reader.get_mut().write_all(b"STARTTLS\r\n").await.map_err(|e| e.to_string())?;
            let answer = reply(&mut reader, &mut line).await?;
            if !answer.starts_with("220") {
                return Err(format!("STARTTLS refused: {answer}"));
            }
        }
        Protocol::Imap => {
            read_line(&mut reader, &mut line).await?;
            if !line.starts_with("* OK") {
                return Err(format!("unexpected greeting: {}", line.trim_end()));
            }
            reader.get_mut().write_all(b"S1 STARTTLS\r\n").await.map_err(|e| e.to_string())?;
            loop {
                read_line(&mut reader, &mut line).await?;
                if let Some(status) = line.strip_prefix("S1 ") {
                    if !status.starts_with("OK") {
                        return Err(format!("STARTTLS refused: {}", status.trim_end()));
                    }
                    break;
                }
            }
        }
    }
    if !reader.buffer().is_empty() {
        return Err("the server sent data before the TLS handshake".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_both_protocols() {
        let t = FetchTarget::parse("imaps://mail.example.com").unwrap();
        assert_eq!((t.protocol, t.implicit_tls, t.port), (Protocol::Imap, true, 993));
        assert_eq!(t.server(), "mail.example.com:993");
        let t = FetchTarget::parse("smtp://[::1]:2525").unwrap();
        assert_eq!(
            (t.protocol, t.implicit_tls, t.host.as_str(), t.port),
            (Protocol::Smtp, false, "::1", 2525)
        );
        assert!(FetchTarget::parse("http://x").is_err());
        assert!(FetchTarget::parse("mail.example.com:993").is_err());
    }
}
