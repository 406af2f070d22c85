//! Whole IMAP sessions in-process, over `tokio::io::duplex`: a client
//! stream on one side, a scripted server behind the [`Dialer`] on the
//! other. No root, no mail stack, no Python; the real-server tests in
//! `tests/` check the same behaviour against Dovecot and Cyrus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::session::serve_client;
use super::sidefetch::SidePool;
use super::state::Shared;
use super::upstream::{Dialer, Upstream, UpstreamError};
use crate::account::{Account, Accounts};
use crate::config::{Config, ImapConfig};
use crate::learn::Learner;
use crate::metrics::Metrics;
use crate::pgp::{Keystore, LiveKeystore, PassphraseSource};
use crate::shutdown::{self, Phase, Shutdown, ShutdownTrigger};
use crate::tls::LocalTls;

const LOGIN: &str = "me@example.test";
const PASSPHRASE: &str = "in-process test passphrase";

/// A server that answers from a script: the greeting, LOGIN, NOOP, IDLE
/// (until DONE), LOGOUT (BYE, tagged OK, then the end of the stream, as
/// Cyrus ends it), a synchronizing literal (invited with `+`), `X-DROP`
/// (the connection ends without a word) and BAD for anything else. It
/// records every byte it receives.
struct ScriptedServer {
    received: Arc<SyncMutex<Vec<u8>>>,
}

impl Dialer for ScriptedServer {
    fn dial<'a>(
        &'a self,
        _account: &'a Account,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Upstream, UpstreamError>> + Send + 'a>> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve_script(theirs, self.received.clone()));
        Box::pin(Upstream::greeted(Box::new(BufReader::new(ours)), "scripted:143".into()))
    }
}

async fn serve_script(stream: DuplexStream, received: Arc<SyncMutex<Vec<u8>>>) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let _ = writer
        .write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE AUTH=PLAIN] scripted ready\r\n")
        .await;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        received.lock().unwrap().extend_from_slice(line.as_bytes());
        let mut words = line.split_whitespace();
        let (tag, command) = (
            words.next().unwrap_or("*").to_string(),
            words.next().unwrap_or("").to_ascii_uppercase(),
        );
        let answer = match command.as_str() {
            "LOGIN" => format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] logged in\r\n"),
            "NOOP" => format!("{tag} OK NOOP done\r\n"),
            "IDLE" => {
                let _ = writer.write_all(b"+ idling\r\n").await;
                let mut done = String::new();
                let _ = reader.read_line(&mut done).await;
                received.lock().unwrap().extend_from_slice(done.as_bytes());
                format!("{tag} OK IDLE done\r\n")
            }
            "LOGOUT" => {
                let _ = writer
                    .write_all(format!("* BYE Logging out\r\n{tag} OK Logout completed\r\n").as_bytes())
                    .await;
                return;
            }
            "X-DROP" => return,
            _ if line.trim_end().ends_with("{3}") => {
                let _ = writer.write_all(b"+ go on\r\n").await;
                let mut literal = vec![0; 5];
                let _ = reader.read_exact(&mut literal).await;
                received.lock().unwrap().extend_from_slice(&literal);
                format!("{tag} OK literal taken\r\n")
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        let _ = writer.write_all(answer.as_bytes()).await;
    }
}

/// A session's surroundings: one account, the scripted server, a data
/// directory of its own.
struct Harness {
    shared: Arc<Shared>,
    received: Arc<SyncMutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut keystore = Keystore::open(dir.path()).unwrap();
        keystore.generate(LOGIN, Some(PASSPHRASE.into()), false).unwrap();
        let config: Config = toml::from_str(&format!(
            "data_dir = \"{}\"\n[[account]]\nlogin = \"{LOGIN}\"\nimap = \"imap://scripted.invalid:143\"\ntrust = \"ca\"\n",
            dir.path().display()
        ))
        .unwrap();
        let accounts = Arc::new(Accounts::load(&config, &keystore, &PassphraseSource::Env(PASSPHRASE.into())).unwrap());
        let keystore = Arc::new(LiveKeystore::new(dir.path().to_path_buf(), keystore));
        let metrics = Arc::new(Metrics::default());
        let received = Arc::new(SyncMutex::new(Vec::new()));
        let dialer: Arc<dyn Dialer> = Arc::new(ScriptedServer {
            received: received.clone(),
        });
        let account = accounts.find(LOGIN).unwrap();
        let pool = SidePool::new(account, dialer.clone(), 2, 1 << 20, metrics.clone());
        std::fs::create_dir_all(dir.path().join("spool")).unwrap();
        let shared = Arc::new(Shared {
            limits: ImapConfig::default(),
            learner: Arc::new(Learner::new(keystore.clone(), dir.path(), None)),
            keystore,
            accounts,
            caches: HashMap::new(),
            indexes: HashMap::new(),
            indexers: HashMap::new(),
            served: HashMap::new(),
            side_pools: HashMap::from([(LOGIN.to_string(), pool)]),
            dialer,
            tls: LocalTls::load_or_generate(dir.path(), None, None).unwrap(),
            metrics,
            spool_dir: dir.path().join("spool"),
        });
        Harness {
            shared,
            received,
            _dir: dir,
        }
    }

    /// A client connected to a new session on a loopback listener.
    fn connect(&self, shutdown: Shutdown) -> (Client, tokio::task::JoinHandle<()>) {
        let (client, session) = tokio::io::duplex(64 * 1024);
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let _ = serve_client(&shared, session, true, shutdown).await;
        });
        (Client(BufReader::new(client)), task)
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// The test's side of the client connection.
struct Client(BufReader<DuplexStream>);

impl Client {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.0.read_line(&mut line))
            .await
            .expect("an answer in time")
            .unwrap();
        line
    }

    async fn send(&mut self, bytes: &str) {
        self.0.get_mut().write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn rest(&mut self) -> String {
        let mut rest = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.0.read_to_string(&mut rest))
            .await
            .expect("the session ends in time")
            .unwrap();
        rest
    }

    /// Reads the greeting and logs in.
    async fn logged_in(mut self) -> Client {
        assert!(self.line().await.starts_with("* OK [CAPABILITY "));
        self.send(&format!("a1 LOGIN {LOGIN} secret\r\n")).await;
        let answer = self.line().await;
        // Capability names are case-insensitive; Sealpost lists them upper case.
        assert!(answer.starts_with("a1 OK [CAPABILITY IMAP4REV1 LITERAL+ IDLE] "), "{answer}");
        self
    }
}

fn running() -> (ShutdownTrigger, Shutdown) {
    shutdown::channel()
}

#[tokio::test]
async fn logout_ends_with_the_servers_tagged_ok_even_without_close_notify() {
    let harness = Harness::new();
    let (_trigger, shutdown) = running();
    let (client, _) = harness.connect(shutdown);
    let mut client = client.logged_in().await;
    client.send("a2 LOGOUT\r\n").await;
    assert_eq!(client.rest().await, "* BYE Logging out\r\na2 OK Logout completed\r\n");
}

#[tokio::test]
async fn a_server_that_drops_the_connection_is_reported_in_sealposts_words() {
    let harness = Harness::new();
    let (_trigger, shutdown) = running();
    let (client, _) = harness.connect(shutdown);
    let mut client = client.logged_in().await;
    client.send("a2 X-DROP\r\n").await;
    assert_eq!(
        client.rest().await,
        "* BYE [UNAVAILABLE] Sealpost: the server closed the connection\r\n"
    );
}

#[tokio::test]
async fn a_shutdown_closes_an_idle_session_with_bye_and_logs_out_upstream() {
    let harness = Harness::new();
    let (trigger, shutdown) = running();
    let (client, session) = harness.connect(shutdown);
    let mut client = client.logged_in().await;
    client.send("a2 IDLE\r\n").await;
    assert_eq!(client.line().await, "+ idling\r\n");
    trigger.set(Phase::Draining);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining alone closes nothing.
    client.send("DONE\r\n").await;
    assert_eq!(client.line().await, "a2 OK IDLE done\r\n");
    client.send("a3 IDLE\r\n").await;
    assert_eq!(client.line().await, "+ idling\r\n");
    trigger.set(Phase::Closing);
    assert_eq!(client.rest().await, "* BYE [UNAVAILABLE] Sealpost is shutting down\r\n");
    tokio::time::timeout(Duration::from_secs(10), session).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        harness.received().ends_with("sealpost-shutdown LOGOUT\r\n"),
        "{}",
        harness.received()
    );
}

#[tokio::test]
async fn a_shutdown_before_login_says_bye() {
    let harness = Harness::new();
    let (trigger, shutdown) = running();
    let (mut client, _) = harness.connect(shutdown);
    assert!(client.line().await.starts_with("* OK "));
    trigger.set(Phase::Closing);
    assert_eq!(client.rest().await, "* BYE [UNAVAILABLE] Sealpost is shutting down\r\n");
    assert_eq!(harness.received(), "", "no connection to the server before login");
}

#[tokio::test]
async fn compress_is_refused_and_never_reaches_the_server() {
    let harness = Harness::new();
    let (_trigger, shutdown) = running();
    let (client, _) = harness.connect(shutdown);
    let mut client = client.logged_in().await;
    client.send("a2 COMPRESS DEFLATE\r\n").await;
    assert_eq!(
        client.line().await,
        "a2 NO [CANNOT] Sealpost does not relay COMPRESS; continuing uncompressed\r\n"
    );
    client.send("a3 NOOP\r\n").await;
    assert_eq!(client.line().await, "a3 OK NOOP done\r\n");
    assert!(!harness.received().contains("COMPRESS"), "{}", harness.received());
}

#[tokio::test]
async fn unknown_commands_and_their_literals_pass_byte_for_byte() {
    let harness = Harness::new();
    let (_trigger, shutdown) = running();
    let (client, _) = harness.connect(shutdown);
    let mut client = client.logged_in().await;
    client.send("a2 X-Weird arg {3}\r\n").await;
    // The literal follows only after the server's own invitation.
    assert_eq!(client.line().await, "+ go on\r\n");
    client.send("abc\r\n").await;
    assert_eq!(client.line().await, "a2 OK literal taken\r\n");
    assert!(
        harness.received().ends_with("a2 X-Weird arg {3}\r\nabc\r\n"),
        "{}",
        harness.received()
    );
}

#[tokio::test]
async fn login_for_an_unknown_account_never_dials() {
    let harness = Harness::new();
    let (_trigger, shutdown) = running();
    let (mut client, _) = harness.connect(shutdown);
    assert!(client.line().await.starts_with("* OK "));
    client.send("a1 LOGIN nobody@example.test pw\r\n").await;
    assert!(client
        .line()
        .await
        .starts_with("a1 NO [AUTHENTICATIONFAILED] Sealpost has no account"));
    assert_eq!(harness.received(), "");
}
