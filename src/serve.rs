//! `sealpost serve`: make every account ready (keys unlocked), bind every
//! configured listener, and run the proxies until SIGINT or SIGTERM.
//! Anything that cannot work is refused before the first client connects.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::account::{AccountError, Accounts};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pgp::{KeyError, Keystore, PassphraseSource};
use crate::smtp::server::Listener;
use crate::smtp::session::{ListenerKind, Shared};
use crate::tls::{LocalTls, TlsError};

/// Why the proxies could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Nothing to proxy for.
    #[error("no [[account]] is configured; see config/sealpost.example.toml")]
    NoAccounts,
    /// The key store could not be opened.
    #[error(transparent)]
    Keystore(#[from] KeyError),
    /// An account cannot be used (key, URL, trust anchors).
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The local certificate is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener address is taken or not allowed.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The configuration key it came from.
        key: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs until a signal. Blocks the calling thread.
pub fn run(config: &Config, passphrases: &PassphraseSource) -> Result<(), ServeError> {
    if config.accounts.is_empty() {
        return Err(ServeError::NoAccounts);
    }
    let keystore = Keystore::open(&config.data_dir)?;
    let accounts = Accounts::load(config, &keystore, passphrases)?;
    let tls = LocalTls::load_or_generate(&config.data_dir, config.listen.tls_cert.as_deref(), config.listen.tls_key.as_deref())?;
    // Bound before the runtime starts, so a taken port is reported as
    // the configuration key to change.
    let mut sockets = vec![(bind(config.listen.smtp, "listen.smtp")?, false)];
    if let Some(addr) = config.listen.smtps {
        sockets.push((bind(addr, "listen.smtps")?, true));
    }
    let metrics_socket = config.listen.metrics.map(|addr| bind(addr, "listen.metrics")).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for (socket, implicit_tls) in sockets {
            let addr = socket.local_addr().map_err(ServeError::Runtime)?;
            listeners.push(Listener {
                socket: tokio::net::TcpListener::from_std(socket).map_err(ServeError::Runtime)?,
                kind: ListenerKind {
                    implicit_tls,
                    loopback: addr.ip().is_loopback(),
                },
            });
            tracing::info!(%addr, implicit_tls, "SMTP listener ready");
        }
        let metrics = Arc::new(Metrics::new());
        if let Some(socket) = metrics_socket {
            let addr = socket.local_addr().map_err(ServeError::Runtime)?;
            let socket = tokio::net::TcpListener::from_std(socket).map_err(ServeError::Runtime)?;
            tracing::info!(%addr, "metrics at /metrics");
            tokio::spawn(crate::metrics::serve(socket, metrics.clone()));
        }
        tracing::info!(fingerprint = %tls.fingerprint, accounts = accounts.len(), "local certificate SHA-256");
        let shared = Arc::new(Shared {
            limits: config.smtp.clone(),
            hostname: config.listen.hostname.clone(),
            keystore,
            accounts,
            tls,
            metrics,
            spool_dir: config.data_dir.join("spool"),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        crate::smtp::server::run(shared, listeners, stopped).await;
        Ok(())
    })
}

fn bind(addr: SocketAddr, key: &'static str) -> Result<std::net::TcpListener, ServeError> {
    let socket = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, key, source })?;
    socket.set_nonblocking(true).map_err(ServeError::Runtime)?;
    Ok(socket)
}

async fn wait_for_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
