//! Listeners: accept connections and run a session for each until told to
//! stop.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::session::{handle, ListenerKind, Shared};

/// A bound listener and how its connections start.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Implicit TLS or not, loopback or not.
    pub kind: ListenerKind,
}

/// Accepts on every listener until `shutdown` turns true, then waits for
/// the running sessions to finish.
pub async fn run(shared: Arc<Shared>, listeners: Vec<Listener>, mut shutdown: watch::Receiver<bool>) {
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
                sessions.spawn(handle(shared.clone(), tcp, kind));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    accepting.abort_all();
    tracing::info!(sessions = sessions.len(), "stopped accepting; waiting for sessions to finish");
    while sessions.join_next().await.is_some() {}
}
