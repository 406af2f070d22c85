#![forbid(unsafe_code)]
//! The `sealpost` command: a thin layer over the library that reads
//! arguments, loads the configuration and turns errors into messages and
//! exit codes (0 success, 1 failure, 2 configuration or usage error).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sealpost::account::Accounts;
use sealpost::config::{self, Config};
use sealpost::discovery::{Discovery, Lookup};
use sealpost::learn::Learner;
use sealpost::message::{decrypt_message, encrypt_message, protection, sign_message, Envelope, Protection};
use sealpost::pgp::{KeyState, Keystore, Learned, LiveKeystore, PassphraseSource, StoredKey, UnlockedKey};
use sealpost::presets;
use sealpost::setup::SetupError;
use sealpost::store::peers::PeerStore;
use sealpost::store::SearchIndex;
use sealpost::tls::{fetch_chain, ChainEntry, FetchTarget, LocalTls, PinRecord, PinStore};
use sequoia_openpgp::serialize::Serialize;

#[derive(Parser)]
#[command(name = "sealpost", version, about = "Transparent OpenPGP encryption for the mail you already have")]
struct Cli {
    /// Configuration file (default: $SEALPOST_CONFIG, ./sealpost.toml,
    /// $XDG_CONFIG_HOME/sealpost/sealpost.toml)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up a working configuration: provider preset, key, local
    /// certificate, the provider's server keys, and the mail client settings
    ///
    /// The file goes to --config FILE, else $SEALPOST_CONFIG, else
    /// $XDG_CONFIG_HOME/sealpost/sealpost.toml, and an existing one is
    /// replaced only with --force.
    Init(InitArgs),
    /// Validate the configuration and print every problem found
    Check,
    /// Manage your keys and your correspondents' keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign and encrypt a message read on stdin (PGP/MIME, header protection)
    Encrypt(EncryptArgs),
    /// Decrypt and verify a message read on stdin, as a mail client should see it
    Decrypt,
    /// Run the proxies configured in the file until stopped (SIGINT/SIGTERM);
    /// SIGHUP reloads the configuration (see 'reload')
    Serve {
        /// Once every listener is bound, write their addresses to this
        /// file (TOML, e.g. imap = "127.0.0.1:40123"): useful with port 0,
        /// which lets the system pick a free port
        #[arg(long, value_name = "FILE")]
        bound_addresses: Option<std::path::PathBuf>,
    },
    /// Check the configuration, keys, listeners and servers, one line each
    ///
    /// Each account's key must unlock and not expire within 30 days; each
    /// listener address must be free or held by this Sealpost; each server
    /// must be reachable with TLS (STARTTLS where the URL says), its key
    /// matching the pin, and offer a way to log in. Nothing is recorded.
    /// Exits 1 when a check fails.
    Doctor,
    /// Make the running 'sealpost serve' read its configuration, keys and
    /// pins again, for new sessions
    ///
    /// Checks the file as 'check' does, then sends SIGHUP to the process
    /// in data_dir/sealpost.pid. Open sessions finish on the configuration
    /// they started with; a reload that cannot be applied is refused and
    /// logged, and the running configuration stays.
    Reload,
    /// Print the local certificate's SHA-256 fingerprint (to compare with
    /// what the mail client shows), generating the certificate if needed
    LocalCert,
    /// Inspect and manage the keys of upstream servers (certificate pinning)
    #[command(subcommand)]
    Pin(PinCommand),
    /// Inspect and rebuild the search indexes (SEARCH over encrypted mail)
    #[command(subcommand)]
    Index(IndexCommand),
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Per account and mailbox: messages indexed, messages missing (as of
    /// the last time the server was asked), size on disk
    Status,
    /// Empty an account's index (all accounts without ACCOUNT); a running
    /// Sealpost rebuilds it from the server as clients search and in the
    /// background
    Rebuild {
        /// The account's login
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum PinCommand {
    /// Connect to a server and print its certificate chain, each key's pin and the config line to paste
    Fetch {
        /// smtp://host:587, smtps://host:465, imap://host:143 or imaps://host:993
        url: String,
    },
    /// List the server keys recorded on first contact (trust = "tofu")
    List,
    /// Record the key a server presents now, after a legitimate key change
    Accept {
        /// HOST:PORT (the protocol is taken from the configured accounts or the port), or a URL
        server: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Forget the recorded key of a server; the next connection records anew
    Forget {
        /// HOST:PORT
        server: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an Ed25519/Cv25519 key for one of your addresses
    Generate {
        /// The address the key is for
        email: String,
        /// Store the secret key without passphrase protection
        #[arg(long)]
        no_passphrase: bool,
        /// Make an RFC 9580 (v6) key; GnuPG and Thunderbird cannot read these yet
        #[arg(long)]
        v6: bool,
    },
    /// Import keys (armored or binary, public or secret, several per file)
    Import {
        /// Files to read ("-" for stdin)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List every key with its addresses, state and source
    List,
    /// Print the keys for an address, armored
    Export {
        /// The address
        email: String,
        /// Include the (passphrase-protected) secret key
        #[arg(long)]
        secret: bool,
    },
    /// Remove a key by fingerprint
    Remove {
        /// The fingerprint as shown by 'sealpost keys list'
        fingerprint: String,
    },
    /// Fetch correspondents' keys again from their Web Key Directory (or
    /// the keyserver) to pick up updates, revocations and new keys
    Refresh,
    /// Learn correspondents' keys from a received message (its Autocrypt
    /// header, and the gossip inside when it is encrypted to you)
    Learn {
        /// The message ("-" for stdin)
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

#[derive(Args)]
struct InitArgs {
    /// Ask nothing: every answer comes from the flags, and a missing one is an error
    #[arg(long)]
    non_interactive: bool,
    /// Your email address; also the user name your mail client logs in with
    #[arg(long, value_name = "ADDR")]
    address: Option<String>,
    /// The provider preset: gmail, outlook, fastmail, icloud, yahoo, posteo, mailbox-org, gmx, or generic
    /// (your own server, with --imap and --smtp); default: the one for the address's domain
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
    /// The IMAP server, imaps://HOST:993 (implicit TLS) or imap://HOST:143 (STARTTLS), instead of the preset's
    #[arg(long, value_name = "URL")]
    imap: Option<String>,
    /// The submission server, smtps://HOST:465 (implicit TLS) or smtp://HOST:587 (STARTTLS), instead of the preset's
    #[arg(long, value_name = "URL")]
    smtp: Option<String>,
    /// Extra trust anchors (PEM) for a server with a private CA (the account's ca_file)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Import your secret key from this file (armored or binary) instead of generating one
    #[arg(long, value_name = "FILE")]
    import_key: Option<PathBuf>,
    /// Where Sealpost keeps keys, pins and caches (default: $XDG_DATA_HOME/sealpost)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Replace an existing configuration file
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct EncryptArgs {
    /// Sender address (default: the From header); its key signs
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// Recipient address, repeatable (default: To, Cc and Bcc)
    #[arg(long = "to", value_name = "ADDR")]
    to: Vec<String>,
    /// Sign only (multipart/signed), do not encrypt
    #[arg(long)]
    sign_only: bool,
    /// Write each copy to a file here: needed when Bcc recipients get their
    /// own copies
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Init(args) = cli.command {
        // There is no configuration to load yet: init writes it.
        // Warnings only: init reports each step itself.
        sealpost::logging::init(&config::LogConfig {
            level: "warn".into(),
            ..config::LogConfig::default()
        });
        return match init(cli.config, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sealpost: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let loaded = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(problems) if matches!(cli.command, Command::Doctor) => {
            for finding in sealpost::doctor::config_problems(&problems) {
                println!("{finding}");
            }
            println!("the configuration must load before anything else can be checked");
            return ExitCode::FAILURE;
        }
        Err(problems) => {
            eprintln!("sealpost: the configuration has {} problem(s):", problems.len());
            for p in &problems {
                eprintln!("- {p}");
            }
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Doctor) {
        // Its connections would log first contacts it does not keep:
        // warnings only, the findings say the rest.
        sealpost::logging::init(&config::LogConfig {
            level: "warn".into(),
            ..loaded.config.log.clone()
        });
    } else {
        sealpost::logging::init(&loaded.config.log);
    }
    let outcome = match cli.command {
        Command::Init(_) => unreachable!("handled before the configuration is loaded"),
        Command::Check => {
            let file = loaded
                .file
                .as_deref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "none (defaults and environment)".into());
            println!("configuration OK\n  file: {file}\n  data_dir: {}", loaded.config.data_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(command) => keys(&loaded.config, command).map(|()| ExitCode::SUCCESS),
        Command::Encrypt(args) => encrypt(&loaded.config, args).map(|()| ExitCode::SUCCESS),
        Command::Decrypt => decrypt(&loaded.config),
        Command::Serve { bound_addresses } => sealpost::serve::run(&loaded, &passphrases(&loaded.config), bound_addresses.as_deref())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Doctor => Ok(doctor(&loaded)),
        Command::Reload => reload(&loaded.config).map(|()| ExitCode::SUCCESS),
        Command::LocalCert => local_cert(&loaded.config).map(|()| ExitCode::SUCCESS),
        Command::Pin(command) => pin(&loaded.config, command).map(|()| ExitCode::SUCCESS),
        Command::Index(command) => index(&loaded.config, command).map(|()| ExitCode::SUCCESS),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealpost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `index status` and `index rebuild`.
fn index(config: &Config, command: IndexCommand) -> Result<()> {
    let store = Keystore::open(&config.data_dir)?;
    let accounts = Accounts::load(config, &store, &passphrases(config))?;
    let wanted = match &command {
        IndexCommand::Rebuild { account: Some(login) } => {
            if accounts.find(login).is_none_or(|a| a.imap.is_none()) {
                bail!("no account {login} with an IMAP server in the configuration; 'sealpost check' lists the problems of the file");
            }
            Some(login.clone())
        }
        _ => None,
    };
    for account in accounts.iter().filter(|a| a.imap.is_some()) {
        if wanted.as_ref().is_some_and(|w| !w.eq_ignore_ascii_case(&account.login)) {
            continue;
        }
        let index = SearchIndex::open(&SearchIndex::dir_for(&config.data_dir, &account.login), &account.key)?;
        match command {
            IndexCommand::Status => {
                println!(
                    "{}: {} on disk in {}",
                    account.login,
                    human_size(index.size_on_disk()),
                    index.dir().display()
                );
                let stats = index.stats()?;
                if stats.is_empty() {
                    println!("  nothing indexed yet: Sealpost indexes once a client has logged in through it");
                }
                for mailbox in stats {
                    let missing = match mailbox.on_server {
                        Some(on_server) => format!("{} missing", on_server.saturating_sub(mailbox.messages)),
                        None => "missing unknown".into(),
                    };
                    let checked = mailbox
                        .checked
                        .map(|t| format!(" (server asked {})", utc_time(t)))
                        .unwrap_or_default();
                    let mut partial = String::new();
                    if mailbox.over_limit > 0 {
                        partial += &format!(", {} by their header only (over imap.max_message_size)", mailbox.over_limit);
                    }
                    if mailbox.plaintext_headers > 0 {
                        partial += &format!(
                            ", {} plaintext by their header (imap.search = \"hybrid\": the server searches their bodies)",
                            mailbox.plaintext_headers
                        );
                    }
                    println!(
                        "  {}: {} indexed{partial}, {missing}{checked}",
                        String::from_utf8_lossy(&mailbox.name),
                        mailbox.messages
                    );
                }
            }
            IndexCommand::Rebuild { .. } => {
                index.clear()?;
                println!(
                    "{}: index emptied; a running Sealpost rebuilds it from the server as clients search, and in its background pass",
                    account.login
                );
            }
        }
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// `yyyy-mm-dd hh:mm UTC` for seconds since the epoch.
fn utc_time(seconds: i64) -> String {
    let date = format_date(UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64));
    format!(
        "{date} {:02}:{:02} UTC",
        seconds.rem_euclid(86_400) / 3600,
        seconds.rem_euclid(3600) / 60
    )
}

fn passphrases(config: &Config) -> PassphraseSource {
    PassphraseSource::from_env_or(config.passphrase_file.clone())
}

fn keys(config: &Config, command: KeysCommand) -> Result<()> {
    let mut store = Keystore::open(&config.data_dir)?;
    match command {
        KeysCommand::Generate { email, no_passphrase, v6 } => {
            println!("{}", generate_key(config, &mut store, &email, no_passphrase, v6)?);
        }
        KeysCommand::Import { files } => import_keys(&mut store, &files)?,
        KeysCommand::List => {
            print_key_table(&store);
            print_peer_table(config)?;
        }
        KeysCommand::Learn { file } => learn(config, store, &file)?,
        KeysCommand::Refresh => refresh(config, store)?,
        KeysCommand::Export { email, secret } => {
            let matching = store.certs_for(&email);
            if matching.is_empty() {
                bail!("no key for <{email}>; see 'sealpost keys list'");
            }
            let mut out = std::io::stdout().lock();
            for key in matching {
                if secret {
                    if !key.is_own() {
                        bail!("no secret key for <{email}> ({} is someone else's public key)", key.fingerprint());
                    }
                    key.cert.as_tsk().armored().serialize(&mut out)?;
                } else {
                    key.cert.armored().serialize(&mut out)?;
                }
            }
        }
        KeysCommand::Remove { fingerprint } => {
            let removed = store.remove(&fingerprint)?;
            println!("removed {} ({})", removed.fingerprint(), removed.emails().join(", "));
        }
    }
    Ok(())
}

/// `keys generate`, and `init` without a key: a new key for `email`,
/// protected by a passphrase unless `no_passphrase`. Returns its
/// fingerprint.
fn generate_key(config: &Config, store: &mut Keystore, email: &str, no_passphrase: bool, v6: bool) -> Result<String> {
    let passphrase = if no_passphrase {
        None
    } else {
        let passphrase = passphrases(config)
            .get("new key", &format!("the new key of <{email}>"), true)
            .context("a new key needs a passphrase")?;
        if passphrase.map(|p| p.is_empty()) {
            bail!(
                "the passphrase is empty; choose one (keys generate also takes --no-passphrase, to store the key unprotected deliberately)"
            );
        }
        Some(passphrase)
    };
    let fingerprint = store.generate(email, passphrase, v6)?.fingerprint();
    if no_passphrase {
        eprintln!(
            "warning: the secret key is stored without a passphrase; anyone who can read {} can use it",
            config.data_dir.display()
        );
    }
    Ok(fingerprint)
}

/// `keys import`, and `init --import-key`: every key in `files`.
fn import_keys(store: &mut Keystore, files: &[PathBuf]) -> Result<()> {
    for file in files {
        let (bytes, name) = read_input(file)?;
        for fpr in store.import(&bytes, &name)? {
            println!("imported {fpr}");
        }
    }
    Ok(())
}

fn print_key_table(store: &Keystore) {
    let header = ["EMAIL", "FINGERPRINT", "ALGORITHM", "EXPIRES", "STATE", "SOURCE", "OWNER", "USED"];
    let rows: Vec<[String; 8]> = store
        .keys()
        .iter()
        .map(|k| {
            [
                k.emails().join(","),
                k.fingerprint(),
                k.algorithm(),
                k.expiry().map(format_date).unwrap_or_else(|| "never".into()),
                k.state().to_string(),
                k.source.to_string(),
                if k.is_own() { "own".into() } else { "peer".into() },
                used(store, k),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

/// Whether `key` is the one mail to its addresses is encrypted to, and if
/// not, which key is.
fn used(store: &Keystore, key: &StoredKey) -> String {
    for email in key.emails() {
        if let Ok(in_use) = store.recipient_key(&email) {
            if in_use.fingerprint() != key.fingerprint() {
                return format!("no: {} key {} for {email}", in_use.source, in_use.fingerprint());
            }
        }
    }
    if store.keys().iter().any(|k| k.fingerprint() == key.fingerprint()) && key.state() == KeyState::Valid {
        "yes".into()
    } else {
        "no".into()
    }
}

/// The Autocrypt state of correspondents, when there is any.
fn print_peer_table(config: &Config) -> Result<()> {
    let peers = PeerStore::new(&config.data_dir).all()?;
    if peers.is_empty() {
        return Ok(());
    }
    println!("\nAutocrypt peers:");
    let header = ["ADDRESS", "RECOMMENDATION", "LAST SEEN", "AUTOCRYPT KEY", "GOSSIP KEY"];
    let seconds = |s: u64| {
        if s == 0 {
            "-".to_string()
        } else {
            format_date(UNIX_EPOCH + std::time::Duration::from_secs(s))
        }
    };
    let rows: Vec<[String; 5]> = peers
        .iter()
        .map(|(addr, peer)| {
            [
                addr.clone(),
                peer.recommendation(false).to_string(),
                seconds(peer.last_seen),
                peer.public_key.clone().unwrap_or_else(|| "-".into()),
                peer.gossip_key.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&header, &rows);
    Ok(())
}

/// Prints rows under a header, columns padded to their widest cell.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `YYYY-MM-DD` in UTC (Howard Hinnant's days-to-civil algorithm).
fn format_date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn read_input(path: &Path) -> Result<(Vec<u8>, String)> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("reading stdin")?;
        return Ok((bytes, "stdin".into()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((bytes, path.display().to_string()))
}

fn unlock_sender(config: &Config, store: &Keystore, sender: &str) -> Result<UnlockedKey> {
    let own = store.own_key(sender)?;
    let mut key = store.unlock(own, &passphrases(config))?;
    key.prefer_encrypt_mutual = config.keys.prefer_encrypt == config::PreferEncrypt::Mutual;
    Ok(key)
}

fn encrypt(config: &Config, args: EncryptArgs) -> Result<()> {
    let (message, _) = read_input(Path::new("-"))?;
    let store = Keystore::open(&config.data_dir)?;
    if args.sign_only {
        let sender_email = Envelope::sender(&message, args.from.as_deref())?;
        let sender = unlock_sender(config, &store, &sender_email)?;
        let signed = sign_message(&message, &sender_email, &sender)?;
        std::io::stdout().lock().write_all(&signed)?;
        return Ok(());
    }
    let envelope = Envelope::resolve(&message, args.from.as_deref(), &args.to)?;
    let sender = unlock_sender(config, &store, &envelope.sender)?;
    let copies = encrypt_message(&message, &envelope, &sender, &store)?;
    match (copies.as_slice(), args.output_dir) {
        ([only], None) => std::io::stdout().lock().write_all(&only.message)?,
        (_, Some(dir)) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for copy in &copies {
                let name = if copy.is_bcc {
                    format!("bcc-{}.eml", copy.recipients.join("_"))
                } else {
                    "visible.eml".to_string()
                };
                let path = dir.join(name);
                std::fs::write(&path, &copy.message).with_context(|| format!("writing {}", path.display()))?;
                println!("{}\t{}", path.display(), copy.recipients.join(","));
            }
        }
        (_, None) => bail!(
            "the message has Bcc recipients, who each get a separately encrypted copy; pass --output-dir DIR to receive one file per copy"
        ),
    }
    Ok(())
}

/// Every own key that unlocks (a warning for each that does not).
fn unlock_own_keys(config: &Config, store: &Keystore) -> Vec<UnlockedKey> {
    let source = passphrases(config);
    let mut keys = Vec::new();
    for own in store.own_keys() {
        match store.unlock(own, &source) {
            Ok(key) => keys.push(key),
            Err(e) => eprintln!("sealpost: warning: {e}"),
        }
    }
    keys
}

fn decrypt(config: &Config) -> Result<ExitCode> {
    let (message, _) = read_input(Path::new("-"))?;
    let store = Keystore::open(&config.data_dir)?;
    let keys = unlock_own_keys(config, &store);
    let outcome = decrypt_message(&message, &keys, &store);
    std::io::stdout().lock().write_all(&outcome.message)?;
    if outcome.status.is_failure() {
        eprintln!("sealpost: {}", outcome.status.header_value());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys refresh`: every correspondent's address asked again (WKD, then
/// the keyserver), what comes back merged or stored by the usual rules.
fn refresh(config: &Config, store: Keystore) -> Result<()> {
    let discovery = Discovery::new(&config.keys, &config.data_dir)?;
    if !discovery.is_enabled() {
        bail!("key discovery is off: set keys.wkd = true or keys.keyserver in the configuration");
    }
    let mut addresses: Vec<String> = store.keys().iter().filter(|k| !k.is_own()).flat_map(|k| k.emails()).collect();
    addresses.sort();
    addresses.dedup();
    let live = Arc::new(LiveKeystore::new(config.data_dir.clone(), store));
    let learner = Learner::new(live, &config.data_dir, None);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for addr in addresses.iter().filter(|a| discovery.applies_to(a)) {
        match runtime.block_on(discovery.refresh(addr)) {
            Lookup::Found { certs, source, url } => {
                let lessons = learner.adopt(&certs, addr, source.into())?;
                if lessons.is_empty() {
                    println!("{addr}: up to date ({url})");
                }
                for lesson in lessons {
                    println!("{addr}: {} {} from {url}", lesson.fingerprint, describe(&lesson.outcome));
                }
            }
            Lookup::NotFound => println!("{addr}: not found"),
            Lookup::Failed(reason) => println!("{addr}: failed: {reason}"),
            Lookup::TimedOut { after } => println!("{addr}: no answer within {} s", after.as_secs()),
            Lookup::Disabled => println!("{addr}: discovery is off for its domain"),
        }
    }
    Ok(())
}

/// What happened to a learnt or found key, in words.
fn describe(outcome: &Learned) -> String {
    match outcome {
        Learned::New => "new".to_string(),
        Learned::Updated => "updated".to_string(),
        Learned::Unchanged => "unchanged".to_string(),
        Learned::Shadowed { by } => format!("kept but not used: the key {by} from a more trusted source stays in use"),
    }
}

/// `keys learn`: what a received message teaches, as the IMAP proxy
/// would learn it.
fn learn(config: &Config, store: Keystore, file: &Path) -> Result<()> {
    let (message, name) = read_input(file)?;
    let (shown, gossip) = if protection(&message) == Protection::Encrypted {
        let keys = unlock_own_keys(config, &store);
        let outcome = decrypt_message(&message, &keys, &store);
        (outcome.message, outcome.gossip)
    } else {
        (message, Vec::new())
    };
    let live = Arc::new(LiveKeystore::new(config.data_dir.clone(), store));
    let lessons = Learner::new(live, &config.data_dir, None).learn(&shown, &gossip)?;
    if lessons.is_empty() {
        println!("{name}: nothing new (no Autocrypt header from its sender, or the keys are known already)");
    }
    for lesson in lessons {
        println!(
            "{} {} ({}): {}",
            lesson.addr,
            lesson.fingerprint,
            lesson.source,
            describe(&lesson.outcome)
        );
    }
    Ok(())
}

/// `init`: preset, key, local certificate, first-contact pins, then the
/// configuration file and the mail client settings. Nothing is written
/// to the file before every step succeeded; a key or certificate made on
/// the way is reused when init runs again.
fn init(config_file: Option<PathBuf>, args: InitArgs) -> Result<()> {
    let path = config_file
        .or_else(|| std::env::var_os("SEALPOST_CONFIG").map(PathBuf::from))
        .unwrap_or_else(config::user_file);
    if path.exists() && !args.force {
        return Err(SetupError::Exists { path }.into());
    }
    let mut ask = Ask::new(!args.non_interactive);
    let Plan {
        address,
        preset,
        picked,
        config,
    } = init_plan(&args, &mut ask)?;
    println!("Provider: {} (preset {}, from {picked})", preset.title, preset.name);
    if let Some(advice) = preset.login_advice() {
        println!("{advice}");
    }
    init_key(&config, &address, args.import_key.as_deref(), &mut ask)?;
    let tls = local_tls(&config)?;
    println!("Local certificate: {}\n  SHA-256 {}", tls.cert_path.display(), tls.fingerprint);
    println!("Server keys (trust on first use; later connections must present the same key):");
    for contact in sealpost::setup::record_first_contact(&config)? {
        let state = if contact.new {
            "recorded"
        } else {
            "already recorded, and it matches"
        };
        println!(
            "  {} ({}): {state}\n    pin {}\n    certificate SHA-256 {}",
            contact.server, contact.url, contact.record.pin, contact.record.certificate_sha256
        );
    }
    sealpost::setup::write_config(&path, &sealpost::setup::render(&config, &preset.title)?, args.force)?;
    println!("Wrote {}\n", path.display());
    println!(
        "{}",
        sealpost::setup::client_instructions(&config.listen, &address, &tls.fingerprint)
    );
    println!(
        "Start Sealpost with: sealpost --config {} serve\n(it asks for your key's passphrase, or takes it from SEALPOST_PASSPHRASE or passphrase_file)",
        path.display()
    );
    Ok(())
}

/// What `init` sets up: whose account, at which provider (and how the
/// preset was chosen), and the configuration to write.
struct Plan {
    address: String,
    preset: presets::Preset,
    picked: &'static str,
    config: Config,
}

/// The answers `init` needs before it acts, from the flags or asked, and
/// the configuration they make, validated as `check` would.
fn init_plan(args: &InitArgs, ask: &mut Ask) -> Result<Plan> {
    let address = match &args.address {
        Some(address) => address.clone(),
        None => ask.line("Your email address", "--address")?,
    };
    let address = sealpost::pgp::normalize_email(&address);
    if !address.contains('@') {
        bail!("'{address}' is not an email address; give the one you send from, such as alice@example.org");
    }
    let (preset, picked) = match &args.provider {
        Some(name) => (presets::named(name)?, "--provider"),
        None => match presets::for_address(&address) {
            Ok(preset) => (preset, "the address's domain"),
            Err(e) if !ask.interactive => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                (presets::named(&ask.line("Provider preset", "--provider")?)?, "your answer")
            }
        },
    };
    let servers_given = args.imap.is_some() || args.smtp.is_some();
    let (imap, smtp) = if preset.imap.is_none() && preset.smtp.is_none() && !servers_given && ask.interactive {
        (
            Some(ask.line("IMAP server (imaps://HOST:993 or imap://HOST:143)", "--imap")?),
            Some(ask.line("SMTP submission server (smtps://HOST:465 or smtp://HOST:587)", "--smtp")?),
        )
    } else {
        (args.imap.clone(), args.smtp.clone())
    };
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let mut config = Config {
        data_dir: args.data_dir.clone().map(absolute).unwrap_or_else(|| Config::default().data_dir),
        accounts: vec![preset.account(&address, imap.as_deref(), smtp.as_deref(), args.ca_file.clone().map(absolute))?],
        ..Config::default()
    };
    // Implicit TLS beside STARTTLS: the settings init prints use it, as
    // every mail client offers it on any port.
    config.listen.smtps = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 1465)));
    config.listen.imaps = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 1993)));
    let problems = config::validate(&config);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
        bail!(
            "the configuration would have {} problem(s); nothing was written:\n{}",
            problems.len(),
            list.join("\n")
        );
    }
    Ok(Plan {
        address,
        preset,
        picked,
        config,
    })
}

/// The account's own key: imported from `import`, else the one the key
/// store has for `address`, else (after asking whether to import one)
/// a new one.
fn init_key(config: &Config, address: &str, import: Option<&Path>, ask: &mut Ask) -> Result<()> {
    let mut store = Keystore::open(&config.data_dir)?;
    let import = match import {
        Some(file) => Some(file.to_path_buf()),
        None if store.own_key(address).is_ok() => None,
        None if ask.interactive => Some(ask.line("Secret key file to import (empty: generate a new key)", "--import-key")?)
            .filter(|answer| !answer.is_empty())
            .map(PathBuf::from),
        None => None,
    };
    if let Some(file) = import {
        import_keys(&mut store, std::slice::from_ref(&file))?;
        let own = store.own_key(address).with_context(|| {
            format!(
                "{} holds no secret key for <{address}>; export yours with 'gpg --export-secret-keys --armor {address}' or leave out --import-key to generate one",
                file.display()
            )
        })?;
        println!("Key: {} (imported)", own.fingerprint());
    } else if let Ok(own) = store.own_key(address) {
        println!("Key: {} (already in {})", own.fingerprint(), config.data_dir.display());
    } else {
        println!("Key: {} (generated)", generate_key(config, &mut store, address, false, false)?);
    }
    Ok(())
}

/// Questions `init` asks on standard input, unless it runs
/// non-interactively, where a missing answer names the flag to pass.
struct Ask {
    interactive: bool,
}

impl Ask {
    fn new(interactive: bool) -> Ask {
        Ask { interactive }
    }

    /// One answer, trimmed.
    fn line(&mut self, question: &str, flag: &str) -> Result<String> {
        if !self.interactive {
            bail!("{flag} is needed with --non-interactive");
        }
        eprint!("{question}: ");
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer)? == 0 {
            bail!("no answer to \"{question}\" (standard input ended); pass {flag}, or run on a terminal");
        }
        Ok(answer.trim().to_string())
    }
}

fn local_tls(config: &Config) -> Result<LocalTls> {
    Ok(LocalTls::load_or_generate(
        &config.data_dir,
        config.listen.tls_cert.as_deref(),
        config.listen.tls_key.as_deref(),
    )?)
}

/// `doctor`: every check, one line each; failure when one failed.
fn doctor(loaded: &config::Loaded) -> ExitCode {
    let findings = sealpost::doctor::run(&loaded.config, loaded.file.as_deref(), &passphrases(&loaded.config));
    for finding in &findings {
        println!("{finding}");
    }
    let failed = findings.iter().filter(|f| f.verdict == sealpost::doctor::Verdict::Fail).count();
    if failed == 0 {
        return ExitCode::SUCCESS;
    }
    println!("{failed} check(s) failed");
    ExitCode::FAILURE
}

/// `reload`: SIGHUP to the running `serve` of this data_dir (the
/// configuration was checked on loading).
fn reload(config: &Config) -> Result<()> {
    let pid = sealpost::pidfile::running(&config.data_dir)?;
    sealpost::pidfile::signal_reload(pid)?;
    println!(
        "asked Sealpost (pid {pid}) to reload; its log says \"configuration reloaded\" or why the reload was refused (sealpost_config_reloads_total counts both)"
    );
    Ok(())
}

fn local_cert(config: &Config) -> Result<()> {
    let tls = local_tls(config)?;
    println!("{}\n  file: {}", tls.fingerprint, tls.cert_path.display());
    Ok(())
}

fn pin(config: &Config, command: PinCommand) -> Result<()> {
    let store = PinStore::new(&config.data_dir);
    match command {
        PinCommand::Fetch { url } => {
            let target = FetchTarget::parse(&url).map_err(anyhow::Error::msg)?;
            let chain = fetch(&target)?;
            print_chain(&target, &chain);
            let pins: Vec<String> = chain.iter().map(|c| format!("\"{}\"", c.pin)).collect();
            println!("\nConfig line (the first pin is the server's own key; pin a backup key as well before a rotation):");
            println!("pins = [{}]", pins.join(", "));
        }
        PinCommand::List => {
            let records = store.all()?;
            if records.is_empty() {
                println!("no server keys recorded yet ({})", store.path().display());
            }
            for (server, record) in records {
                println!(
                    "{server}\n  pin: {}\n  recorded: {}\n  certificate SHA-256: {}",
                    record.pin, record.recorded, record.certificate_sha256
                );
            }
        }
        PinCommand::Accept { server, yes } => {
            let target = accept_target(config, &server)?;
            let chain = fetch(&target)?;
            print_chain(&target, &chain);
            let leaf = chain.first().context("the server presented no certificate")?;
            let previous = store.get(&target.server())?;
            if let Some(previous) = &previous {
                println!("\nrecorded now: {}", previous.pin);
            }
            println!("presented:    {}", leaf.pin);
            if !yes && !confirm(&format!("Record {} for {}?", leaf.pin, target.server()))? {
                bail!("nothing recorded");
            }
            store.replace(
                &target.server(),
                PinRecord {
                    pin: leaf.pin.to_string(),
                    issuer_pin: chain.get(1).map(|c| c.pin.to_string()),
                    recorded: mail_builder::headers::date::Date::now().to_rfc822(),
                    certificate_sha256: leaf.sha256.clone(),
                },
            )?;
            println!("recorded {} for {}", leaf.pin, target.server());
        }
        PinCommand::Forget { server } => {
            if store.forget(&server)? {
                println!("forgot the key of {server}; the next connection records the key it sees");
            } else {
                bail!("no key recorded for {server}; see 'sealpost pin list'");
            }
        }
    }
    Ok(())
}

fn fetch(target: &FetchTarget) -> Result<Vec<ChainEntry>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(fetch_chain(target))?)
}

fn print_chain(target: &FetchTarget, chain: &[ChainEntry]) {
    println!("{} presents {} certificate(s):", target.server(), chain.len());
    for (i, cert) in chain.iter().enumerate() {
        println!(
            "[{i}] subject: {}\n    issuer: {}\n    valid: {} until {}\n    SHA-256: {}\n    pin: {}",
            cert.subject, cert.issuer, cert.not_before, cert.not_after, cert.sha256, cert.pin
        );
    }
}

/// The URL for `pin accept`: given, or found from the configured accounts
/// with this host:port, or from a well-known port.
fn accept_target(config: &Config, server: &str) -> Result<FetchTarget> {
    if server.contains("://") {
        return FetchTarget::parse(server).map_err(anyhow::Error::msg);
    }
    let configured = config
        .accounts
        .iter()
        .flat_map(|a| [a.smtp.as_deref(), a.imap.as_deref()])
        .flatten()
        .filter_map(|url| FetchTarget::parse(url).ok())
        .find(|t| t.server().eq_ignore_ascii_case(server));
    if let Some(target) = configured {
        return Ok(target);
    }
    let (host, port) = server
        .rsplit_once(':')
        .context("give HOST:PORT or a URL such as smtps://host:465")?;
    let scheme = match port {
        "465" => "smtps",
        "587" | "25" => "smtp",
        "993" => "imaps",
        "143" => "imap",
        _ => bail!("cannot tell how to connect to {server}; give a URL such as smtps://{server} or imaps://{server}"),
    };
    FetchTarget::parse(&format!("{scheme}://{host}:{port}")).map_err(anyhow::Error::msg)
}

fn confirm(question: &str) -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("not on a terminal: pass --yes to record without asking");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(format_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(format_date(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "2000-02-29");
        assert_eq!(
            format_date(UNIX_EPOCH + std::time::Duration::from_secs(1_798_761_600)),
            "2027-01-01"
        );
    }
}
