//! Prometheus metrics and the small HTTP endpoint that serves them
//! (`listen.metrics`), with the health checks an orchestrator probes:
//! `/healthz` (the process answers) and `/readyz` (it takes new
//! connections: keys unlocked and listeners bound, which happen before
//! this endpoint starts, and not draining for a shutdown). Counters carry
//! outcomes and reasons, never addresses or content.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::shutdown::{Phase, Shutdown};

/// Every metric Sealpost exports.
pub struct Metrics {
    registry: Registry,
    /// `metrics.per_account`: the per-account series carry an `account`
    /// label (see [`Metrics::labels`]).
    per_account: bool,
    /// SMTP sessions accepted.
    pub smtp_sessions: IntCounter,
    /// Messages by outcome: encrypted, signed (no key for some
    /// recipient), passed (already protected), rejected, failed.
    pub smtp_messages: IntCounterVec,
    /// Recipients refused at RCPT by the encryption policy.
    pub smtp_policy_rejections: IntCounter,
    /// Upstream failures by kind (connect, tls, starttls, timeout, ...).
    pub upstream_failures: IntCounterVec,
    /// Seconds spent signing/encrypting one message, by outcome.
    pub smtp_processing_seconds: HistogramVec,
    /// IMAP sessions accepted.
    pub imap_sessions: IntCounter,
    /// Encrypted messages shown to IMAP clients, by outcome: decrypted,
    /// cached (served from the cache), failed (shown as stored).
    pub imap_messages: IntCounterVec,
    /// Seconds spent decrypting one message for an IMAP client.
    pub imap_decrypt_seconds: Histogram,
    /// Uploads (APPEND) by outcome: encrypted, already-encrypted, passed
    /// (policy), refused.
    pub imap_appends: IntCounterVec,
    /// Correspondents' keys learnt or updated, by source (autocrypt,
    /// gossip).
    pub keys_learned: IntCounterVec,
    /// Keys learnt for an address that already has a different key from
    /// a more trusted source (kept, not used).
    pub key_conflicts: IntCounter,
    /// Connections turned away because a listener had
    /// `listen.max_connections` open, by protocol (smtp, imap).
    pub connections_refused: IntCounterVec,
    /// Client sessions open now, by protocol (smtp, imap).
    pub sessions_active: IntGaugeVec,
    /// The IMAP proxy's pooled side connections (fetching messages to
    /// decrypt): `opened` (a login at the provider) or `reused`.
    pub imap_side_connections: IntCounterVec,
    /// Messages added to the search indexes.
    pub search_indexed: IntCounter,
    /// SEARCH commands Sealpost answered itself (content criteria).
    pub searches: IntCounter,
    /// Messages the background indexers know of and have not indexed yet.
    pub search_backlog: IntGauge,
    /// TLS handshakes with the providers' servers, by kind (`full`, or
    /// `resumed` from an earlier session under the same pins).
    pub upstream_tls_handshakes: IntCounterVec,
    /// Configuration reloads (SIGHUP, `sealpost reload`), by result:
    /// `ok` (new sessions use it) or `refused` (the previous one stays).
    pub config_reloads: IntCounterVec,
    /// Time of each TLS handshake with a provider's server, by kind.
    pub upstream_tls_handshake_seconds: HistogramVec,
    /// Time from a command reaching the provider to its final answer, by
    /// protocol (IMAP: the client's commands relayed, IDLE aside; SMTP:
    /// each command of the submission).
    pub upstream_command_seconds: HistogramVec,
    /// Look-ups in the IMAP decrypted-message cache, by result (`hit`,
    /// `miss`).
    pub imap_cache_lookups: IntCounterVec,
    /// Bytes the IMAP decrypted-message caches hold, all accounts.
    pub imap_cache_bytes: IntGauge,
    /// Key discovery look-ups for a recipient without a key, by where the
    /// answer came from (`cache`, `wkd`, `keyserver`, or `network` when
    /// nothing was found) and result (`found`, `not_found`, `failed`,
    /// `timed_out`, `disabled`).
    pub key_lookups: IntCounterVec,
}

impl Metrics {
    /// A fresh registry with every metric registered; with `per_account`
    /// (`metrics.per_account`) the per-account series (SMTP and IMAP
    /// messages, upstream failures) also carry the account's login.
    pub fn new(per_account: bool) -> Metrics {
        let per_account_labels = |names: &[&'static str]| -> Vec<&'static str> {
            let mut names = names.to_vec();
            if per_account {
                names.push("account");
            }
            names
        };
        let registry = Registry::new();
        let smtp_sessions = IntCounter::new("sealpost_smtp_sessions_total", "SMTP client sessions accepted").expect("valid metric");
        let smtp_messages = IntCounterVec::new(
            Opts::new("sealpost_smtp_messages_total", "Messages submitted, by outcome"),
            &per_account_labels(&["outcome"]),
        )
        .expect("valid metric");
        let smtp_policy_rejections = IntCounter::new(
            "sealpost_smtp_policy_rejections_total",
            "Recipients refused because encryption was required and no key was found",
        )
        .expect("valid metric");
        let upstream_failures = IntCounterVec::new(
            Opts::new("sealpost_upstream_failures_total", "Failures talking to upstream servers, by kind"),
            &per_account_labels(&["kind"]),
        )
        .expect("valid metric");
        let smtp_processing_seconds = HistogramVec::new(
            HistogramOpts::new("sealpost_smtp_processing_seconds", "Time to sign/encrypt one message")
                .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["outcome"],
        )
        .expect("valid metric");
        let imap_sessions = IntCounter::new("sealpost_imap_sessions_total", "IMAP client sessions accepted").expect("valid metric");
        let imap_messages = IntCounterVec::new(
            Opts::new(
                "sealpost_imap_messages_total",
                "Encrypted messages shown to IMAP clients, by outcome",
            ),
            &per_account_labels(&["outcome"]),
        )
        .expect("valid metric");
        let imap_decrypt_seconds = Histogram::with_opts(
            HistogramOpts::new("sealpost_imap_decrypt_seconds", "Time to decrypt one message for an IMAP client")
                .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        let imap_appends = IntCounterVec::new(
            Opts::new("sealpost_imap_appends_total", "Uploaded messages, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let keys_learned = IntCounterVec::new(
            Opts::new(
                "sealpost_keys_learned_total",
                "Correspondents' keys learnt or updated from mail, by source",
            ),
            &["source"],
        )
        .expect("valid metric");
        let key_conflicts = IntCounter::new(
            "sealpost_key_conflicts_total",
            "Keys learnt that differ from a more trusted key in use for the same address",
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "sealpost_connections_refused_total",
                "Client connections refused because the listener had listen.max_connections open, by protocol",
            ),
            &["protocol"],
        )
        .expect("valid metric");
        let imap_side_connections = IntCounterVec::new(
            Opts::new(
                "sealpost_imap_side_connections_total",
                "Uses of the pooled side connections that fetch messages to decrypt: opened (a new login) or reused",
            ),
            &["event"],
        )
        .expect("valid metric");
        let search_indexed =
            IntCounter::new("sealpost_search_indexed_total", "Messages added to the search indexes").expect("valid metric");
        let searches = IntCounter::new(
            "sealpost_searches_total",
            "SEARCH commands with criteria on message content, answered by Sealpost from its index",
        )
        .expect("valid metric");
        let search_backlog = IntGauge::new(
            "sealpost_search_backlog",
            "Messages the background indexers found on the servers and have not indexed yet",
        )
        .expect("valid metric");
        let upstream_tls_handshakes = IntCounterVec::new(
            Opts::new(
                "sealpost_upstream_tls_handshakes_total",
                "TLS handshakes with the providers' servers: full, or resumed from an earlier session verified under the same pins",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "sealpost_config_reloads_total",
                "Configuration reloads (SIGHUP): ok, or refused with the previous configuration kept",
            ),
            &["result"],
        )
        .expect("valid metric");
        // Both results show from the start, so that an alert on
        // "refused" has a series to watch before the first reload.
        for result in ["ok", "refused"] {
            config_reloads.with_label_values(&[result]);
        }
        let sessions_active = IntGaugeVec::new(
            Opts::new("sealpost_sessions_active", "Client sessions open now, by protocol"),
            &["protocol"],
        )
        .expect("valid metric");
        let upstream_tls_handshake_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sealpost_upstream_tls_handshake_seconds",
                "Time of a TLS handshake with a provider's server, by kind (full or resumed)",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["kind"],
        )
        .expect("valid metric");
        let upstream_command_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sealpost_upstream_command_seconds",
                "Time from a command reaching the provider to its final answer, by protocol (IMAP IDLE left out)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["protocol"],
        )
        .expect("valid metric");
        let imap_cache_lookups = IntCounterVec::new(
            Opts::new(
                "sealpost_imap_cache_lookups_total",
                "Look-ups of a decrypted message in the IMAP cache, by result (hit, miss)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let imap_cache_bytes = IntGauge::new(
            "sealpost_imap_cache_bytes",
            "Bytes the decrypted-message caches hold on disk, all accounts",
        )
        .expect("valid metric");
        let key_lookups = IntCounterVec::new(
            Opts::new(
                "sealpost_key_lookups_total",
                "Key discovery look-ups for recipients without a key, by source (cache, wkd, keyserver, network) and result (found, not_found, failed, timed_out, disabled)",
            ),
            &["source", "result"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(smtp_sessions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(smtp_messages.clone()),
            Box::new(smtp_policy_rejections.clone()),
            Box::new(upstream_failures.clone()),
            Box::new(smtp_processing_seconds.clone()),
            Box::new(imap_sessions.clone()),
            Box::new(imap_messages.clone()),
            Box::new(imap_decrypt_seconds.clone()),
            Box::new(imap_appends.clone()),
            Box::new(keys_learned.clone()),
            Box::new(key_conflicts.clone()),
            Box::new(connections_refused.clone()),
            Box::new(imap_side_connections.clone()),
            Box::new(sessions_active.clone()),
            Box::new(search_indexed.clone()),
            Box::new(searches.clone()),
            Box::new(search_backlog.clone()),
            Box::new(upstream_tls_handshakes.clone()),
            Box::new(config_reloads.clone()),
            Box::new(upstream_tls_handshake_seconds.clone()),
            Box::new(upstream_command_seconds.clone()),
            Box::new(imap_cache_lookups.clone()),
            Box::new(imap_cache_bytes.clone()),
            Box::new(key_lookups.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Metrics {
            registry,
            per_account,
            smtp_sessions,
            smtp_messages,
            smtp_policy_rejections,
            upstream_failures,
            smtp_processing_seconds,
            imap_sessions,
            imap_messages,
            imap_decrypt_seconds,
            imap_appends,
            keys_learned,
            key_conflicts,
            connections_refused,
            imap_side_connections,
            sessions_active,
            search_indexed,
            searches,
            search_backlog,
            upstream_tls_handshakes,
            config_reloads,
            upstream_tls_handshake_seconds,
            upstream_command_seconds,
            imap_cache_lookups,
            imap_cache_bytes,
            key_lookups,
        }
    }

    /// The label values of a per-account series: `values`, and the
    /// account's login when `metrics.per_account` is on (an empty one
    /// when the failure came before the account was known).
    pub fn labels<'v>(&self, values: &[&'v str], account: &'v str) -> Vec<&'v str> {
        let mut all = values.to_vec();
        if self.per_account {
            all.push(account);
        }
        all
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

/// Serves `GET /metrics`, `/healthz` and `/readyz` on `listener` until the
/// task is dropped. Requests are read with a size cap and a timeout;
/// anything else gets 404.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>, shutdown: Shutdown) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 8192];
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut request)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&request[..n]);
            let path = head
                .strip_prefix("GET ")
                .and_then(|rest| rest.split([' ', '?']).next())
                .unwrap_or_default();
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" => ("200 OK", "ok\n".to_string()),
                "/readyz" if shutdown.phase() == Phase::Running => ("200 OK", "ready\n".to_string()),
                "/readyz" => ("503 Service Unavailable", "draining: shutting down\n".to_string()),
                _ => ("404 Not Found", "see /metrics, /healthz, /readyz\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
