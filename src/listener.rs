//! Listeners: accept connections and run a session for each until told to
//! stop, for any protocol. Owns the accept loop and the drain on
//! shutdown; knows nothing of what the sessions speak.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

use crate::tls::{LocalTls, Stream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How a listener's connections start.
#[derive(Debug, Clone, Copy)]
pub struct ListenerKind {
    /// TLS from the first byte (smtps, imaps).
    pub implicit_tls: bool,
    /// Bound to a loopback address: login may precede STARTTLS.
    pub loopback: bool,
}

/// The client's stream, ready for the session: plain, or with TLS
/// accepted first on an implicit-TLS listener (`None` when that handshake
/// fails, which is logged).
pub async fn client_stream(tcp: TcpStream, kind: ListenerKind, tls: &LocalTls) -> Option<Stream> {
    let _ = tcp.set_nodelay(true);
    if !kind.implicit_tls {
        return Some(Stream::Plain(tcp));
    }
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match tls.accept(tcp).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "client TLS handshake failed");
            None
        }
    }
}

/// A bound listener and how its connections start.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Implicit TLS or not, loopback or not.
    pub kind: ListenerKind,
}

/// Accepts on every listener until `shutdown` turns true, running
/// `session` for each connection, then waits for the running sessions to
/// finish.
pub async fn run<S, F>(listeners: Vec<Listener>, mut shutdown: watch::Receiver<bool>, session: S)
where
    S: Fn(TcpStream, ListenerKind) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut sessions = JoinSet::new();
    let mut accepting = JoinSet::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    for listener in listeners {
        let tx = conn_tx.clone();
        accepting.spawn(async move {
            loop {
                match listener.socket.accept().await {
                    Ok((tcp, _)) => {
                        if tx.send((tcp, listener.kind)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(conn_tx);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some((tcp, kind)) = conn_rx.recv() => {
                sessions.spawn(session(tcp, kind));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    accepting.abort_all();
    tracing::info!(sessions = sessions.len(), "stopped accepting; waiting for sessions to finish");
    while sessions.join_next().await.is_some() {}
}
