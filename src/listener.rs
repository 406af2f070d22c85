//! Listeners: accept connections and run a session for each until told to
//! stop, for any protocol. Owns the accept loop, the per-listener cap on
//! open connections and the drain on shutdown; knows nothing of what the
//! sessions speak (a [`Service`] says that).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::shutdown::{Phase, Shutdown};
use crate::tls::{LocalTls, Stream};

/// How long a connection over the cap may take to hear its refusal (the
/// TLS handshake on an implicit-TLS listener included).
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Writes `reply` to a connection the listener turns away (after the TLS
/// handshake on an implicit-TLS listener) and closes it.
pub async fn turn_away(tcp: TcpStream, kind: ListenerKind, tls: &LocalTls, reply: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let Some(mut stream) = client_stream(tcp, kind, tls).await else {
        return;
    };
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
}

/// A bound listener and how its connections start.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Implicit TLS or not, loopback or not.
    pub kind: ListenerKind,
    /// How many connections may be open at once; more are refused.
    pub max_connections: usize,
}

/// A protocol the listeners serve.
pub trait Service: Send + Sync + 'static {
    /// The protocol's name in logs (`smtp`, `imap`).
    const PROTOCOL: &'static str;

    /// Serves one connection to its end, closing it when `shutdown`
    /// reaches [`Phase::Closing`].
    fn serve(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) -> impl Future<Output = ()> + Send;

    /// Turns away a connection over the listener's cap, saying why in the
    /// protocol's own words.
    fn refuse(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind) -> impl Future<Output = ()> + Send;
}

/// The id of the next session, unique in this process.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Names the session being served, for the log: its account and the
/// server it reaches (the listener's span has the id and protocol).
pub fn record_session(account: &str, upstream: &str) {
    let span = tracing::Span::current();
    span.record("account", account);
    span.record("upstream", upstream);
}

/// Counts a session as open until dropped.
pub struct ActiveSession(prometheus::IntGauge);

impl ActiveSession {
    /// Counts one more session in `gauge`.
    pub fn new(gauge: prometheus::IntGauge) -> ActiveSession {
        gauge.inc();
        ActiveSession(gauge)
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An accepted connection, with its place under the cap (`None`: over it).
struct Accepted {
    tcp: TcpStream,
    kind: ListenerKind,
    permit: Option<OwnedSemaphorePermit>,
}

/// Accepts on every listener until `shutdown` starts draining, running
/// the latest `service` for each connection (a reload replaces it; a
/// session keeps the one it started with), then waits for the open
/// sessions to end (dropping those still open when the shutdown reaches
/// [`Phase::Abort`]).
pub async fn run<S: Service>(listeners: Vec<Listener>, shutdown: Shutdown, service: tokio::sync::watch::Receiver<Arc<S>>) {
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    let mut accepting = JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept(listener, conn_tx.clone(), shutdown.clone()));
    }
    drop(conn_tx);
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn_rx.recv() => {
                // None: every accept loop has stopped (draining).
                let Some(Accepted { tcp, kind, permit }) = accepted else { break };
                let service = service.borrow().clone();
                let shutdown = shutdown.clone();
                // Every line a session logs carries its id and protocol, and
                // once known its account and upstream (recorded by the
                // session), so that one session's lines can be grepped.
                let span = tracing::info_span!(
                    "session",
                    id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                    protocol = S::PROTOCOL,
                    account = tracing::field::Empty,
                    upstream = tracing::field::Empty,
                );
                sessions.spawn(async move {
                    match permit {
                        Some(permit) => {
                            service.serve(tcp, kind, shutdown).await;
                            drop(permit);
                        }
                        None => {
                            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, service.refuse(tcp, kind)).await;
                        }
                    }
                }.instrument(span));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    tracing::info!(sessions = sessions.len(), "stopped accepting; waiting for sessions to finish");
    let mut abort = shutdown;
    loop {
        tokio::select! {
            joined = sessions.join_next() => if joined.is_none() { break },
            _ = abort.reached(Phase::Abort) => {
                tracing::warn!(sessions = sessions.len(), "dropping sessions that did not close in time");
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
                break;
            }
        }
    }
}

/// One listener's accept loop: hands each connection on with a permit
/// while there is one, until the shutdown starts draining (the socket is
/// closed then, so new connections are refused by the system).
async fn accept(listener: Listener, to_sessions: tokio::sync::mpsc::Sender<Accepted>, mut shutdown: Shutdown) {
    let open = Arc::new(Semaphore::new(listener.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.reached(Phase::Draining) => return,
            accepted = listener.socket.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                let permit = open.clone().try_acquire_owned().ok();
                let accepted = Accepted {
                    tcp,
                    kind: listener.kind,
                    permit,
                };
                if to_sessions.send(accepted).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead
                // of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
