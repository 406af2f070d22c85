//! In-process fakes for faults a real server will not produce on demand.
//! Used only for fault injection; everything else runs against the stack.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::stack::stack;

/// An SMTP server that behaves (STARTTLS with the stack's certificate,
/// accepts any AUTH, MAIL and RCPT) until the message data starts, then
/// drops the connection, as a provider that crashes or restarts would.
pub struct DyingUpstream {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl DyingUpstream {
    /// Starts it on a background thread, serving connections until the
    /// test process ends.
    pub fn start() -> DyingUpstream {
        let stack = stack();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&stack.server_cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&stack.server_key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let _ = serve(tcp, config);
                });
            }
        });
        DyingUpstream { port }
    }
}

fn serve(mut tcp: std::net::TcpStream, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    tcp.write_all(b"220 dying.test ESMTP\r\n")?;
    let mut reader = BufReader::new(tcp.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.trim().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            tcp.write_all(b"250-dying.test\r\n250 STARTTLS\r\n")?;
        } else if verb == "STARTTLS" {
            tcp.write_all(b"220 go ahead\r\n")?;
            break;
        } else {
            tcp.write_all(b"503 STARTTLS first\r\n")?;
        }
    }
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut pending = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        if std::io::Read::read(&mut tls, &mut byte)? == 0 {
            return Ok(());
        }
        pending.push(byte[0]);
        if !pending.ends_with(b"\n") {
            continue;
        }
        let verb = String::from_utf8_lossy(&pending).trim().to_ascii_uppercase();
        pending.clear();
        let reply: &[u8] = if verb.starts_with("EHLO") {
            b"250-dying.test\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n"
        } else if verb.starts_with("AUTH") {
            b"235 2.7.0 ok\r\n"
        } else if verb.starts_with("MAIL") || verb.starts_with("RCPT") || verb.starts_with("RSET") {
            b"250 2.0.0 ok\r\n"
        } else if verb.starts_with("DATA") || verb.starts_with("BDAT") {
            return Ok(()); // the crash: connection dropped, no reply
        } else {
            b"250 ok\r\n"
        };
        tls.write_all(reply)?;
        tls.flush()?;
    }
}
