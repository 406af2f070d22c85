//! Reloading the configuration of a running `serve` (SIGHUP, `sealpost
//! reload`): what a reload may change, and the all-or-nothing switch.
//!
//! The file is read and checked as at start, the accounts are made ready
//! again (a key unlocked before is reused; others need a passphrase from
//! `SEALPOST_PASSPHRASE` or `passphrase_file`, as nobody is at the
//! terminal to ask), and only when all of that succeeds do new sessions
//! get the new configuration. Open sessions finish on the one they began
//! with. Anything wrong keeps the running configuration, and every
//! problem is logged and counted (`sealpost_config_reloads_total`).
//!
//! Some settings are fixed at start: the data directory, the listeners
//! (their addresses, certificate, cap and grace period), the log output
//! and the cache size. A reload that changes one is refused, naming it,
//! rather than applied halfway.

use std::fmt::Display;

use crate::config::Config;
use crate::pgp::PassphraseSource;

/// The settings that differ between `running` and `new` and only take
/// effect on a restart, each as a line that says so.
pub fn restart_only(running: &Config, new: &Config) -> Vec<String> {
    fn opt(value: Option<impl Display>) -> String {
        value.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
    }
    let (old, now) = (&running.listen, &new.listen);
    let path = |p: Option<&std::path::Path>| opt(p.map(|p| p.display()));
    let settings = [
        (
            "data_dir",
            running.data_dir.display().to_string(),
            new.data_dir.display().to_string(),
        ),
        ("listen.smtp", old.smtp.to_string(), now.smtp.to_string()),
        ("listen.smtps", opt(old.smtps), opt(now.smtps)),
        ("listen.imap", old.imap.to_string(), now.imap.to_string()),
        ("listen.imaps", opt(old.imaps), opt(now.imaps)),
        ("listen.metrics", opt(old.metrics), opt(now.metrics)),
        ("listen.tls_cert", path(old.tls_cert.as_deref()), path(now.tls_cert.as_deref())),
        ("listen.tls_key", path(old.tls_key.as_deref()), path(now.tls_key.as_deref())),
        (
            "listen.max_connections",
            old.max_connections.to_string(),
            now.max_connections.to_string(),
        ),
        (
            "listen.shutdown_grace",
            old.shutdown_grace.to_string(),
            now.shutdown_grace.to_string(),
        ),
        ("log.format", format!("{:?}", running.log.format), format!("{:?}", new.log.format)),
        ("log.level", running.log.level.clone(), new.log.level.clone()),
        (
            "imap.cache_size",
            running.imap.cache_size.to_string(),
            new.imap.cache_size.to_string(),
        ),
        ("imap.search", running.imap.search.to_string(), new.imap.search.to_string()),
        (
            "metrics.per_account",
            running.metrics.per_account.to_string(),
            new.metrics.per_account.to_string(),
        ),
    ];
    settings
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(key, before, after)| {
            format!("{key} changed ({before} -> {after}), which only a restart applies: restart Sealpost, or put the running value back to reload the rest")
        })
        .collect()
}

/// Where a reload takes passphrases for keys it has not unlocked before:
/// as at start, but never the terminal (a daemon reloading on a signal
/// has nobody to ask).
pub fn passphrases(config: &Config) -> PassphraseSource {
    match PassphraseSource::from_env_or(config.passphrase_file.clone()) {
        PassphraseSource::Prompt => PassphraseSource::None,
        source => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_data_dir_need_a_restart_policy_does_not() {
        let running = Config::default();
        let mut new = running.clone();
        new.policy.require_encryption_for = vec!["example.com".into()];
        new.listen.hostname = "mail.example.org".into();
        new.keys.wkd = !new.keys.wkd;
        assert_eq!(restart_only(&running, &new), Vec::<String>::new());

        new.listen.imap = "127.0.0.1:2143".parse().unwrap();
        new.listen.smtps = Some("127.0.0.1:2465".parse().unwrap());
        new.data_dir = "/elsewhere".into();
        let refused = restart_only(&running, &new);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(
            refused[1].starts_with("listen.smtps changed (none -> 127.0.0.1:2465)") && refused[1].contains("restart Sealpost"),
            "{refused:?}"
        );
        assert!(refused
            .iter()
            .any(|r| r.starts_with("listen.imap changed (127.0.0.1:1143 -> 127.0.0.1:2143)")));

        // The metrics' label sets are fixed when they are registered.
        let mut labelled = running.clone();
        labelled.metrics.per_account = true;
        let refused = restart_only(&running, &labelled);
        assert!(
            refused.len() == 1 && refused[0].starts_with("metrics.per_account changed (false -> true)"),
            "{refused:?}"
        );
    }
}
