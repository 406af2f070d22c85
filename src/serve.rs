//! `sealpost serve`: make every account ready (keys unlocked), bind every
//! configured listener, and run the proxies until SIGINT or SIGTERM.
//! Anything that cannot work is refused before the first client connects.
//! SIGHUP builds the services again from the configuration file
//! ([`crate::reload`] says what may change); new sessions get them, open
//! ones finish on those they started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::account::{Account, AccountError, Accounts};
use crate::config::{Config, Loaded, SearchMode};
use crate::discovery::{Discovery, DiscoveryError};
use crate::imap::indexer::Indexer;
use crate::imap::served::Served;
use crate::imap::sidefetch::SidePool;
use crate::imap::upstream::{Dialer, TlsDialer};
use crate::learn::Learner;
use crate::listener::{Listener, ListenerKind};
use crate::metrics::Metrics;
use crate::pgp::{KeyError, Keystore, LiveKeystore, PassphraseSource};
use crate::pidfile::PidFile;
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
    /// The pid file could not be written in the data directory.
    #[error("cannot write the pid file in {}: {source}; data_dir must be writable", path.display())]
    PidFile {
        /// The data directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
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

/// What every generation of the services shares: made once at start and
/// kept across reloads.
struct Base {
    keystore: Arc<LiveKeystore>,
    tls: LocalTls,
    metrics: Arc<Metrics>,
    learner: Arc<Learner>,
    dialer: Arc<dyn Dialer>,
}

/// The services built from one configuration. New sessions get the
/// latest generation; a session keeps the one it started with.
struct Generation {
    /// The configuration it was built from.
    config: Config,
    smtp: Arc<crate::smtp::session::Shared>,
    imap: Arc<crate::imap::state::Shared>,
}

/// Runs until a signal, then shuts down as [`crate::shutdown`] says;
/// SIGHUP reloads the configuration as [`crate::reload`] says. Blocks
/// the calling thread. With `bound_addresses`, the listeners' addresses
/// are written there once they are bound.
pub fn run(loaded: &Loaded, passphrases: &PassphraseSource, bound_addresses: Option<&Path>) -> Result<(), ServeError> {
    let config = &loaded.config;
    let keystore = Arc::new(LiveKeystore::new(config.data_dir.clone(), Keystore::open(&config.data_dir)?));
    let tls = LocalTls::load_or_generate(
        &config.data_dir,
        config.listen.tls_cert.as_deref(),
        config.listen.tls_key.as_deref(),
    )?;
    let metrics = Arc::new(Metrics::new(config.metrics.per_account));
    let base = Arc::new(Base {
        learner: Arc::new(Learner::new(keystore.clone(), &config.data_dir, Some(metrics.clone()))),
        keystore,
        tls,
        metrics,
        dialer: Arc::new(TlsDialer),
    });
    let first = Arc::new(build(&base, config.clone(), passphrases, None)?);
    // Bound before the runtime starts, so a taken port is reported as
    // the configuration key to change.
    let sockets = Sockets::bind(&config.listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    // The signal handlers are in place before anyone learns where this
    // process listens or what its pid is: an early SIGHUP must reload,
    // not kill it (the default action). The pid file comes before the
    // addresses, so that whoever sees the addresses finds the pid.
    let signals = {
        let _runtime = runtime.enter();
        Signals::new().map_err(ServeError::Runtime)?
    };
    let _pid_file = PidFile::write(&config.data_dir).map_err(|source| ServeError::PidFile {
        path: config.data_dir.clone(),
        source,
    })?;
    if let Some(path) = bound_addresses {
        sockets.report(path)?;
    }
    let accounts = config.accounts.len();
    let served = runtime.block_on(proxy(sockets, &config.listen, base, first, loaded.file.clone(), signals, accounts));
    // Background work (the metrics endpoint, a decryption nobody waits
    // for any more) must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Serves on `sockets` with the services of `first`, and of each reload
/// after it, until SIGTERM or SIGINT; then shuts down as
/// [`crate::shutdown`] says.
async fn proxy(
    sockets: Sockets,
    listen: &crate::config::ListenConfig,
    base: Arc<Base>,
    first: Arc<Generation>,
    file: Option<std::path::PathBuf>,
    signals: Signals,
    accounts: usize,
) -> Result<(), ServeError> {
    let smtp_listeners = listeners(sockets.smtp, "SMTP", listen.max_connections)?;
    let imap_listeners = listeners(sockets.imap, "IMAP", listen.max_connections)?;
    let (trigger, shutdown) = crate::shutdown::channel();
    if let Some(socket) = sockets.metrics {
        let addr = socket.local_addr().map_err(ServeError::Runtime)?;
        let socket = tokio::net::TcpListener::from_std(socket).map_err(ServeError::Runtime)?;
        tracing::info!(%addr, "metrics at /metrics, health at /healthz and /readyz");
        tokio::spawn(crate::metrics::serve(socket, base.metrics.clone(), shutdown.clone()));
    }
    tracing::info!(fingerprint = %base.tls.fingerprint, accounts, "local certificate SHA-256");
    let (smtp_tx, smtp) = watch::channel(first.smtp.clone());
    let (imap_tx, imap) = watch::channel(first.imap.clone());
    let grace = Duration::from_secs(listen.shutdown_grace);
    let reloader = Reloader {
        base,
        file,
        current: first,
        smtp: smtp_tx,
        imap: imap_tx,
    };
    tokio::spawn(async move {
        signals.serve(reloader).await;
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
}

/// Builds the services for `config`: its accounts ready (keys unlocked,
/// or taken from `previous`), and each IMAP account's state
/// ([`imap_state`]).
fn build(base: &Base, config: Config, passphrases: &PassphraseSource, previous: Option<&Generation>) -> Result<Generation, ServeError> {
    if config.accounts.is_empty() {
        return Err(ServeError::NoAccounts);
    }
    let before = previous.map(|p| &p.imap);
    let accounts = Arc::new(Accounts::reload(
        &config,
        &base.keystore.snapshot(),
        passphrases,
        before.map(|b| &*b.accounts),
    )?);
    for account in accounts.iter() {
        account.connector.count_handshakes(
            base.metrics.upstream_tls_handshakes.clone(),
            base.metrics.upstream_tls_handshake_seconds.clone(),
        );
    }
    let discovery = Some(Discovery::new(&config.keys, &config.data_dir)?).filter(Discovery::is_enabled);
    let (mut caches, mut served, mut indexes) = (HashMap::new(), HashMap::new(), HashMap::new());
    let (mut side_pools, mut indexers) = (HashMap::new(), HashMap::new());
    for account in accounts.iter().filter(|a| a.imap.is_some()) {
        let state = imap_state(base, &config, account, previous)?;
        let login = account.login.clone();
        caches.insert(login.clone(), state.cache);
        served.insert(login.clone(), state.served);
        indexes.insert(login.clone(), state.index);
        side_pools.insert(login.clone(), state.side_pool);
        indexers.insert(login, state.indexer);
    }
    let held: u64 = caches.values().map(|c: &Arc<MessageCache>| c.len_bytes()).sum();
    base.metrics.imap_cache_bytes.set(i64::try_from(held).unwrap_or(i64::MAX));
    let gone = before
        .iter()
        .flat_map(|b| b.indexers.keys())
        .filter(|login| !indexers.contains_key(*login));
    for login in gone {
        tracing::warn!(account = %login, "the account has no IMAP server in the configuration any more: its background indexer, if started, runs until Sealpost restarts");
    }
    let smtp = Arc::new(crate::smtp::session::Shared {
        limits: config.smtp.clone(),
        hostname: config.listen.hostname.clone(),
        keystore: base.keystore.clone(),
        discovery,
        learner: base.learner.clone(),
        accounts: accounts.clone(),
        tls: base.tls.clone(),
        metrics: base.metrics.clone(),
        spool_dir: config.data_dir.join("spool"),
    });
    let imap = Arc::new(crate::imap::state::Shared {
        limits: config.imap.clone(),
        side_pools,
        dialer: base.dialer.clone(),
        keystore: base.keystore.clone(),
        learner: base.learner.clone(),
        accounts,
        caches,
        indexes,
        indexers,
        served,
        tls: base.tls.clone(),
        metrics: base.metrics.clone(),
        spool_dir: config.data_dir.join("spool"),
    });
    Ok(Generation { config, smtp, imap })
}

/// One IMAP account's state beside its settings.
struct ImapState {
    cache: Arc<MessageCache>,
    served: Arc<Served>,
    index: Arc<SearchIndex>,
    side_pool: Arc<SidePool>,
    indexer: Arc<Indexer>,
}

/// The state of `account`: what belongs to its data (cache, search index,
/// the messages shown, the background indexer) carried over from
/// `previous` when it had the account, so that a reload opens nothing
/// twice; the side connections anew when its server settings changed.
fn imap_state(base: &Base, config: &Config, account: &Arc<Account>, previous: Option<&Generation>) -> Result<ImapState, ServeError> {
    let login = &account.login;
    let before = previous.map(|p| &p.imap);
    let index = match before.and_then(|b| b.indexes.get(login)) {
        Some(index) => index.clone(),
        None => {
            let index = SearchIndex::open(&SearchIndex::dir_for(&config.data_dir, login), &account.key)?;
            // Searches without the server's help need every message whole.
            if config.imap.search == SearchMode::Local {
                match index.forget_plaintext_headers() {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(account = %login, messages = n, "imap.search is local: plaintext messages indexed by their header are indexed whole again")
                    }
                    Err(e) => {
                        tracing::warn!(account = %login, error = %e, "cannot drop the plaintext headers imap.search = hybrid indexed")
                    }
                }
            }
            Arc::new(index)
        }
    };
    let cache = match before.and_then(|b| b.caches.get(login)) {
        Some(cache) => cache.clone(),
        None => {
            let dir = config.data_dir.join("cache").join(crate::store::account_dir_name(login));
            Arc::new(MessageCache::open(&dir, &account.key, config.imap.cache_size)?)
        }
    };
    let served = match before.and_then(|b| b.served.get(login)) {
        Some(served) => served.clone(),
        None => Arc::new(Served::new(SERVED_MEMORY)),
    };
    let same_server = previous.is_some_and(|p| same_server(p, config, account));
    let side_pool = match before.and_then(|b| b.side_pools.get(login)).filter(|_| same_server) {
        Some(pool) => pool.clone(),
        None => SidePool::new(
            account.clone(),
            base.dialer.clone(),
            config.imap.side_connections,
            config.imap.max_message_size,
            base.metrics.clone(),
        ),
    };
    // An indexer runs for the life of the process once started: a second
    // one would index the same mailboxes again on another login.
    let indexer = match before.and_then(|b| b.indexers.get(login)) {
        Some(indexer) => {
            if !same_server {
                tracing::warn!(account = %login, "the account's IMAP server, trust or key changed: its background indexer keeps the previous ones until Sealpost restarts");
            }
            indexer.clone()
        }
        None => Indexer::new(
            account.clone(),
            base.dialer.clone(),
            index.clone(),
            base.keystore.clone(),
            base.metrics.clone(),
            config.imap.max_message_size,
            config.imap.search,
        ),
    };
    Ok(ImapState {
        cache,
        served,
        index,
        side_pool,
        indexer,
    })
}

/// True when `account` reaches its IMAP server as it did in `previous`:
/// the same server, trust, key and side-connection limits.
fn same_server(previous: &Generation, config: &Config, account: &Account) -> bool {
    let settings = |c: &Config| {
        c.accounts
            .iter()
            .find(|a| a.login.eq_ignore_ascii_case(&account.login))
            .map(|a| (a.imap.clone(), a.ca_file.clone(), a.trust, a.pins.clone()))
    };
    let key = |a: &Account| a.key.cert.fingerprint();
    settings(&previous.config) == settings(config)
        && previous
            .imap
            .accounts
            .find(&account.login)
            .is_some_and(|old| key(&old) == key(account))
        && previous.config.imap.side_connections == config.imap.side_connections
        && previous.config.imap.max_message_size == config.imap.max_message_size
}

/// The signals `serve` acts on, registered once so that none is missed
/// between two waits.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Reloads on every SIGHUP until SIGTERM or SIGINT.
    async fn serve(mut self, mut reloader: Reloader) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => reloader.reload().await,
            }
        }
    }
}

/// Replaces the services new sessions get, on SIGHUP.
struct Reloader {
    base: Arc<Base>,
    /// The configuration file `serve` started with (`None`: found again
    /// as at start).
    file: Option<std::path::PathBuf>,
    current: Arc<Generation>,
    smtp: watch::Sender<Arc<crate::smtp::session::Shared>>,
    imap: watch::Sender<Arc<crate::imap::state::Shared>>,
}

impl Reloader {
    /// Reads the configuration again and, if all of it can be applied,
    /// hands it to new sessions; otherwise logs every problem and keeps
    /// the running one.
    async fn reload(&mut self) {
        tracing::info!("SIGHUP: reloading the configuration");
        let (base, file, current) = (self.base.clone(), self.file.clone(), self.current.clone());
        let built = tokio::task::spawn_blocking(move || next_generation(&base, file.as_deref(), &current))
            .await
            .unwrap_or_else(|e| Err(vec![format!("the reload failed: {e}")]));
        match built {
            Ok(next) => {
                let next = Arc::new(next);
                self.smtp.send_replace(next.smtp.clone());
                self.imap.send_replace(next.imap.clone());
                self.current = next;
                self.base.metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!("configuration reloaded: new sessions use it; open sessions finish on the previous one");
            }
            Err(problems) => {
                self.base.metrics.config_reloads.with_label_values(&["refused"]).inc();
                for problem in &problems {
                    tracing::error!(%problem, "cannot reload the configuration");
                }
                tracing::error!(
                    problems = problems.len(),
                    "reload refused: the running configuration stays in force; fix the file ('sealpost check') and reload again"
                );
            }
        }
    }
}

/// The generation a reload would switch to, or every reason it cannot.
fn next_generation(base: &Base, file: Option<&Path>, current: &Generation) -> Result<Generation, Vec<String>> {
    let loaded = crate::config::load(file).map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let restart = crate::reload::restart_only(&current.config, &loaded.config);
    if !restart.is_empty() {
        return Err(restart);
    }
    let passphrases = crate::reload::passphrases(&loaded.config);
    build(base, loaded.config, &passphrases, Some(current)).map_err(|e| vec![e.to_string()])
}

/// The configured listeners, bound (`true`: implicit TLS).
struct Sockets {
    smtp: Vec<(std::net::TcpListener, bool)>,
    imap: Vec<(std::net::TcpListener, bool)>,
    metrics: Option<std::net::TcpListener>,
}

impl Sockets {
    fn bind(listen: &crate::config::ListenConfig) -> Result<Sockets, ServeError> {
        let mut smtp = vec![(bind(listen.smtp, "listen.smtp")?, false)];
        if let Some(addr) = listen.smtps {
            smtp.push((bind(addr, "listen.smtps")?, true));
        }
        let mut imap = vec![(bind(listen.imap, "listen.imap")?, false)];
        if let Some(addr) = listen.imaps {
            imap.push((bind(addr, "listen.imaps")?, true));
        }
        let metrics = listen.metrics.map(|addr| bind(addr, "listen.metrics")).transpose()?;
        Ok(Sockets { smtp, imap, metrics })
    }

    /// Writes their addresses to `path` (`--bound-addresses`).
    fn report(&self, path: &Path) -> Result<(), ServeError> {
        let proxies = [("smtp", &self.smtp), ("imap", &self.imap)];
        let bound = proxies
            .iter()
            .flat_map(|(protocol, sockets)| {
                sockets
                    .iter()
                    .map(move |(socket, tls)| (if *tls { format!("{protocol}s") } else { protocol.to_string() }, socket))
            })
            .chain(self.metrics.iter().map(|socket| ("metrics".to_string(), socket)));
        write_bound_addresses(path, bound).map_err(|source| ServeError::BoundAddresses {
            path: path.to_path_buf(),
            source,
        })
    }
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
