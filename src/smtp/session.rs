//! One client session: the SMTP state machine between a mail client and
//! the provider. The client hears 250 for a message only after the
//! provider accepted every copy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::command::{Command, Param};
use super::data::{read_chunk, read_data, read_line, DataEnd, ReadError};
use super::policy::{self, Plan};
use super::reply::Reply;
use super::upstream::{Upstream, UpstreamError};
use crate::account::{Account, Accounts};
use crate::config::SmtpConfig;
use crate::discovery::{Discovery, Lookup, Source};
use crate::learn::Learner;
use crate::listener::{client_stream, record_session, turn_away, ActiveSession, ListenerKind, Service};
use crate::message::{protection, sign_message, Envelope, MessageError, Sealer};
use crate::metrics::Metrics;
use crate::mime::Entity;
use crate::pgp::{KeySource, LiveKeystore};
use crate::sasl::{decode_response, user_name, MECHANISMS};
use crate::shutdown::{Phase, Shutdown};
use crate::spool::{Spool, DEFAULT_THRESHOLD};
use crate::tls::{LocalTls, Stream};

/// RFC 5321 §4.5.3.1.6 text line limit, applied to command lines.
const MAX_COMMAND_LINE: usize = 1000;
/// RFC 4954 §4: AUTH lines (OAuth tokens) may be much longer.
const MAX_AUTH_LINE: usize = 12288;
/// RFC 5321 §4.5.3.1.8 asks for at least 100; more is a mistake or abuse.
const MAX_RECIPIENTS: usize = 1000;
/// The header section must end within this many octets.
const MAX_HEADER_SECTION: usize = 1024 * 1024;

/// What every session shares.
pub struct Shared {
    /// SMTP limits and timeouts.
    pub limits: SmtpConfig,
    /// The name used in greetings.
    pub hostname: String,
    /// Recipients' certificates.
    pub keystore: Arc<LiveKeystore>,
    /// Finds keys for recipients the store has none for (WKD, keyserver).
    pub discovery: Option<Discovery>,
    /// Stores what discovery finds.
    pub learner: Arc<Learner>,
    /// Accounts by login.
    pub accounts: Arc<Accounts>,
    /// The local certificate.
    pub tls: LocalTls,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where messages over the spool threshold are written (private).
    pub spool_dir: std::path::PathBuf,
}

impl Service for Shared {
    const PROTOCOL: &'static str = "smtp";

    async fn serve(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
        handle(self, tcp, kind, shutdown).await
    }

    async fn refuse(self: Arc<Self>, tcp: TcpStream, kind: ListenerKind) {
        self.metrics.connections_refused.with_label_values(&["smtp"]).inc();
        tracing::warn!("SMTP connection refused: listen.max_connections reached");
        let reply = Reply::new(
            421,
            format!(
                "4.7.0 {} Sealpost: too many open connections (listen.max_connections); try again later",
                self.hostname
            ),
        );
        turn_away(tcp, kind, &self.tls, &reply.to_bytes()).await;
    }
}

/// Serves one client connection to its end, or until `shutdown` closes
/// sessions (the client then hears 421 between commands; a message being
/// transferred is finished first).
pub async fn handle(shared: Arc<Shared>, tcp: TcpStream, kind: ListenerKind, shutdown: Shutdown) {
    shared.metrics.smtp_sessions.inc();
    let _active = ActiveSession::new(shared.metrics.sessions_active.with_label_values(&["smtp"]));
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let Some(stream) = client_stream(tcp, kind, &shared.tls).await else {
        return;
    };
    let mut session = Session {
        shared,
        conn: Some(BufReader::new(stream)),
        loopback: kind.loopback,
        ehlo: None,
        auth: None,
        txn: None,
        shutdown,
    };
    match session.run().await {
        Ok(()) => tracing::debug!(%peer, "session closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "session ended"),
    }
    if let Some(auth) = session.auth.take() {
        auth.upstream.quit().await;
    }
}

/// Whether the session goes on.
enum Flow {
    Continue,
    Close,
    StartTls,
}

struct Authenticated {
    account: Arc<Account>,
    upstream: Upstream,
}

/// The envelope being built, mirrored upstream as it goes.
struct Transaction {
    from: String,
    smtputf8: bool,
    recipients: Vec<String>,
    data: Spool,
    /// BDAT chunks have started (DATA is then out of order).
    chunking: bool,
    too_large: bool,
}

/// One message ready for the provider.
struct Outgoing {
    recipients: Vec<String>,
    message: Spool,
}

struct Session {
    shared: Arc<Shared>,
    conn: Option<BufReader<Stream>>,
    loopback: bool,
    ehlo: Option<String>,
    auth: Option<Authenticated>,
    txn: Option<Transaction>,
    shutdown: Shutdown,
}

impl Session {
    fn conn(&mut self) -> &mut BufReader<Stream> {
        self.conn.as_mut().expect("the connection is only absent during STARTTLS")
    }

    fn is_tls(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.get_ref().is_tls())
    }

    async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        let conn = self.conn().get_mut();
        conn.write_all(&reply.to_bytes()).await?;
        conn.flush().await
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let greeting = Reply::new(220, format!("{} ESMTP Sealpost", self.shared.hostname));
        self.send(&greeting).await?;
        loop {
            let timeout = Duration::from_secs(self.shared.limits.command_timeout);
            let mut shutdown = self.shutdown.clone();
            let next = tokio::select! {
                next = tokio::time::timeout(timeout, read_line(self.conn(), MAX_AUTH_LINE)) => next,
                _ = shutdown.reached(Phase::Closing) => {
                    let reply = Reply::new(421, format!("4.3.2 {} Sealpost is shutting down; try again later", self.shared.hostname));
                    return self.send(&reply).await;
                }
            };
            let line = match next {
                Err(_) => {
                    let reply = Reply::new(
                        421,
                        format!("4.4.2 {} no command for {} s, closing", self.shared.hostname, timeout.as_secs()),
                    );
                    return self.send(&reply).await;
                }
                Ok(Err(ReadError::TooLong)) => {
                    self.send(&Reply::new(500, "5.5.2 Line too long")).await?;
                    continue;
                }
                Ok(Err(ReadError::Closed)) => return Ok(()),
                Ok(Err(ReadError::Io(e))) => return Err(e),
                Ok(Ok(line)) => line,
            };
            let Ok(text) = String::from_utf8(line) else {
                self.send(&Reply::new(500, "5.5.2 Command is not valid UTF-8")).await?;
                continue;
            };
            let is_auth = text.get(..5).is_some_and(|v| v.eq_ignore_ascii_case("AUTH "));
            if text.len() > MAX_COMMAND_LINE && !is_auth {
                self.send(&Reply::new(500, "5.5.2 Line too long")).await?;
                continue;
            }
            let command = match Command::parse(&text) {
                Ok(command) => command,
                Err(reply) => {
                    self.send(&reply).await?;
                    continue;
                }
            };
            match self.dispatch(command).await? {
                Flow::Continue => {}
                Flow::Close => return Ok(()),
                Flow::StartTls => {
                    if !self.start_tls().await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn dispatch(&mut self, command: Command) -> std::io::Result<Flow> {
        match command {
            Command::Ehlo(name) => {
                self.txn = None;
                self.ehlo = Some(name.clone());
                let reply = self.ehlo_reply(&name);
                self.send(&reply).await?;
            }
            Command::Helo(name) => {
                self.txn = None;
                self.ehlo = Some(name);
                let reply = Reply::new(250, self.shared.hostname.clone());
                self.send(&reply).await?;
            }
            Command::StartTls => {
                if self.is_tls() {
                    self.send(&Reply::new(503, "5.5.1 TLS is already active")).await?;
                } else {
                    self.send(&Reply::new(220, "2.0.0 Ready to start TLS")).await?;
                    return Ok(Flow::StartTls);
                }
            }
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial).await,
            Command::Mail { from, params } => return self.mail(from, params).await,
            Command::Rcpt { to, params } => return self.rcpt(to, params).await,
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                if self.txn.take().is_some() {
                    if let Some(flow) = self.reset_upstream().await? {
                        return Ok(flow);
                    }
                }
                self.send(&Reply::new(250, "2.0.0 OK")).await?;
            }
            Command::Noop => self.send(&Reply::new(250, "2.0.0 OK")).await?,
            Command::Quit => {
                self.send(&Reply::new(221, "2.0.0 Bye")).await?;
                return Ok(Flow::Close);
            }
            Command::Vrfy => self.send(&Reply::new(252, "2.5.0 Cannot VRFY; send mail to find out")).await?,
            Command::Help => {
                self.send(&Reply::new(214, "2.0.0 Sealpost: see https://www.rfc-editor.org/rfc/rfc5321"))
                    .await?
            }
        }
        Ok(Flow::Continue)
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![
            format!("{} greets {name}", self.shared.hostname),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.shared.limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if !self.is_tls() {
            lines.push("STARTTLS".to_string());
        }
        if self.is_tls() || self.loopback {
            lines.push(format!("AUTH {}", MECHANISMS.join(" ")));
        }
        Reply { code: 250, lines }
    }

    /// Upgrades the client connection. Returns false when the handshake
    /// failed (the connection is then unusable).
    async fn start_tls(&mut self) -> std::io::Result<bool> {
        // Anything the client pipelined after STARTTLS was sent in clear
        // and is discarded (RFC 3207 §4.2).
        let stream = self.conn.take().expect("connection present").into_inner();
        let Stream::Plain(tcp) = stream else {
            unreachable!("STARTTLS is refused on TLS connections")
        };
        match self.shared.tls.accept(tcp).await {
            Ok(stream) => {
                self.conn = Some(BufReader::new(stream));
                self.ehlo = None;
                self.txn = None;
                if let Some(auth) = self.auth.take() {
                    auth.upstream.quit().await;
                }
                Ok(true)
            }
            Err(e) => {
                tracing::debug!(error = %e, "client STARTTLS handshake failed");
                Ok(false)
            }
        }
    }

    /// Reads one SASL response line from the client.
    async fn sasl_line(&mut self) -> std::io::Result<Option<String>> {
        let timeout = Duration::from_secs(self.shared.limits.command_timeout);
        match tokio::time::timeout(timeout, read_line(self.conn(), MAX_AUTH_LINE)).await {
            Ok(Ok(line)) => Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            Ok(Err(ReadError::Io(e))) => Err(e),
            _ => Ok(None),
        }
    }

    async fn auth(&mut self, mechanism: String, initial: Option<String>) -> std::io::Result<Flow> {
        if self.auth.is_some() {
            self.send(&Reply::new(503, "5.5.1 Already authenticated")).await?;
            return Ok(Flow::Continue);
        }
        if self.txn.is_some() || self.ehlo.is_none() {
            self.send(&Reply::new(503, "5.5.1 Send EHLO first, and AUTH before MAIL")).await?;
            return Ok(Flow::Continue);
        }
        if !self.is_tls() && !self.loopback {
            self.send(&Reply::new(538, "5.7.11 Encryption required: use STARTTLS before AUTH"))
                .await?;
            return Ok(Flow::Continue);
        }
        if !MECHANISMS.contains(&mechanism.as_str()) {
            let reply = Reply::new(504, format!("5.5.4 Unsupported mechanism; use one of {}", MECHANISMS.join(", ")));
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        }
        // The user name picks the account; everything else is the
        // provider's business and is relayed untouched.
        let (user, forward) = if mechanism == "LOGIN" {
            let user_b64 = match initial {
                Some(ir) => ir,
                None => {
                    self.send(&Reply::new(334, "VXNlcm5hbWU6")).await?;
                    match self.sasl_line().await? {
                        Some(line) if line != "*" => line,
                        _ => return self.cancelled().await,
                    }
                }
            };
            let user = decode_response(user_b64.as_bytes())
                .ok()
                .map(|name| String::from_utf8_lossy(&name).into_owned());
            (user, format!("AUTH LOGIN {user_b64}"))
        } else {
            let response = match initial {
                Some(ir) => ir,
                None => {
                    self.send(&Reply::new(334, "")).await?;
                    match self.sasl_line().await? {
                        Some(line) if line != "*" => line,
                        _ => return self.cancelled().await,
                    }
                }
            };
            let user = decode_response(response.as_bytes())
                .and_then(|raw| user_name(&mechanism, &raw))
                .ok();
            (user, format!("AUTH {mechanism} {response}"))
        };
        let Some(user) = user else {
            self.send(&Reply::new(501, "5.5.2 Cannot decode the authentication response"))
                .await?;
            return Ok(Flow::Continue);
        };
        let Some(account) = self.shared.accounts.find(&user) else {
            tracing::info!(%user, "login for an unconfigured account");
            let reply = Reply::new(
                535,
                format!("5.7.8 Sealpost has no account for '{user}'; add an [[account]] with login = \"{user}\" to its configuration"),
            );
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        };
        let Some(url) = &account.smtp else {
            let reply = Reply::new(
                535,
                format!("5.7.8 Sealpost has no submission server for '{user}'; set smtp = \"smtp://host:587\" in its [[account]]"),
            );
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        };
        let ehlo = self.ehlo.clone().unwrap_or_else(|| "localhost".into());
        let mut upstream = match Upstream::connect(url, &account.connector, &ehlo).await {
            Ok(upstream) => upstream,
            Err(e) => return self.upstream_failed(e, Some(&account.login)).await,
        };
        upstream.time_commands(self.shared.metrics.upstream_command_seconds.with_label_values(&["smtp"]));
        if !upstream.capabilities.auth.iter().any(|m| m == &mechanism) {
            let reply = Reply::new(504, format!("5.7.4 {} does not offer AUTH {mechanism}", upstream.server()));
            self.send(&reply).await?;
            upstream.quit().await;
            return Ok(Flow::Continue);
        }
        let mut outcome = upstream.command(&forward).await;
        loop {
            let reply = match outcome {
                Ok(reply) => reply,
                Err(e) => return self.upstream_failed(e, Some(&account.login)).await,
            };
            if reply.code == 334 {
                self.send(&reply).await?;
                let line = match self.sasl_line().await? {
                    Some(line) => line,
                    None => return Ok(Flow::Close),
                };
                outcome = upstream.command(&line).await;
                continue;
            }
            self.send(&reply).await?;
            if reply.code == 235 {
                record_session(&account.login, upstream.server());
                tracing::info!(login = %account.login, server = %upstream.server(), "authenticated");
                self.auth = Some(Authenticated { account, upstream });
            } else {
                upstream.quit().await;
            }
            return Ok(Flow::Continue);
        }
    }

    async fn cancelled(&mut self) -> std::io::Result<Flow> {
        self.send(&Reply::new(501, "5.0.0 Authentication cancelled")).await?;
        Ok(Flow::Continue)
    }

    /// Tells the client the provider is unreachable or unsafe, and closes.
    /// `login` names the account when no session is authenticated yet
    /// (a failure while logging in), for `metrics.per_account`.
    async fn upstream_failed(&mut self, e: UpstreamError, login: Option<&str>) -> std::io::Result<Flow> {
        let login = login
            .map(str::to_string)
            .or_else(|| self.auth.as_ref().map(|a| a.account.login.clone()))
            .unwrap_or_default();
        if e.kind() == "pin" {
            // Names the server, the seen and the pinned keys.
            tracing::error!(error = %e, "refused a server presenting an unexpected key");
        } else {
            tracing::warn!(error = %e, "upstream failure");
        }
        let metrics = &self.shared.metrics;
        metrics
            .upstream_failures
            .with_label_values(&metrics.labels(&[e.kind()], &login))
            .inc();
        self.txn = None;
        if let Some(auth) = self.auth.take() {
            drop(auth); // the connection is broken or untrusted: no QUIT
        }
        self.send(&e.client_reply()).await?;
        Ok(Flow::Close)
    }

    /// Relays an upstream reply; a 421 ends the session as it ends the
    /// provider's.
    async fn relay(&mut self, reply: &Reply) -> std::io::Result<Flow> {
        self.send(reply).await?;
        if reply.code == 421 {
            self.auth = None;
            return Ok(Flow::Close);
        }
        Ok(Flow::Continue)
    }

    /// Counts a submitted message by outcome (and account, with
    /// `metrics.per_account`).
    fn count_message(&self, outcome: &str) {
        let login = self.auth.as_ref().map_or("", |a| a.account.login.as_str());
        let metrics = &self.shared.metrics;
        metrics.smtp_messages.with_label_values(&metrics.labels(&[outcome], login)).inc();
    }

    async fn reset_upstream(&mut self) -> std::io::Result<Option<Flow>> {
        let Some(auth) = self.auth.as_mut() else { return Ok(None) };
        match auth.upstream.command("RSET").await {
            Ok(_) => Ok(None),
            Err(e) => Ok(Some(self.upstream_failed(e, None).await?)),
        }
    }

    async fn mail(&mut self, from: String, params: Vec<Param>) -> std::io::Result<Flow> {
        if self.auth.is_none() {
            self.send(&Reply::new(530, "5.7.0 Authentication required")).await?;
            return Ok(Flow::Continue);
        }
        if self.txn.is_some() {
            self.send(&Reply::new(503, "5.5.1 Nested MAIL command")).await?;
            return Ok(Flow::Continue);
        }
        let mut smtputf8 = false;
        let mut eight_bit = false;
        for param in &params {
            match (param.keyword.as_str(), param.value.as_deref()) {
                ("SIZE", Some(v)) => {
                    let Ok(size) = v.parse::<u64>() else {
                        self.send(&Reply::new(501, "5.5.4 SIZE must be a number")).await?;
                        return Ok(Flow::Continue);
                    };
                    if let Some(reply) = self.size_refusal(size) {
                        self.send(&reply).await?;
                        return Ok(Flow::Continue);
                    }
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {}
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => eight_bit = true,
                ("SMTPUTF8", None) => smtputf8 = true,
                _ => {
                    let reply = Reply::new(555, format!("5.5.4 Unsupported MAIL parameter {}", param.keyword));
                    self.send(&reply).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let auth = self.auth.as_mut().expect("checked above");
        let caps = &auth.upstream.capabilities;
        if smtputf8 && !caps.smtputf8 {
            let reply = Reply::new(
                553,
                format!(
                    "5.6.7 {} does not accept internationalized addresses (SMTPUTF8)",
                    auth.upstream.server()
                ),
            );
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        }
        let mut line = format!("MAIL FROM:<{from}>");
        if smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        if eight_bit && caps.eightbitmime {
            line.push_str(" BODY=8BITMIME");
        }
        let reply = match auth.upstream.command(&line).await {
            Ok(reply) => reply,
            Err(e) => return self.upstream_failed(e, None).await,
        };
        if reply.is_positive() {
            self.txn = Some(Transaction {
                from,
                smtputf8,
                recipients: Vec::new(),
                data: Spool::new(&self.shared.spool_dir, DEFAULT_THRESHOLD),
                chunking: false,
                too_large: false,
            });
        }
        self.relay(&reply).await
    }

    /// A 552 when `size` octets cannot go through: over our limit, or over
    /// the provider's once encryption has grown it (base64 armor: 4/3).
    fn size_refusal(&self, size: u64) -> Option<Reply> {
        let ours = self.shared.limits.max_message_size;
        if size > ours {
            return Some(Reply::new(552, format!("5.3.4 Message size exceeds the limit of {ours} octets")));
        }
        let theirs = self.auth.as_ref()?.upstream.capabilities.size?;
        let encrypted = size / 3 * 4 + 64 * 1024;
        if encrypted > theirs {
            return Some(Reply::new(
                552,
                format!("5.3.4 Encrypted, the message would exceed the provider's limit of {theirs} octets"),
            ));
        }
        None
    }

    async fn rcpt(&mut self, to: String, params: Vec<Param>) -> std::io::Result<Flow> {
        let Some(txn) = self.txn.as_ref() else {
            self.send(&Reply::new(503, "5.5.1 Send MAIL first")).await?;
            return Ok(Flow::Continue);
        };
        if txn.chunking {
            self.send(&Reply::new(503, "5.5.1 RCPT after BDAT")).await?;
            return Ok(Flow::Continue);
        }
        if txn.recipients.len() >= MAX_RECIPIENTS {
            self.send(&Reply::new(452, "4.5.3 Too many recipients")).await?;
            return Ok(Flow::Continue);
        }
        if let Some(param) = params.first() {
            let reply = Reply::new(555, format!("5.5.4 Unsupported RCPT parameter {}", param.keyword));
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        }
        self.discover(&to).await;
        let auth = self.auth.as_mut().expect("a transaction needs authentication");
        if let Err(reply) = policy::check_recipient(&auth.account.policy, &self.shared.keystore.snapshot(), &to) {
            self.shared.metrics.smtp_policy_rejections.inc();
            tracing::info!(recipient = %to, "refused: encryption required and no usable key");
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        }
        let reply = match auth.upstream.command(&format!("RCPT TO:<{to}>")).await {
            Ok(reply) => reply,
            Err(e) => return self.upstream_failed(e, None).await,
        };
        if reply.is_positive() {
            let normalized = crate::pgp::normalize_email(&to);
            let txn = self.txn.as_mut().expect("checked above");
            if !txn.recipients.contains(&normalized) {
                txn.recipients.push(normalized);
            }
        }
        self.relay(&reply).await
    }

    /// Looks for a key for `to` when the store has no usable one, waiting
    /// at most `keys.lookup_timeout`; what is found is stored, so the
    /// policy check that follows and the encryption at DATA use it.
    async fn discover(&self, to: &str) {
        let Some(discovery) = &self.shared.discovery else { return };
        if self.shared.keystore.snapshot().recipient(to).is_ok() || !discovery.applies_to(to) {
            return;
        }
        let from_cache = discovery.cached(to).is_some();
        let lookup = discovery.lookup(to).await;
        let (source, result) = match &lookup {
            Lookup::Found { source: Source::Wkd, .. } => ("wkd", "found"),
            Lookup::Found {
                source: Source::Keyserver, ..
            } => ("keyserver", "found"),
            Lookup::NotFound => ("network", "not_found"),
            Lookup::Failed(_) => ("network", "failed"),
            Lookup::TimedOut { .. } => ("network", "timed_out"),
            Lookup::Disabled => ("network", "disabled"),
        };
        let source = if from_cache { "cache" } else { source };
        self.shared.metrics.key_lookups.with_label_values(&[source, result]).inc();
        let Lookup::Found { certs, source, url } = lookup else {
            tracing::debug!(recipient = %to, outcome = ?lookup, "no key found by discovery");
            return;
        };
        let source = KeySource::from(source);
        let learner = self.shared.learner.clone();
        let recipient = to.to_string();
        let stored = tokio::task::spawn_blocking(move || learner.adopt(&certs, &recipient, source)).await;
        match stored {
            Ok(Ok(lessons)) => tracing::info!(recipient = %to, %url, keys = lessons.len(), "stored keys found by discovery"),
            Ok(Err(e)) => tracing::warn!(recipient = %to, error = %e, "cannot store keys found by discovery"),
            Err(e) => tracing::warn!(recipient = %to, error = %e, "storing keys found by discovery failed"),
        }
    }

    async fn data(&mut self) -> std::io::Result<Flow> {
        let Some(txn) = self.txn.as_ref() else {
            self.send(&Reply::new(503, "5.5.1 Send MAIL first")).await?;
            return Ok(Flow::Continue);
        };
        if txn.chunking {
            self.send(&Reply::new(503, "5.5.1 DATA after BDAT")).await?;
            return Ok(Flow::Continue);
        }
        if txn.recipients.is_empty() {
            self.send(&Reply::new(554, "5.5.1 No valid recipients")).await?;
            return Ok(Flow::Continue);
        }
        self.send(&Reply::new(354, "End data with <CR><LF>.<CR><LF>")).await?;
        let max = self.shared.limits.max_message_size;
        let timeout = Duration::from_secs(self.shared.limits.data_timeout);
        let conn = self.conn.as_mut().expect("connection present");
        let data = &mut self.txn.as_mut().expect("checked above").data;
        let read = tokio::time::timeout(timeout, read_data(conn, max, data)).await;
        let end = match self.data_outcome(read).await? {
            Ok(end) => end,
            Err(flow) => return Ok(flow),
        };
        self.txn.as_mut().expect("checked above").too_large = end == DataEnd::TooLarge;
        self.finish_message().await
    }

    /// How reading message data ended: the data, or the end of the session
    /// (a silent client is told why).
    async fn data_outcome(
        &mut self,
        read: Result<Result<DataEnd, ReadError>, tokio::time::error::Elapsed>,
    ) -> std::io::Result<Result<DataEnd, Flow>> {
        match read {
            Err(_) => {
                let reply = Reply::new(421, format!("4.4.2 {} data timeout, closing", self.shared.hostname));
                self.send(&reply).await?;
                Ok(Err(Flow::Close))
            }
            Ok(Err(ReadError::Io(e))) => Err(e),
            Ok(Err(_)) => Ok(Err(Flow::Close)),
            Ok(Ok(end)) => Ok(Ok(end)),
        }
    }

    async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<Flow> {
        let max = self.shared.limits.max_message_size;
        let timeout = Duration::from_secs(self.shared.limits.data_timeout);
        // The chunk follows the command whatever we think of it: read it to
        // stay in step with the client.
        let has_recipients = self.txn.as_ref().is_some_and(|t| !t.recipients.is_empty());
        let mut discard = Spool::new(&self.shared.spool_dir, DEFAULT_THRESHOLD);
        let target = match self.txn.as_mut() {
            Some(txn) if has_recipients => &mut txn.data,
            _ => &mut discard,
        };
        let conn = self.conn.as_mut().expect("connection present");
        let read = tokio::time::timeout(timeout, read_chunk(conn, size, max, target)).await;
        let end = match self.data_outcome(read).await? {
            Ok(end) => end,
            Err(flow) => return Ok(flow),
        };
        let Some(txn) = self.txn.as_mut().filter(|_| has_recipients) else {
            let reply = if self.txn.is_none() {
                Reply::new(503, "5.5.1 Send MAIL first")
            } else {
                Reply::new(554, "5.5.1 No valid recipients")
            };
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        };
        txn.chunking = true;
        txn.too_large |= end == DataEnd::TooLarge;
        if !last {
            let reply = Reply::new(250, format!("2.0.0 {size} octets received"));
            self.send(&reply).await?;
            return Ok(Flow::Continue);
        }
        self.finish_message().await
    }

    /// The message is complete: protect it, deliver every copy, answer.
    async fn finish_message(&mut self) -> std::io::Result<Flow> {
        let txn = self.txn.take().expect("a complete message has a transaction");
        if txn.too_large {
            if let Some(flow) = self.reset_upstream().await? {
                return Ok(flow);
            }
            let limit = self.shared.limits.max_message_size;
            self.send(&Reply::new(552, format!("5.3.4 Message size exceeds the limit of {limit} octets")))
                .await?;
            return Ok(Flow::Continue);
        }
        let account = self.auth.as_ref().expect("a transaction needs authentication").account.clone();
        let shared = self.shared.clone();
        let recipients = txn.recipients.clone();
        let started = Instant::now();
        let Transaction {
            from,
            smtputf8,
            recipients: envelope_recipients,
            data,
            ..
        } = txn;
        let prepared = tokio::task::spawn_blocking(move || prepare(&shared, &account, &recipients, data)).await;
        let (outcome, outgoing) = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(reply)) => {
                self.count_message("rejected");
                if let Some(flow) = self.reset_upstream().await? {
                    return Ok(flow);
                }
                self.send(&reply).await?;
                return Ok(Flow::Continue);
            }
            Err(join) => {
                tracing::error!(error = %join, "message processing panicked");
                self.send(&Reply::new(
                    451,
                    "4.3.0 Internal error while protecting the message; nothing was sent",
                ))
                .await?;
                return Ok(Flow::Close);
            }
        };
        self.shared
            .metrics
            .smtp_processing_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        match self.deliver(&from, smtputf8, &envelope_recipients, outgoing).await {
            Ok(reply) => {
                let label = if reply.is_positive() { outcome } else { "failed" };
                self.count_message(label);
                self.relay(&reply).await
            }
            Err(e) => {
                self.count_message("failed");
                self.upstream_failed(e, None).await
            }
        }
    }

    /// Sends every copy. The transaction opened while the client gave its
    /// recipients carries the message when one copy goes to exactly those
    /// recipients; otherwise it is reset and each copy gets its own.
    async fn deliver(
        &mut self,
        from: &str,
        smtputf8: bool,
        opened_for: &[String],
        outgoing: Vec<Outgoing>,
    ) -> Result<Reply, UpstreamError> {
        let upstream = &mut self.auth.as_mut().expect("authenticated").upstream;
        if let [only] = outgoing.as_slice() {
            if same_recipients(&only.recipients, opened_for) {
                return upstream.send_message(&only.message).await;
            }
        }
        upstream.command("RSET").await?;
        let mut delivered: Vec<String> = Vec::new();
        let mut failed: Vec<(Vec<String>, Reply)> = Vec::new();
        let mut last_ok = None;
        for copy in &outgoing {
            match one_transaction(upstream, from, smtputf8, copy).await? {
                Ok(reply) => {
                    delivered.extend(copy.recipients.iter().cloned());
                    last_ok = Some(reply);
                }
                Err(reply) => failed.push((copy.recipients.clone(), reply)),
            }
        }
        Ok(summarize(&outgoing, delivered, failed, last_ok))
    }
}

/// MAIL, RCPTs and the message for one copy; MAIL and RCPTs go in one
/// write when the provider offers PIPELINING. The inner error is the
/// provider's refusal (the transaction is reset); the outer one a broken
/// connection.
async fn one_transaction(
    upstream: &mut Upstream,
    from: &str,
    smtputf8: bool,
    copy: &Outgoing,
) -> Result<Result<Reply, Reply>, UpstreamError> {
    let mut mail = format!("MAIL FROM:<{from}> SIZE={}", copy.message.len());
    if smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    let mut envelope = vec![mail];
    envelope.extend(copy.recipients.iter().map(|rcpt| format!("RCPT TO:<{rcpt}>")));
    let mut replies = Vec::with_capacity(envelope.len());
    if upstream.capabilities.pipelining {
        upstream.send(&envelope.join("\r\n")).await?;
        for _ in &envelope {
            replies.push(upstream.reply().await?);
        }
    } else {
        for line in &envelope {
            let reply = upstream.command(line).await?;
            let refused = !reply.is_positive();
            replies.push(reply);
            if refused {
                break;
            }
        }
    }
    if let Some(refusal) = replies.iter().position(|r| !r.is_positive()) {
        if refusal > 0 {
            upstream.command("RSET").await?;
        }
        return Ok(Err(replies.swap_remove(refusal)));
    }
    let reply = upstream.send_message(&copy.message).await?;
    Ok(if reply.is_positive() { Ok(reply) } else { Err(reply) })
}

/// One reply for several copies: success only if all went; a refusal of
/// everything keeps the provider's code (4xx stays 4xx so the client
/// retries); a partial delivery is permanent and names who got it, so a
/// retry does not send the message twice.
fn summarize(outgoing: &[Outgoing], delivered: Vec<String>, failed: Vec<(Vec<String>, Reply)>, last_ok: Option<Reply>) -> Reply {
    if failed.is_empty() {
        let provider = last_ok.map(|r| r.text()).unwrap_or_default();
        return Reply::new(
            250,
            format!(
                "2.0.0 Delivered to {} recipients in {} separately encrypted copies ({provider})",
                delivered.len(),
                outgoing.len()
            ),
        );
    }
    if delivered.is_empty() {
        let (_, first) = &failed[0];
        return Reply {
            code: first.code,
            lines: first.lines.clone(),
        };
    }
    let mut lines = vec![format!("5.3.0 Partial delivery: sent to {}", delivered.join(", "))];
    for (recipients, reply) in &failed {
        lines.push(format!("NOT sent to {}: {} {}", recipients.join(", "), reply.code, reply.text()));
    }
    lines.push("Do not resend to everyone: send again only to the recipients not reached".into());
    Reply { code: 554, lines }
}

fn same_recipients(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Applies the policy and produces the copies to send. Runs on a blocking
/// thread: signing and encryption are CPU work. Encryption streams the
/// body from the spool into one spool per copy; only signing without
/// encryption (which must re-encode parts to 7 bit) holds the message in
/// memory. Returns the outcome label for metrics.
fn prepare(shared: &Shared, account: &Account, recipients: &[String], message: Spool) -> Result<(&'static str, Vec<Outgoing>), Reply> {
    let spool_failed = |e: std::io::Error| {
        tracing::error!(error = %e, "spool I/O failed");
        Reply::new(
            451,
            "4.3.0 Sealpost could not spool the message (local disk problem); nothing was sent",
        )
    };
    let refused = |e: MessageError| match e {
        MessageError::Write(e) => spool_failed(e),
        other => Reply::new(554, format!("5.7.0 Sealpost could not protect the message: {other}")),
    };
    let head = message.head(MAX_HEADER_SECTION).map_err(spool_failed)?;
    // The keys as they are now, for the whole message.
    let keystore = shared.keystore.snapshot();
    let plan = policy::plan(&account.policy, &keystore, recipients, protection(&head))?;
    let one = |message: Spool| {
        vec![Outgoing {
            recipients: recipients.to_vec(),
            message,
        }]
    };
    match plan {
        Plan::PassThrough => Ok(("passed", one(message))),
        Plan::SignOnly { missing } => {
            if !missing.is_empty() {
                tracing::info!(missing = ?missing, "no key for every recipient: sending signed, not encrypted");
            }
            let bytes = message.to_vec().map_err(spool_failed)?;
            let signed = sign_message(&bytes, &account.address, &account.key).map_err(refused)?;
            Ok(("signed", one(Spool::from_vec(&shared.spool_dir, signed))))
        }
        Plan::Encrypt => {
            let entity = Entity::parse(&head);
            let header_complete = entity.header.len() < head.len() || head.len() as u64 == message.len();
            if !header_complete {
                return Err(Reply::new(
                    552,
                    format!("5.3.4 The header section is larger than {MAX_HEADER_SECTION} octets"),
                ));
            }
            let body_offset = (head.len() - entity.body.len()) as u64;
            let envelope = Envelope {
                sender: account.address.clone(),
                recipients: recipients.to_vec(),
            };
            let sealer = Sealer::new(entity.header, &envelope, &account.key, &keystore).map_err(refused)?;
            let mut outgoing = Vec::with_capacity(sealer.copies().len());
            for (index, copy) in sealer.copies().iter().enumerate() {
                let mut out = message.sibling();
                sealer
                    .write_copy(index, &mut message.reader_at(body_offset), &mut out)
                    .map_err(refused)?;
                outgoing.push(Outgoing {
                    recipients: copy.recipients.clone(),
                    message: out,
                });
            }
            Ok(("encrypted", outgoing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_delivery_is_permanent_and_names_recipients() {
        let copies = vec![
            Outgoing {
                recipients: vec!["a@x".into()],
                message: Spool::from_vec(std::path::Path::new("/nonexistent"), vec![]),
            },
            Outgoing {
                recipients: vec!["b@x".into()],
                message: Spool::from_vec(std::path::Path::new("/nonexistent"), vec![]),
            },
        ];
        let ok = summarize(
            &copies,
            vec!["a@x".into(), "b@x".into()],
            vec![],
            Some(Reply::new(250, "2.0.0 queued")),
        );
        assert_eq!(ok.code, 250);
        let none = summarize(
            &copies,
            vec![],
            vec![(vec!["a@x".into()], Reply::new(451, "4.3.0 try later"))],
            None,
        );
        assert_eq!(none.code, 451);
        let partial = summarize(
            &copies,
            vec!["a@x".into()],
            vec![(vec!["b@x".into()], Reply::new(452, "4.2.2 full"))],
            None,
        );
        assert_eq!(partial.code, 554);
        assert!(partial.to_string().contains("sent to a@x"));
        assert!(partial.to_string().contains("NOT sent to b@x: 452 4.2.2 full"));
    }
}
