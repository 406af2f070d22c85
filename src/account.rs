//! Accounts at run time: each configured `[[account]]` with its parsed
//! upstream address, its TLS connector and its unlocked signing key.
//! Protocol modules look accounts up by the login a client presents.

use std::path::Path;
use std::sync::Arc;

use crate::config::{AccountConfig, Config, PolicyConfig, PreferEncrypt};
use crate::pgp::{KeyError, Keystore, PassphraseSource, UnlockedKey};
use crate::tls::{Connector, Pin, PinStore, TlsError, Trust};
use crate::url::ServerUrl;

/// Why the accounts could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The account's key is missing or stays locked.
    #[error("account {login}: {source}")]
    Key {
        /// The account's login.
        login: String,
        /// The cause.
        source: KeyError,
    },
    /// The account's TLS trust settings are unusable.
    #[error("account {login}: {source}")]
    Tls {
        /// The account's login.
        login: String,
        /// The cause.
        source: TlsError,
    },
    /// The account's server URL or pins are invalid (normally caught by
    /// `check`).
    #[error("account {login}: {reason}")]
    Url {
        /// The account's login.
        login: String,
        /// The cause.
        reason: String,
    },
}

/// One account, ready to serve.
pub struct Account {
    /// The login clients use, forwarded upstream unchanged.
    pub login: String,
    /// The address whose key signs.
    pub address: String,
    /// The submission server, if the account has one.
    pub smtp: Option<ServerUrl>,
    /// The IMAP server, if the account has one.
    pub imap: Option<ServerUrl>,
    /// Verified TLS towards the account's servers.
    pub connector: Connector,
    /// The unlocked key that signs (and decrypts).
    pub key: UnlockedKey,
    /// The account's policy (its own, or the global one).
    pub policy: PolicyConfig,
}

/// All accounts, looked up by login.
pub struct Accounts {
    accounts: Vec<Arc<Account>>,
}

impl Accounts {
    /// Makes every configured account ready: parses its server address,
    /// builds its connector and unlocks its key. Fails on the first account
    /// that cannot be used, naming it.
    pub fn load(config: &Config, keystore: &Keystore, passphrases: &PassphraseSource) -> Result<Accounts, AccountError> {
        Accounts::reload(config, keystore, passphrases, None)
    }

    /// [`Accounts::load`] for a configuration reload: a key that is
    /// unlocked in `previous` already is taken from there, so that a
    /// reload asks for no passphrase for keys that did not change.
    pub fn reload(
        config: &Config,
        keystore: &Keystore,
        passphrases: &PassphraseSource,
        previous: Option<&Accounts>,
    ) -> Result<Accounts, AccountError> {
        let unlocked: Vec<&UnlockedKey> = previous.iter().flat_map(|p| p.iter()).map(|a| &a.key).collect();
        let mut accounts = Vec::new();
        for account in &config.accounts {
            accounts.push(Arc::new(ready(account, config, keystore, passphrases, &unlocked)?));
        }
        Ok(Accounts { accounts })
    }

    /// The account for a login (ASCII case-insensitive).
    pub fn find(&self, login: &str) -> Option<Arc<Account>> {
        self.accounts.iter().find(|a| a.login.eq_ignore_ascii_case(login)).cloned()
    }

    /// Every account.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Account>> {
        self.accounts.iter()
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when none is configured.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

fn ready(
    account: &AccountConfig,
    config: &Config,
    keystore: &Keystore,
    passphrases: &PassphraseSource,
    unlocked: &[&UnlockedKey],
) -> Result<Account, AccountError> {
    let login = account.login.clone();
    let address = account.address();
    let url_error = |reason| AccountError::Url {
        login: login.clone(),
        reason,
    };
    let smtp = account.smtp.as_deref().map(ServerUrl::parse_smtp).transpose().map_err(url_error)?;
    let imap = account.imap.as_deref().map(ServerUrl::parse_imap).transpose().map_err(url_error)?;
    if smtp.is_none() && imap.is_none() {
        return Err(url_error("neither an smtp nor an imap server is configured".into()));
    }
    let connector = connector(account, &config.data_dir)?;
    let key_error = |source| AccountError::Key {
        login: login.clone(),
        source,
    };
    let own = keystore.own_key(&address).map_err(key_error)?;
    let mut key = match unlocked.iter().find(|k| k.cert.fingerprint() == own.cert.fingerprint()) {
        Some(key) => (*key).clone(),
        None => keystore.unlock(own, passphrases).map_err(key_error)?,
    };
    key.prefer_encrypt_mutual = config.keys.prefer_encrypt == PreferEncrypt::Mutual;
    Ok(Account {
        login: login.clone(),
        address,
        smtp,
        imap,
        connector,
        key,
        policy: account.policy.clone().unwrap_or_else(|| config.policy.clone()),
    })
}

/// The TLS connector of `account`: its trust mode, pins and `ca_file`,
/// with first-contact keys recorded in `data_dir/pins.toml`. `serve` and
/// `init` (which records those first contacts) both build it here.
pub fn connector(account: &AccountConfig, data_dir: &Path) -> Result<Connector, AccountError> {
    let pins = account
        .pins
        .iter()
        .map(|p| Pin::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| AccountError::Url {
            login: account.login.clone(),
            reason,
        })?;
    let trust = Trust {
        mode: account.trust,
        pins,
        store: PinStore::new(data_dir),
    };
    Connector::new(account.ca_file.as_deref(), trust).map_err(|source| AccountError::Tls {
        login: account.login.clone(),
        source,
    })
}
