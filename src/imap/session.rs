//! One client connection from accept to close: the login phase
//! ([`super::op::login`]: the proxy speaks IMAP itself until the client
//! logs in, then logs in at the account's server with the same
//! credentials), then the relay of both directions ([`super::relay`]).
//! Also how a listener turns a connection away when it is full.

use std::sync::Arc;

use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::op::login::{login_phase, Client, ClientStream, LoggedIn};
use super::relay::{self, Ends};
use super::state::{SessionError, Shared};
use crate::listener::{client_stream, turn_away, ActiveSession, ListenerKind, Service};
use crate::shutdown::Shutdown;

impl Service for Shared {
    const PROTOCOL: &'static str = "imap";

    async fn serve(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
        handle(self, tcp, kind, shutdown).await
    }

    async fn refuse(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind) {
        self.metrics.connections_refused.with_label_values(&["imap"]).inc();
        tracing::warn!("IMAP connection refused: listen.max_connections reached");
        let reply = b"* BYE [LIMIT] Sealpost: too many open connections (listen.max_connections); try again later\r\n";
        turn_away(tcp, kind, &self.tls, reply).await;
    }
}

/// Serves one client connection to its end, or until `shutdown` closes
/// sessions (the client then hears `* BYE` once no command of its is in
/// flight but IDLE).
pub async fn handle(shared: Arc<Shared>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
    shared.metrics.imap_sessions.inc();
    let _active = ActiveSession::new(shared.metrics.sessions_active.with_label_values(&["imap"]));
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let Some(stream) = client_stream(tcp, kind, &shared.tls).await else {
        return;
    };
    let result = serve_client(&shared, stream, kind.loopback, shutdown).await;
    match result {
        Ok(()) => tracing::debug!(%peer, "IMAP session closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "IMAP session ended"),
    }
}

/// Serves a client on any stream (`loopback`: it may log in without TLS)
/// until it logs out, either side closes or `shutdown` closes the session:
/// the login phase, then the relay.
pub async fn serve_client<S: ClientStream>(
    shared: &Arc<Shared>,
    stream: S,
    loopback: bool,
    shutdown: Shutdown,
) -> Result<(), SessionError> {
    let client = Client::new(stream, loopback, shutdown);
    let Some((client, logged_in)) = login_phase(shared, client).await? else {
        return Ok(());
    };
    let LoggedIn {
        account,
        upstream,
        credentials,
    } = logged_in;
    let (client_reader, client_writer, shutdown) = client.into_halves();
    let literal_plus = upstream.has("LITERAL+");
    let esearch = upstream.has("ESEARCH");
    let (upstream_reader, upstream_writer) = tokio::io::split(upstream.conn);
    let ends = Ends {
        client_reader,
        client_writer,
        upstream_reader: Box::new(BufReader::new(upstream_reader)),
        upstream_writer: Box::new(upstream_writer),
        literal_plus,
        esearch,
    };
    relay::run(shared, ends, account, credentials, shutdown).await
}
