//! What `sealpost init` does besides asking questions: record the keys of
//! the provider's servers on first contact, write the configuration file
//! (never over an existing one unless told to), and say what to enter in
//! the mail clients.
//!
//! First contact goes through the very code `serve` uses (the account's
//! connector, the protocols' STARTTLS), so the pins recorded here are
//! exactly the ones `serve` will require. Keys, the local certificate and
//! the prompts are the callers' business.

use std::path::{Path, PathBuf};

use crate::account::{self, AccountError};
use crate::config::{Config, ListenConfig};
use crate::tls::{PinRecord, PinStore, TlsError};
use crate::upstream::UpstreamError;
use crate::url::ServerUrl;

/// Why a set-up step failed, worded with what to do.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration file exists and `--force` was not given.
    #[error("{} exists already; nothing was changed. Pass --force to replace it, or --config OTHER_FILE to write elsewhere", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file or its directory could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause (in the message, not a separate source: `{:#}` would
        /// print it twice).
        cause: std::io::Error,
    },
    /// The async runtime for the connections could not start.
    #[error("cannot start the runtime for the connections: {0}")]
    Runtime(std::io::Error),
    /// The configuration could not be turned into TOML.
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(String),
    /// The account's TLS settings are unusable.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A server could not be reached or its TLS not verified.
    #[error("first contact with {server} failed: {cause}. No configuration was written; fix this, then run 'sealpost init' again")]
    Contact {
        /// The URL.
        server: String,
        /// The cause (in the message, as for `Write`).
        cause: UpstreamError,
    },
    /// The pin file could not be read.
    #[error(transparent)]
    Pins(#[from] TlsError),
}

/// The key recorded (or found recorded) for one server.
#[derive(Debug, Clone)]
pub struct FirstContact {
    /// The server's URL as configured.
    pub url: String,
    /// `host:port`, as `pins.toml` and `sealpost pin` name it.
    pub server: String,
    /// What is recorded.
    pub record: PinRecord,
    /// False when the key was recorded before this run (and matched).
    pub new: bool,
}

/// Connects to every server of every account in `config` as `serve` would
/// (trust on first use records the key, CA-checked; a key recorded before
/// must match) and returns what `pins.toml` holds for each.
pub fn record_first_contact(config: &Config) -> Result<Vec<FirstContact>, SetupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)?;
    let store = PinStore::new(&config.data_dir);
    let mut contacts = Vec::new();
    for account in &config.accounts {
        let connector = account::connector(account, &config.data_dir)?;
        let servers = [(account.imap.as_deref(), true), (account.smtp.as_deref(), false)];
        for (url, is_imap) in servers.into_iter().filter_map(|(url, imap)| url.map(|u| (u, imap))) {
            let parsed = if is_imap {
                ServerUrl::parse_imap(url)
            } else {
                ServerUrl::parse_smtp(url)
            };
            // validate() has refused bad URLs before anything connects.
            let parsed = parsed.map_err(|reason| AccountError::Url {
                login: account.login.clone(),
                reason,
            })?;
            let server = format!("{}:{}", parsed.host, parsed.port);
            let before = store.get(&server)?;
            let contact = |cause| SetupError::Contact {
                server: url.to_string(),
                cause,
            };
            runtime
                .block_on(async {
                    if is_imap {
                        crate::imap::upstream::Upstream::connect(&parsed, &connector).await.map(drop)
                    } else {
                        let upstream = crate::smtp::upstream::Upstream::connect(&parsed, &connector, &config.listen.hostname).await?;
                        upstream.quit().await;
                        Ok(())
                    }
                })
                .map_err(contact)?;
            let record = store.get(&server)?.ok_or_else(|| SetupError::Contact {
                server: url.to_string(),
                cause: UpstreamError::protocol(&server, "no key was recorded (is trust set to \"tofu\"?)"),
            })?;
            contacts.push(FirstContact {
                url: url.to_string(),
                server,
                record,
                new: before.is_none(),
            });
        }
    }
    Ok(contacts)
}

/// The configuration file `init` writes: what differs from the defaults
/// for a set-up (data_dir, listeners, accounts), under a header saying
/// where the rest is documented.
pub fn render(config: &Config, preset_title: &str) -> Result<String, SetupError> {
    let serialize = |e: toml::ser::Error| SetupError::Serialize(e.to_string());
    let toml::Value::Table(mut full) = toml::Value::try_from(config).map_err(serialize)? else {
        return Err(SetupError::Serialize("the configuration is not a table".into()));
    };
    full.retain(|key, _| ["data_dir", "passphrase_file", "listen", "account"].contains(&key));
    let mut body = toml::to_string(&full).map_err(serialize)?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(format!(
        "# Written by 'sealpost init' (preset: {preset_title}).\n\
# Every key, with its default: config/sealpost.example.toml. Check with 'sealpost check'.\n\
# The server keys seen on first contact are in data_dir/pins.toml ('sealpost pin list').\n\n{body}"
    ))
}

/// Writes `text` to `path`, creating its directory; an existing file is
/// replaced only when `force` is given.
pub fn write_config(path: &Path, text: &str, force: bool) -> Result<(), SetupError> {
    let failed = |cause| SetupError::Write {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        // create_new: no window between checking and writing.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => SetupError::Exists { path: path.to_path_buf() },
        _ => failed(e),
    })?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(failed)
}

/// What to enter in Thunderbird, Outlook and Apple Mail to use Sealpost's
/// listeners as `login`, and the local certificate's fingerprint to
/// compare when the client shows it.
pub fn client_instructions(listen: &ListenConfig, login: &str, fingerprint: &str) -> String {
    // Implicit TLS where configured: every client offers it on any port,
    // while clients differ in whether "TLS" on an unusual port means
    // STARTTLS.
    let (imap, imap_security) = listen.imaps.map(|a| (a, "SSL/TLS")).unwrap_or((listen.imap, "STARTTLS"));
    let (smtp, smtp_security) = listen.smtps.map(|a| (a, "SSL/TLS")).unwrap_or((listen.smtp, "STARTTLS"));
    let (imap_host, imap_port, smtp_host, smtp_port) = (imap.ip(), imap.port(), smtp.ip(), smtp.port());
    let mut lines = vec![
        "Mail client settings (the password is the one your provider expects; Sealpost passes it on):".to_string(),
        format!("  incoming  IMAP  server {imap_host}  port {imap_port}  security {imap_security}  user name {login}"),
        format!("  outgoing  SMTP  server {smtp_host}  port {smtp_port}  security {smtp_security}  user name {login}"),
    ];
    if listen.imaps.is_some() || listen.smtps.is_some() {
        lines.push(format!(
            "  (or STARTTLS: IMAP port {}, SMTP port {})",
            listen.imap.port(),
            listen.smtp.port()
        ));
    }
    lines.extend([
        String::new(),
        "Thunderbird: Account Settings > Account Actions > Add Mail Account, then \"Configure manually\":".into(),
        format!("  Incoming server: IMAP, hostname {imap_host}, port {imap_port}, connection security {imap_security}, authentication \"Normal password\", username {login}"),
        format!("  Outgoing server: SMTP, hostname {smtp_host}, port {smtp_port}, connection security {smtp_security}, authentication \"Normal password\", username {login}"),
        String::new(),
        "Outlook (classic): File > Add Account > Advanced options > \"Let me set up my account manually\" > IMAP:".into(),
        format!("  Incoming mail: server {imap_host}, port {imap_port}, encryption method {imap_security}"),
        format!("  Outgoing mail: server {smtp_host}, port {smtp_port}, encryption method {smtp_security}"),
        format!("  User name: {login}"),
        String::new(),
        "Apple Mail: Mail > Add Account > Other Mail Account, then:".into(),
        format!("  Incoming Mail Server {imap_host}, Outgoing Mail Server {smtp_host}, User Name {login}"),
        "  then in Settings > Accounts > Server Settings, untick \"Automatically manage connection settings\":".into(),
        format!("  IMAP port {imap_port}, SMTP port {smtp_port}, \"Use TLS/SSL\" ticked for both"),
        String::new(),
        "The first connection shows a warning about Sealpost's own certificate (it is self-signed).".into(),
        "Accept it only if its SHA-256 fingerprint is:".into(),
        format!("  {fingerprint}"),
    ]);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, AccountConfig};

    #[test]
    fn the_written_file_reads_back_as_the_same_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            accounts: vec![AccountConfig {
                login: "alice@example.org".into(),
                address: None,
                smtp: Some("smtp://mail.example.org:587".into()),
                imap: Some("imaps://mail.example.org:993".into()),
                ca_file: None,
                trust: Default::default(),
                pins: Vec::new(),
                policy: None,
            }],
            ..Config::default()
        };
        config.listen.imaps = Some("127.0.0.1:1993".parse().unwrap());
        let text = render(&config, "Own server").unwrap();
        assert!(text.starts_with("# Written by 'sealpost init'"), "{text}");
        let path = dir.path().join("conf/sealpost.toml");
        write_config(&path, &text, false).unwrap();
        let loaded = crate::config::load(Some(&path)).unwrap();
        assert_eq!(loaded.config.accounts, config.accounts);
        assert_eq!(loaded.config.listen, config.listen);
        assert_eq!(validate(&loaded.config), Vec::new());

        let again = write_config(&path, "changed", false).unwrap_err().to_string();
        assert!(again.contains("exists already") && again.contains("--force"), "{again}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        write_config(&path, "changed", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "changed");
    }

    #[test]
    fn instructions_name_every_client_port_and_fingerprint() {
        let mut listen = ListenConfig::default();
        let text = client_instructions(&listen, "bob@example.net", "AB:CD");
        assert!(
            text.contains("port 1143") && text.contains("STARTTLS") && !text.contains("SSL/TLS"),
            "{text}"
        );
        listen.imaps = Some("127.0.0.1:1993".parse().unwrap());
        listen.smtps = Some("127.0.0.1:1465".parse().unwrap());
        let text = client_instructions(&listen, "bob@example.net", "AB:CD");
        for needle in [
            "Thunderbird",
            "Outlook",
            "Apple Mail",
            "port 1993",
            "port 1465",
            "bob@example.net",
            "AB:CD",
            "IMAP port 1143",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
    }
}
