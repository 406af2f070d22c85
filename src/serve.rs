//! `sealpost serve`: make every account ready (keys unlocked), bind every
//! configured listener, and run the proxies until SIGINT or SIGTERM.
//! Anything that cannot work is refused before the first client connects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::account::{AccountError, Accounts};
use crate::config::Config;
use crate::discovery::{Discovery, DiscoveryError};
use crate::imap::indexer::Indexer;
use crate::imap::served::Served;
use crate::imap::sidefetch::SidePool;
use crate::imap::upstream::{Dialer, TlsDialer};
use crate::learn::Learner;
use crate::listener::{Listener, ListenerKind};
use crate::metrics::Metrics;
use crate::pgp::{KeyError, Keystore, LiveKeystore, PassphraseSource};
use crate::store::{MessageCache, SearchIndex, StoreError};
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
    /// Key discovery is misconfigured.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// An account's decrypted-message cache cannot be opened.
    #[error(transparent)]
    Cache(#[from] StoreError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The bound addresses could not be written (`--bound-addresses`).
    #[error("cannot write the bound addresses to {path}: {source}")]
    BoundAddresses {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// How many shown messages per account the IMAP proxy remembers, to
/// restore their ciphertext when a client uploads one back (32 bytes of
/// digest and the message's place each).
const SERVED_MEMORY: usize = 50_000;

/// Runs until a signal, then shuts down as [`crate::shutdown`] says.
/// Blocks the calling thread. With `bound_addresses`, the listeners'
/// addresses are written there once they are bound.
pub fn run(config: &Config, passphrases: &PassphraseSource, bound_addresses: Option<&Path>) -> Result<(), ServeError> {
    if config.accounts.is_empty() {
        return Err(ServeError::NoAccounts);
    }
    let keystore = Arc::new(LiveKeystore::new(config.data_dir.clone(), Keystore::open(&config.data_dir)?));
    let accounts = Arc::new(Accounts::load(config, &keystore.snapshot(), passphrases)?);
    let tls = LocalTls::load_or_generate(
        &config.data_dir,
        config.listen.tls_cert.as_deref(),
        config.listen.tls_key.as_deref(),
    )?;
    let discovery = Some(Discovery::new(&config.keys, &config.data_dir)?).filter(Discovery::is_enabled);
    let mut caches = HashMap::new();
    let mut served = HashMap::new();
    let mut indexes = HashMap::new();
    for account in accounts.iter().filter(|a| a.imap.is_some()) {
        let dir = SearchIndex::dir_for(&config.data_dir, &account.login);
        indexes.insert(account.login.clone(), Arc::new(SearchIndex::open(&dir, &account.key)?));
        let dir = config.data_dir.join("cache").join(crate::store::account_dir_name(&account.login));
        caches.insert(
            account.login.clone(),
            Arc::new(MessageCache::open(&dir, &account.key, config.imap.cache_size)?),
        );
        served.insert(account.login.clone(), Arc::new(Served::new(SERVED_MEMORY)));
    }
    // Bound before the runtime starts, so a taken port is reported as
    // the configuration key to change.
    let mut smtp_sockets = vec![(bind(config.listen.smtp, "listen.smtp")?, false)];
    if let Some(addr) = config.listen.smtps {
        smtp_sockets.push((bind(addr, "listen.smtps")?, true));
    }
    let mut imap_sockets = vec![(bind(config.listen.imap, "listen.imap")?, false)];
    if let Some(addr) = config.listen.imaps {
        imap_sockets.push((bind(addr, "listen.imaps")?, true));
    }
    let metrics_socket = config.listen.metrics.map(|addr| bind(addr, "listen.metrics")).transpose()?;
    if let Some(path) = bound_addresses {
        let proxies = [("smtp", &smtp_sockets), ("imap", &imap_sockets)];
        let bound = proxies
            .iter()
            .flat_map(|(protocol, sockets)| {
                sockets
                    .iter()
                    .map(move |(socket, tls)| (if *tls { format!("{protocol}s") } else { protocol.to_string() }, socket))
            })
            .chain(metrics_socket.iter().map(|socket| ("metrics".to_string(), socket)));
        write_bound_addresses(path, bound).map_err(|source| ServeError::BoundAddresses {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let served = runtime.block_on(async {
        let smtp_listeners = listeners(smtp_sockets, "SMTP", config.listen.max_connections)?;
        let imap_listeners = listeners(imap_sockets, "IMAP", config.listen.max_connections)?;
        let metrics = Arc::new(Metrics::new());
        for account in accounts.iter() {
            account.connector.count_handshakes(metrics.upstream_tls_handshakes.clone());
        }
        let (trigger, shutdown) = crate::shutdown::channel();
        if let Some(socket) = metrics_socket {
            let addr = socket.local_addr().map_err(ServeError::Runtime)?;
            let socket = tokio::net::TcpListener::from_std(socket).map_err(ServeError::Runtime)?;
            tracing::info!(%addr, "metrics at /metrics, health at /healthz and /readyz");
            tokio::spawn(crate::metrics::serve(socket, metrics.clone(), shutdown.clone()));
        }
        tracing::info!(fingerprint = %tls.fingerprint, accounts = accounts.len(), "local certificate SHA-256");
        let learner = Arc::new(Learner::new(keystore.clone(), &config.data_dir, Some(metrics.clone())));
        let smtp = Arc::new(crate::smtp::session::Shared {
            limits: config.smtp.clone(),
            hostname: config.listen.hostname.clone(),
            keystore: keystore.clone(),
            discovery: discovery.clone(),
            learner: learner.clone(),
            accounts: accounts.clone(),
            tls: tls.clone(),
            metrics: metrics.clone(),
            spool_dir: config.data_dir.join("spool"),
        });
        let dialer: Arc<dyn Dialer> = Arc::new(TlsDialer);
        let side_pools = accounts
            .iter()
            .filter(|a| a.imap.is_some())
            .map(|a| {
                let pool = SidePool::new(
                    a.clone(),
                    dialer.clone(),
                    config.imap.side_connections,
                    config.imap.max_message_size,
                    metrics.clone(),
                );
                (a.login.clone(), pool)
            })
            .collect();
        let indexers = indexes
            .iter()
            .filter_map(|(login, index)| {
                let account = accounts.find(login)?;
                let indexer = Indexer::new(
                    account,
                    dialer.clone(),
                    index.clone(),
                    keystore.clone(),
                    metrics.clone(),
                    config.imap.max_message_size,
                );
                Some((login.clone(), indexer))
            })
            .collect();
        let imap = Arc::new(crate::imap::state::Shared {
            limits: config.imap.clone(),
            side_pools,
            dialer,
            keystore,
            learner,
            accounts,
            caches,
            indexes,
            indexers,
            served,
            tls,
            metrics,
            spool_dir: config.data_dir.join("spool"),
        });
        let grace = Duration::from_secs(config.listen.shutdown_grace);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "stopping: no new connections; open sessions may finish"
            );
            trigger.run(grace).await;
        });
        tokio::join!(
            crate::listener::run(smtp_listeners, shutdown.clone(), smtp),
            crate::listener::run(imap_listeners, shutdown, imap),
        );
        tracing::info!("stopped");
        Ok(())
    });
    // Background work (the metrics endpoint, a decryption nobody waits
    // for any more) must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Async listeners for bound sockets (`true`: implicit TLS).
fn listeners(sockets: Vec<(std::net::TcpListener, bool)>, protocol: &str, max_connections: usize) -> Result<Vec<Listener>, ServeError> {
    let mut listeners = Vec::new();
    for (socket, implicit_tls) in sockets {
        let addr = socket.local_addr().map_err(ServeError::Runtime)?;
        listeners.push(Listener {
            socket: tokio::net::TcpListener::from_std(socket).map_err(ServeError::Runtime)?,
            kind: ListenerKind {
                implicit_tls,
                loopback: addr.ip().is_loopback(),
            },
            max_connections,
        });
        tracing::info!(%addr, implicit_tls, "{protocol} listener ready");
    }
    Ok(listeners)
}

/// Writes `name = "address"` lines to `path` (replaced whole, so a
/// reader never sees half of it).
fn write_bound_addresses<'a>(path: &Path, bound: impl Iterator<Item = (String, &'a std::net::TcpListener)>) -> std::io::Result<()> {
    let mut text = String::new();
    for (name, socket) in bound {
        text.push_str(&format!("{name} = \"{}\"\n", socket.local_addr()?));
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
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
