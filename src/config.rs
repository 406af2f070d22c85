//! The configuration: defaults, then one TOML file, then `SEALPOST_*`
//! environment variables (`__` separates nested keys), merged with figment.
//!
//! This module owns where the file is looked for, what each key means and
//! how problems are reported (key path, what is wrong, what to do). It does
//! not act on the configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::tls::{Pin, TrustMode};
use crate::url::{HttpsUrl, ServerUrl};

/// Environment variables with the `SEALPOST_` prefix that are not
/// configuration keys.
const NON_CONFIG_ENV: [&str; 2] = ["passphrase", "config"];

/// Sealpost's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Where keys (and later caches, pins, indexes) live.
    pub data_dir: PathBuf,
    /// A file whose first line unlocks the secret keys, used when
    /// `SEALPOST_PASSPHRASE` is not set. Must not be readable by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
    /// Local listeners.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The default encryption policy (accounts may override it).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// SMTP limits and timeouts.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// IMAP limits, the decrypted-message cache and the APPEND policy.
    #[serde(default)]
    pub imap: ImapConfig,
    /// Key discovery over HTTPS: Web Key Directory and keyserver.
    #[serde(default)]
    pub keys: KeysConfig,
    /// What the metrics show.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The mail accounts Sealpost stands in front of (`[[account]]`).
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
}

/// Where Sealpost listens for mail clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenConfig {
    /// SMTP submission with STARTTLS offered.
    #[serde(default = "default_smtp_listen")]
    pub smtp: SocketAddr,
    /// SMTP submission with implicit TLS (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtps: Option<SocketAddr>,
    /// IMAP with STARTTLS offered.
    #[serde(default = "default_imap_listen")]
    pub imap: SocketAddr,
    /// IMAP with implicit TLS (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imaps: Option<SocketAddr>,
    /// Certificate (PEM chain) for the local listeners; generated into
    /// `data_dir/tls` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Prometheus metrics over HTTP (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// The name Sealpost gives itself in greetings.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// How many client connections each listener keeps open at once;
    /// more are refused with `* BYE [LIMIT]` or `421 4.7.0`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds open sessions may go on after SIGTERM before they are told
    /// to close (and again before they are dropped).
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            smtp: default_smtp_listen(),
            smtps: None,
            imap: default_imap_listen(),
            imaps: None,
            tls_cert: None,
            tls_key: None,
            metrics: None,
            hostname: default_hostname(),
            max_connections: default_max_connections(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_smtp_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1587))
}

fn default_imap_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1143))
}

fn default_hostname() -> String {
    "localhost".into()
}

fn default_max_connections() -> usize {
    1000
}

fn default_shutdown_grace() -> u64 {
    10
}

/// When outgoing mail is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptMode {
    /// Encrypt when every recipient has a key, else sign only.
    #[default]
    Opportunistic,
    /// Encrypt every message; `on_missing_key` says what happens otherwise.
    Always,
    /// Never encrypt; sign only.
    Never,
}

/// What `encrypt = "always"` does for a recipient without a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissingKey {
    /// Send the message signed but not encrypted.
    #[default]
    SignOnly,
    /// Refuse the recipient at RCPT time.
    Reject,
}

/// The encryption policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// When to encrypt.
    #[serde(default)]
    pub encrypt: EncryptMode,
    /// What `always` does without a key.
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
    /// Domains (`partner.example`) or addresses that must only ever
    /// receive encrypted mail.
    #[serde(default)]
    pub require_encryption_for: Vec<String>,
}

/// SMTP limits and timeouts (RFC 5321 §4.5.3.2 defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpConfig {
    /// The largest message accepted, in bytes (announced as SIZE).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Seconds to wait for a client command.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: u64,
    /// Seconds to wait for each block of message data.
    #[serde(default = "default_data_timeout")]
    pub data_timeout: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: default_max_message_size(),
            command_timeout: default_command_timeout(),
            data_timeout: default_data_timeout(),
        }
    }
}

fn default_max_message_size() -> u64 {
    50 * 1024 * 1024
}

fn default_command_timeout() -> u64 {
    300
}

fn default_data_timeout() -> u64 {
    180
}

/// IMAP proxy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapConfig {
    /// The largest message decrypted on FETCH or encrypted on APPEND, in
    /// bytes; larger ones are shown as stored and refused on upload.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Disk space for each account's decrypted-message cache (encrypted
    /// at rest, least recently used evicted first), in bytes.
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// Which uploads (APPEND) are encrypted to the account's own key:
    /// `"all"` (default), `"none"`, or a list of mailbox names and
    /// SPECIAL-USE attributes such as `["\\Drafts", "\\Sent", "Archive"]`.
    #[serde(default)]
    pub append_encrypt: AppendEncrypt,
    /// How many side connections (logins at the provider that fetch
    /// messages to decrypt) each account keeps, shared by all of its
    /// client sessions. Providers limit logins per user (Dovecot: 10).
    #[serde(default = "default_side_connections")]
    pub side_connections: usize,
    /// Whether each account's search index is kept complete in the
    /// background (one more login at the provider, IDLE on INBOX) once a
    /// client has logged in. Without, messages are indexed when a search
    /// needs them or a client fetches them.
    #[serde(default = "default_true")]
    pub background_indexing: bool,
    /// Who evaluates BODY and TEXT over messages stored in plaintext.
    #[serde(default)]
    pub search: SearchMode,
}

/// Who evaluates content criteria over messages the server can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Sealpost, over every message indexed whole: no search string
    /// reaches the server.
    #[default]
    Local,
    /// The server, for messages stored in plaintext: the index keeps only
    /// their header (much smaller), and the strings of BODY and TEXT are
    /// sent to the server when a mailbox holds such messages.
    Hybrid,
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchMode::Local => "local",
            SearchMode::Hybrid => "hybrid",
        })
    }
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_message_size: default_max_message_size(),
            cache_size: default_cache_size(),
            append_encrypt: AppendEncrypt::default(),
            side_connections: default_side_connections(),
            background_indexing: true,
            search: SearchMode::Local,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_side_connections() -> usize {
    2
}

fn default_cache_size() -> u64 {
    1024 * 1024 * 1024
}

/// Which uploaded messages are encrypted (`imap.append_encrypt`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "AppendEncryptForm", into = "AppendEncryptForm")]
pub enum AppendEncrypt {
    /// Every plaintext upload.
    #[default]
    All,
    /// None: uploads reach the server as the client sent them.
    None,
    /// Uploads to these mailboxes (names, or SPECIAL-USE attributes such
    /// as `\Drafts`).
    Only(Vec<String>),
}

/// How `append_encrypt` is written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum AppendEncryptForm {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<AppendEncryptForm> for AppendEncrypt {
    type Error = String;

    fn try_from(form: AppendEncryptForm) -> Result<Self, String> {
        match form {
            AppendEncryptForm::Word(w) if w.eq_ignore_ascii_case("all") => Ok(AppendEncrypt::All),
            AppendEncryptForm::Word(w) if w.eq_ignore_ascii_case("none") => Ok(AppendEncrypt::None),
            AppendEncryptForm::Word(w) => Err(format!("'{w}' is not \"all\", \"none\" or a list of mailboxes")),
            AppendEncryptForm::List(list) => Ok(AppendEncrypt::Only(list)),
        }
    }
}

impl From<AppendEncrypt> for AppendEncryptForm {
    fn from(value: AppendEncrypt) -> Self {
        match value {
            AppendEncrypt::All => AppendEncryptForm::Word("all".into()),
            AppendEncrypt::None => AppendEncryptForm::Word("none".into()),
            AppendEncrypt::Only(list) => AppendEncryptForm::List(list),
        }
    }
}

/// Key discovery (`[keys]`): looking up recipients' keys over HTTPS when
/// the key store has none (see [`crate::discovery`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysConfig {
    /// Ask the recipient domain's Web Key Directory.
    #[serde(default = "default_wkd")]
    pub wkd: bool,
    /// Domains (subdomains included) whose Web Key Directory is never asked.
    #[serde(default)]
    pub wkd_disabled_domains: Vec<String>,
    /// A verifying keyserver (VKS API), such as `https://keys.openpgp.org`;
    /// off unless set (an empty string is off too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyserver: Option<String>,
    /// Seconds a look-up may hold up a message (the rest happens in the
    /// background).
    #[serde(default = "default_lookup_timeout")]
    pub lookup_timeout: u64,
    /// Extra trust anchors (PEM) for discovery's HTTPS servers, besides the
    /// system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Public-key pins (`sha256/BASE64`) per host name: that host must
    /// present a CA-valid certificate for one of these keys.
    #[serde(default)]
    pub pins: BTreeMap<String, Vec<String>>,
    /// What our `Autocrypt:` headers say we prefer (`prefer-encrypt`).
    #[serde(default)]
    pub prefer_encrypt: PreferEncrypt,
    /// Host name to `IP:PORT`: connect there instead of resolving the name
    /// (the certificate is still checked for the name). For tests and
    /// private deployments.
    #[serde(default)]
    pub connect_to: BTreeMap<String, SocketAddr>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            wkd: default_wkd(),
            wkd_disabled_domains: Vec::new(),
            keyserver: None,
            lookup_timeout: default_lookup_timeout(),
            ca_file: None,
            pins: BTreeMap::new(),
            prefer_encrypt: PreferEncrypt::default(),
            connect_to: BTreeMap::new(),
        }
    }
}

/// The Autocrypt `prefer-encrypt` setting of our accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreferEncrypt {
    /// No preference (the Autocrypt default; what Thunderbird sends).
    #[default]
    NoPreference,
    /// `prefer-encrypt=mutual`: peers who prefer it too encrypt by default.
    Mutual,
}

fn default_wkd() -> bool {
    true
}

fn default_lookup_timeout() -> u64 {
    3
}

/// One mail account: the login a client uses and the provider behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountConfig {
    /// The user name the client logs in with, forwarded upstream unchanged.
    pub login: String,
    /// The account's address, whose key signs (default: `login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The provider's submission server, `smtp://host:587` (STARTTLS,
    /// mandatory) or `smtps://host:465` (implicit TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// The provider's IMAP server, `imaps://host:993` (implicit TLS) or
    /// `imap://host:143` (STARTTLS, mandatory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<String>,
    /// Extra trust anchors (PEM) for private CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How the account's servers are authenticated: `tofu` (default),
    /// `ca`, `pin` or `ca+pin`.
    #[serde(default)]
    pub trust: TrustMode,
    /// Public-key pins (`sha256/BASE64`) for `pin` and `ca+pin`; several
    /// allowed, so a backup key can be pinned before a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
    /// A policy replacing the global one for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyConfig>,
}

impl AccountConfig {
    /// The address whose key signs: `address`, else `login`.
    pub fn address(&self) -> String {
        crate::pgp::normalize_email(self.address.as_deref().unwrap_or(&self.login))
    }
}

/// What the Prometheus metrics (`listen.metrics`) show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// Label the per-account series (messages, upstream failures) with
    /// the account's login. Off by default: a login is personal data,
    /// and with many accounts the series multiply.
    #[serde(default)]
    pub per_account: bool,
}

/// Log output settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `sealpost=debug`; `RUST_LOG`
    /// overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines on stderr.
    #[default]
    Human,
    /// One JSON object per line on stderr.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            passphrase_file: None,
            log: LogConfig::default(),
            listen: ListenConfig::default(),
            policy: PolicyConfig::default(),
            smtp: SmtpConfig::default(),
            imap: ImapConfig::default(),
            keys: KeysConfig::default(),
            metrics: MetricsConfig::default(),
            accounts: Vec::new(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").join("sealpost")
}

fn xdg_dir(var: &str, fallback_under_home: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(fallback_under_home),
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, e.g. `log.format` (empty for the file as a whole).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_empty() { "(config)" } else { &self.key };
        write!(f, "{key}: {}\n  hint: {}", self.message, self.hint)
    }
}

/// A configuration that was read and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged configuration.
    pub config: Config,
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
}

/// The configuration file to read: `explicit` (`--config`), else
/// `SEALPOST_CONFIG`, else `./sealpost.toml`, else
/// `$XDG_CONFIG_HOME/sealpost/sealpost.toml`, if they exist.
pub fn find_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, Problem> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SEALPOST_CONFIG").map(PathBuf::from));
    if let Some(path) = named {
        if path.is_file() {
            return Ok(Some(path));
        }
        return Err(Problem {
            key: String::new(),
            message: format!("configuration file {} does not exist", path.display()),
            hint: "check the path given with --config or SEALPOST_CONFIG; config/sealpost.example.toml is a starting point".into(),
        });
    }
    let candidates = [PathBuf::from("sealpost.toml"), user_file()];
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// The user's own configuration file,
/// `$XDG_CONFIG_HOME/sealpost/sealpost.toml`: where `init` writes and
/// every command looks last.
pub fn user_file() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config").join("sealpost").join("sealpost.toml")
}

/// Reads and validates the configuration, reporting every problem found.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, Vec<Problem>> {
    let file = find_file(explicit).map_err(|p| vec![p])?;
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(
        Env::prefixed("SEALPOST_")
            .filter(|key| !NON_CONFIG_ENV.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
            .split("__"),
    );

    let mut problems = unknown_keys(&figment);
    match figment.extract::<Config>() {
        Ok(config) => {
            problems.extend(validate(&config));
            if problems.is_empty() {
                return Ok(Loaded { config, file });
            }
        }
        Err(errors) => {
            // Unknown keys are not errors here (unknown_keys lists them all,
            // with full paths), so these are type and value errors.
            for e in errors {
                let origin = e
                    .metadata
                    .as_ref()
                    .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: e.path.join("."),
                    message: format!("{}{origin}", e.kind),
                    hint: "see config/sealpost.example.toml for the expected form".into(),
                });
            }
        }
    }
    Err(problems)
}

/// Tables whose keys are names chosen by the user (host names), not
/// configuration keys.
const FREE_TABLES: [&str; 2] = ["keys.pins", "keys.connect_to"];

/// Keys present in the merged configuration that Sealpost does not know.
fn unknown_keys(figment: &Figment) -> Vec<Problem> {
    let known = serde_keys(&Config::default());
    let mut problems = Vec::new();
    if let Ok(dict) = figment.extract::<Dict>() {
        walk(&dict, "", &mut |path| {
            if !known
                .iter()
                .any(|k| k == path || (k.starts_with(path) && k[path.len()..].starts_with('.')))
            {
                problems.push(Problem {
                    key: path.to_string(),
                    message: "unknown key".into(),
                    hint: "remove it or check its spelling against config/sealpost.example.toml".into(),
                });
                return false;
            }
            !FREE_TABLES.contains(&path)
        });
    }
    problems
}

/// Every key path of a fully populated value (optional keys included).
fn serde_keys(config: &Config) -> Vec<String> {
    let mut full = config.clone();
    full.passphrase_file = Some(PathBuf::new());
    full.listen.smtps = Some(default_smtp_listen());
    full.listen.imaps = Some(default_imap_listen());
    full.listen.tls_cert = Some(PathBuf::new());
    full.listen.tls_key = Some(PathBuf::new());
    full.listen.metrics = Some(default_smtp_listen());
    full.keys.keyserver = Some(String::new());
    full.keys.ca_file = Some(PathBuf::new());
    full.accounts = vec![AccountConfig {
        login: String::new(),
        address: Some(String::new()),
        smtp: Some(String::new()),
        imap: Some(String::new()),
        ca_file: Some(PathBuf::new()),
        trust: TrustMode::default(),
        pins: vec![String::new()],
        policy: Some(PolicyConfig::default()),
    }];
    let mut keys = Vec::new();
    if let Ok(Value::Dict(_, dict)) = Value::serialize(&full) {
        walk(&dict, "", &mut |path| {
            keys.push(path.to_string());
            true
        });
    }
    keys
}

/// Visits every key path; `visit` returns false to skip a subtree. Tables
/// inside arrays (`[[account]]`) share their array's path.
fn walk(dict: &Dict, prefix: &str, visit: &mut dyn FnMut(&str) -> bool) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if visit(&path) {
            walk_value(value, &path, visit);
        }
    }
}

fn walk_value(value: &Value, path: &str, visit: &mut dyn FnMut(&str) -> bool) {
    match value {
        Value::Dict(_, inner) => walk(inner, path, visit),
        Value::Array(_, items) => items.iter().for_each(|item| walk_value(item, path, visit)),
        _ => {}
    }
}

/// Checks what types alone cannot: paths, permissions, filter syntax.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !config.data_dir.is_absolute() {
        problems.push(Problem {
            key: "data_dir".into(),
            message: format!("{} is a relative path", config.data_dir.display()),
            hint: "use an absolute path so the proxy finds its keys whatever its working directory".into(),
        });
    } else if let Some(problem) = unusable_dir(&config.data_dir) {
        problems.push(Problem {
            key: "data_dir".into(),
            message: problem,
            hint: "create the directory or choose one this user can write".into(),
        });
    }
    if let Some(file) = &config.passphrase_file {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(file) {
            Err(e) => problems.push(Problem {
                key: "passphrase_file".into(),
                message: format!("cannot read {}: {e}", file.display()),
                hint: "create the file with the passphrase on its first line, or remove the key".into(),
            }),
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => problems.push(Problem {
                key: "passphrase_file".into(),
                message: format!("{} is readable by other users", file.display()),
                hint: format!("run 'chmod 600 {}'", file.display()),
            }),
            Ok(_) => {}
        }
    }
    problems.extend(validate_listen(&config.listen));
    problems.extend(validate_policy("policy", &config.policy));
    problems.extend(validate_accounts(&config.accounts));
    problems.extend(validate_keys(&config.keys));
    if !(1..=16).contains(&config.imap.side_connections) {
        problems.push(Problem {
            key: "imap.side_connections".into(),
            message: format!("{} is outside 1 to 16", config.imap.side_connections),
            hint: "use a small number: each one is a login at the provider, which limits them per user (2 is the default)".into(),
        });
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        problems.push(Problem {
            key: "log.level".into(),
            message: format!("'{}' is not a valid filter: {e}", config.log.level),
            hint: "use a level such as 'info' or 'debug', or directives like 'sealpost=debug'".into(),
        });
    }
    problems
}

fn validate_listen(listen: &ListenConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    match (&listen.tls_cert, &listen.tls_key) {
        (Some(_), None) | (None, Some(_)) => problems.push(Problem {
            key: "listen.tls_cert".into(),
            message: "tls_cert and tls_key must be given together".into(),
            hint: "set both, or neither to use the generated local certificate".into(),
        }),
        _ => {}
    }
    for (key, path) in [("listen.tls_cert", &listen.tls_cert), ("listen.tls_key", &listen.tls_key)] {
        if let Some(path) = path {
            if !path.is_file() {
                problems.push(Problem {
                    key: key.into(),
                    message: format!("{} does not exist", path.display()),
                    hint: "give a PEM file, or remove the key to use the generated local certificate".into(),
                });
            }
        }
    }
    let mut addresses = vec![
        ("listen.smtp", Some(listen.smtp)),
        ("listen.smtps", listen.smtps),
        ("listen.imap", Some(listen.imap)),
        ("listen.imaps", listen.imaps),
    ];
    // Port 0 asks the system for a free port: never a clash.
    addresses.retain(|(_, a)| a.is_some_and(|a| a.port() != 0));
    for (i, (key, addr)) in addresses.iter().enumerate() {
        if let Some((other, _)) = addresses[..i].iter().find(|(_, a)| a == addr) {
            problems.push(Problem {
                key: key.to_string(),
                message: format!("{} is also {other}", addr.expect("kept only set addresses")),
                hint: "give each listener its own port (1587 smtp, 1465 smtps, 1143 imap, 1993 imaps are usual)".into(),
            });
        }
    }
    if listen.max_connections == 0 {
        problems.push(Problem {
            key: "listen.max_connections".into(),
            message: "0 would refuse every client".into(),
            hint: "use a positive number such as 1000".into(),
        });
    }
    if listen.shutdown_grace > 3600 {
        problems.push(Problem {
            key: "listen.shutdown_grace".into(),
            message: format!("{} seconds is over an hour", listen.shutdown_grace),
            hint: "use a number of seconds from 0 to 3600 (10 is the default)".into(),
        });
    }
    problems
}

fn validate_policy(key: &str, policy: &PolicyConfig) -> Vec<Problem> {
    policy
        .require_encryption_for
        .iter()
        .filter(|entry| {
            let entry = entry.trim();
            entry.is_empty() || entry.contains(char::is_whitespace) || entry.starts_with('@') || entry.ends_with('@')
        })
        .map(|entry| Problem {
            key: format!("{key}.require_encryption_for"),
            message: format!("'{entry}' is neither a domain nor an address"),
            hint: "write a domain such as \"partner.example\" or an address such as \"ceo@corp.example\"".into(),
        })
        .collect()
}

fn validate_accounts(accounts: &[AccountConfig]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let key = |field: &str| format!("account[{i}].{field}");
        if account.login.trim().is_empty() {
            problems.push(Problem {
                key: key("login"),
                message: "empty login".into(),
                hint: "set login to the user name your mail client logs in with".into(),
            });
        }
        if accounts[..i].iter().any(|a| a.login.eq_ignore_ascii_case(&account.login)) {
            problems.push(Problem {
                key: key("login"),
                message: format!("login '{}' is configured twice", account.login),
                hint: "each login selects one account; remove the duplicate".into(),
            });
        }
        if !account.address().contains('@') {
            problems.push(Problem {
                key: key("address"),
                message: format!("'{}' is not an e-mail address", account.address()),
                hint: "set address = \"you@example.com\" when the login is not your address".into(),
            });
        }
        if account.smtp.is_none() && account.imap.is_none() {
            problems.push(Problem {
                key: key("smtp"),
                message: "neither a submission nor an IMAP server".into(),
                hint: "set smtp = \"smtp://smtp.example.com:587\" and/or imap = \"imaps://imap.example.com:993\"".into(),
            });
        }
        if let Some(url) = &account.smtp {
            if let Err(e) = ServerUrl::parse_smtp(url) {
                problems.push(Problem {
                    key: key("smtp"),
                    message: e,
                    hint: "write smtp://host:587 (STARTTLS, mandatory) or smtps://host:465 (implicit TLS)".into(),
                });
            }
        }
        if let Some(url) = &account.imap {
            if let Err(e) = ServerUrl::parse_imap(url) {
                problems.push(Problem {
                    key: key("imap"),
                    message: e,
                    hint: "write imaps://host:993 (implicit TLS) or imap://host:143 (STARTTLS, mandatory)".into(),
                });
            }
        }
        if let Some(ca) = &account.ca_file {
            if !ca.is_file() {
                problems.push(Problem {
                    key: key("ca_file"),
                    message: format!("{} does not exist", ca.display()),
                    hint: "give a PEM file with the extra trust anchors, or remove the key".into(),
                });
            }
        }
        for pin in &account.pins {
            if let Err(e) = Pin::parse(pin) {
                problems.push(Problem {
                    key: key("pins"),
                    message: e,
                    hint: "'sealpost pin fetch smtps://host:465' prints the pins of a server".into(),
                });
            }
        }
        if matches!(account.trust, TrustMode::Pin | TrustMode::CaAndPin) && account.pins.is_empty() {
            problems.push(Problem {
                key: key("pins"),
                message: "trust = \"pin\" or \"ca+pin\" needs at least one pin".into(),
                hint: "'sealpost pin fetch URL' prints the pins to paste; pin a backup key too".into(),
            });
        }
        if let Some(policy) = &account.policy {
            problems.extend(validate_policy(&key("policy"), policy));
        }
    }
    problems
}

fn validate_keys(keys: &KeysConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String, hint: &str| {
        problems.push(Problem {
            key,
            message,
            hint: hint.into(),
        })
    };
    if !(1..=60).contains(&keys.lookup_timeout) {
        problem(
            "keys.lookup_timeout".into(),
            format!("{} s is outside 1 to 60 seconds", keys.lookup_timeout),
            "a few seconds (default 3) keep a mail client from giving up on a slow directory; to turn discovery off set keys.wkd = false",
        );
    }
    for domain in &keys.wkd_disabled_domains {
        let d = domain.trim().trim_matches('.');
        if d.is_empty() || d.contains(['@', '/', ':']) || d.contains(char::is_whitespace) {
            problem(
                "keys.wkd_disabled_domains".into(),
                format!("'{domain}' is not a domain"),
                "write domains such as \"example.org\" (subdomains are included)",
            );
        }
    }
    if let Some(url) = keys.keyserver.as_deref().filter(|u| !u.trim().is_empty()) {
        if let Err(e) = HttpsUrl::parse(url) {
            problem(
                "keys.keyserver".into(),
                e,
                "write an https URL such as \"https://keys.openpgp.org\", or remove the key",
            );
        }
    }
    if let Some(ca) = &keys.ca_file {
        if !ca.is_file() {
            problem(
                "keys.ca_file".into(),
                format!("{} does not exist", ca.display()),
                "give a PEM file with the extra trust anchors, or remove the key",
            );
        }
    }
    let host_ok = |h: &str| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    for (host, pins) in &keys.pins {
        let key = format!("keys.pins.\"{host}\"");
        if !host_ok(host) {
            problem(
                key.clone(),
                format!("'{host}' is not a host name"),
                "key the table by the server's host name, e.g. \"openpgpkey.example.org\"",
            );
        }
        if pins.is_empty() {
            problem(key.clone(), "no pin given".into(), "list at least one pin, or remove the entry");
        }
        for pin in pins {
            if let Err(e) = Pin::parse(pin) {
                problem(key.clone(), e, "a pin is sha256/ and the base64 SHA-256 of the server's public key (see config/sealpost.example.toml); pin a backup key too");
            }
        }
    }
    for host in keys.connect_to.keys() {
        if !host_ok(host) {
            problem(
                format!("keys.connect_to.\"{host}\""),
                format!("'{host}' is not a host name"),
                "map a host name to an address, e.g. \"openpgpkey.example.org\" = \"127.0.0.1:8443\"",
            );
        }
    }
    problems
}

/// Why `dir` cannot hold Sealpost's data, if it cannot: it must be a
/// directory, or not exist yet under a writable existing ancestor.
fn unusable_dir(dir: &Path) -> Option<String> {
    let mut probe = dir;
    loop {
        match std::fs::metadata(probe) {
            Ok(meta) if !meta.is_dir() => return Some(format!("{} is not a directory", probe.display())),
            Ok(meta) => {
                if meta.permissions().readonly() {
                    return Some(format!("{} is not writable", probe.display()));
                }
                return None;
            }
            Err(_) => match probe.parent() {
                Some(parent) => probe = parent,
                None => return Some(format!("no existing parent of {}", dir.display())),
            },
        }
    }
}

#[cfg(test)]
// figment's Jail takes closures returning its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_states_every_default() {
        let text = include_str!("../config/sealpost.example.toml");
        let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap();
        assert_eq!(parsed, Config::default());
        assert!(unknown_keys(&Figment::from(Toml::string(text))).is_empty());
    }

    #[test]
    fn append_encrypt_takes_a_word_or_a_list() {
        let read = |toml: &str| {
            Figment::from(Toml::string(toml))
                .extract_inner::<AppendEncrypt>("imap.append_encrypt")
                .map_err(|e| e.to_string())
        };
        assert_eq!(read("[imap]\nappend_encrypt = \"none\"").unwrap(), AppendEncrypt::None);
        assert_eq!(read("[imap]\nappend_encrypt = \"ALL\"").unwrap(), AppendEncrypt::All);
        assert_eq!(
            read("[imap]\nappend_encrypt = [\"\\\\Drafts\", \"Archive\"]").unwrap(),
            AppendEncrypt::Only(vec!["\\Drafts".into(), "Archive".into()])
        );
        assert!(read("[imap]\nappend_encrypt = \"some\"").is_err());
    }

    /// Runs `f` in a jail with a clean environment and working directory.
    fn jail(f: impl FnOnce(&mut figment::Jail) -> figment::error::Result<()>) {
        figment::Jail::expect_with(f);
    }

    #[test]
    fn file_then_environment_override_defaults() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file(
                "sealpost.toml",
                &format!("data_dir = \"{}\"\n[log]\nformat = \"json\"\n", dir.display()),
            )?;
            j.set_env("SEALPOST_LOG__LEVEL", "debug");
            j.set_env("SEALPOST_PASSPHRASE", "not a config key");
            let loaded = load(None).map_err(|p| format!("{p:?}"))?;
            assert_eq!(loaded.config.data_dir, dir);
            assert_eq!(loaded.config.log.format, LogFormat::Json);
            assert_eq!(loaded.config.log.level, "debug");
            assert_eq!(loaded.file, Some(PathBuf::from("sealpost.toml")));
            Ok(())
        });
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        jail(|j| {
            j.create_file(
                "bad.toml",
                "data_dir = \"relative\"\ncolour = 1\n[log]\nformat = \"xml\"\nextra = true\n",
            )?;
            let problems = load(Some(Path::new("bad.toml"))).unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert!(keys.contains(&"colour"), "{problems:?}");
            assert!(keys.contains(&"log.extra"), "{problems:?}");
            assert!(keys.contains(&"log.format"), "{problems:?}");
            Ok(())
        });
    }

    #[test]
    fn semantic_checks() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file("pass", "secret")?;
            std::fs::set_permissions(dir.join("pass"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
            let config = Config {
                data_dir: dir.join("pass").join("sub"),
                passphrase_file: Some(dir.join("pass")),
                log: LogConfig {
                    format: LogFormat::Human,
                    level: "not a [filter".into(),
                },
                ..Config::default()
            };
            let problems = validate(&config);
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["data_dir", "passphrase_file", "log.level"], "{problems:?}");
            assert!(problems[1].hint.contains("chmod 600"));
            Ok(())
        });
    }

    #[test]
    fn accounts_and_policy_are_read_and_checked() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file(
                "sealpost.toml",
                &format!(
                    "data_dir = \"{}\"\n[policy]\nencrypt = \"always\"\non_missing_key = \"reject\"\nrequire_encryption_for = [\"partner.example\"]\n\
[[account]]\nlogin = \"alice@example.com\"\nsmtp = \"smtp://mail.example.com\"\n\
[[account]]\nlogin = \"bob\"\naddress = \"Bob@Example.com\"\nsmtp = \"smtps://[::1]:4650\"\n[account.policy]\nencrypt = \"never\"\n",
                    dir.display()
                ),
            )?;
            let config = load(None).map_err(|p| format!("{p:?}"))?.config;
            assert_eq!(config.policy.encrypt, EncryptMode::Always);
            assert_eq!(config.policy.on_missing_key, OnMissingKey::Reject);
            assert_eq!(config.accounts.len(), 2);
            assert_eq!(config.accounts[1].address(), "bob@example.com");
            assert_eq!(config.accounts[1].policy.as_ref().unwrap().encrypt, EncryptMode::Never);
            let url = ServerUrl::parse_smtp(config.accounts[0].smtp.as_deref().unwrap()).unwrap();
            assert_eq!((url.implicit_tls, url.host.as_str(), url.port), (false, "mail.example.com", 587));
            let url = ServerUrl::parse_smtp(config.accounts[1].smtp.as_deref().unwrap()).unwrap();
            assert_eq!((url.implicit_tls, url.host.as_str(), url.port), (true, "::1", 4650));

            j.create_file(
                "bad.toml",
                "[[account]]\nlogin = \"x\"\nsmtp = \"imap://h\"\ntypo = 1\n[[account]]\nlogin = \"X\"\n[policy]\nrequire_encryption_for = [\"@\"]\n",
            )?;
            let problems = load(Some(Path::new("bad.toml"))).unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            for expected in [
                "account.typo",
                "account[0].smtp",
                "account[0].address",
                "account[1].login",
                "account[1].smtp",
                "policy.require_encryption_for",
            ] {
                assert!(keys.contains(&expected), "{expected} not in {keys:?}");
            }
            Ok(())
        });
    }

    #[test]
    fn keys_section_is_read_and_checked() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file(
                "sealpost.toml",
                &format!(
                    "data_dir = \"{}\"\n[keys]\nwkd = false\nwkd_disabled_domains = [\"corp.example\"]\nkeyserver = \"https://keys.openpgp.org\"\nlookup_timeout = 5\n\
[keys.pins]\n\"openpgpkey.example.org\" = [\"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"]\n\
[keys.connect_to]\n\"openpgpkey.example.org\" = \"127.0.0.1:8443\"\n",
                    dir.display()
                ),
            )?;
            let keys = load(None).map_err(|p| format!("{p:?}"))?.config.keys;
            assert!(!keys.wkd);
            assert_eq!(keys.wkd_disabled_domains, ["corp.example"]);
            assert_eq!(keys.keyserver.as_deref(), Some("https://keys.openpgp.org"));
            assert_eq!(keys.lookup_timeout, 5);
            assert_eq!(keys.pins["openpgpkey.example.org"].len(), 1);
            assert_eq!(keys.connect_to["openpgpkey.example.org"], SocketAddr::from(([127, 0, 0, 1], 8443)));

            j.create_file(
                "bad.toml",
                "[keys]\ntypo = 1\nlookup_timeout = 0\nwkd_disabled_domains = [\"a@b\"]\nkeyserver = \"http://keys.example\"\nca_file = \"/nonexistent.pem\"\n\
[keys.pins]\n\"h.example\" = [\"nope\"]\n\"bad host\" = []\n[keys.connect_to]\n\"x.example\" = \"127.0.0.1:1\"\n",
            )?;
            let problems = load(Some(Path::new("bad.toml"))).unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            for expected in [
                "keys.typo",
                "keys.lookup_timeout",
                "keys.wkd_disabled_domains",
                "keys.keyserver",
                "keys.ca_file",
                "keys.pins.\"h.example\"",
                "keys.pins.\"bad host\"",
            ] {
                assert!(keys.contains(&expected), "{expected} not in {problems:?}");
            }
            assert!(!keys.iter().any(|k| k.starts_with("keys.connect_to")), "{problems:?}");

            j.create_file("bad2.toml", "[keys.connect_to]\n\"x.example\" = \"not an address\"\n")?;
            let problems = load(Some(Path::new("bad2.toml"))).unwrap_err();
            assert!(problems.iter().any(|p| p.key.starts_with("keys.connect_to")), "{problems:?}");
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        jail(|_| {
            let problems = load(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(problems[0].message.contains("does not exist"));
            Ok(())
        });
    }
}
