//! The session's second, read-only connection to the provider: it fetches
//! whole messages with `BODY.PEEK[]` (so flags never change) when the
//! proxy needs one the client's own command did not carry: an encrypted
//! message to decrypt, or the original ciphertext of a message the client
//! uploads back. It logs in with the client's credentials on first use.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::auth::Credentials;
use super::framer;
use super::upstream::{Upstream, UpstreamError, MAX_LINE};
use crate::account::Account;

/// The side connection of one session.
pub struct SideFetcher {
    account: Arc<Account>,
    credentials: Credentials,
    conn: Option<Upstream>,
    examined: Option<Vec<u8>>,
    max_size: u64,
}

impl SideFetcher {
    /// A fetcher for `account` that logs in with `credentials` when first
    /// used and refuses messages over `max_size` octets.
    pub fn new(account: Arc<Account>, credentials: Credentials, max_size: u64) -> SideFetcher {
        SideFetcher {
            account,
            credentials,
            conn: None,
            examined: None,
            max_size,
        }
    }

    /// The raw message `uid` of `mailbox`. One retry on a fresh connection
    /// (servers close idle ones).
    pub async fn fetch(&mut self, mailbox: &[u8], uid: u32) -> Result<Vec<u8>, UpstreamError> {
        match self.try_fetch(mailbox, uid).await {
            Ok(bytes) => Ok(bytes),
            Err(_) if self.conn.is_some() => {
                self.conn = None;
                self.examined = None;
                self.try_fetch(mailbox, uid).await
            }
            Err(e) => Err(e),
        }
    }

    async fn try_fetch(&mut self, mailbox: &[u8], uid: u32) -> Result<Vec<u8>, UpstreamError> {
        if self.conn.is_none() {
            let url = self.account.imap.as_ref().expect("IMAP sessions exist only for accounts with an IMAP server");
            let mut conn = Upstream::connect(url, &self.account.connector).await?;
            let answer = conn.login(&self.credentials).await?;
            if !answer.is_ok() {
                return Err(UpstreamError::Protocol {
                    server: conn.server.clone(),
                    reason: format!("the second login (to fetch messages for decryption) was refused: {}", answer.text()),
                });
            }
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        if self.examined.as_deref() != Some(mailbox) {
            let mut command = b"EXAMINE ".to_vec();
            conn.push_astring(&mut command, mailbox)?;
            let answer = conn.command(&command).await?;
            if !answer.is_ok() {
                self.examined = None;
                return Err(UpstreamError::Protocol {
                    server: conn.server.clone(),
                    reason: format!("EXAMINE failed: {}", answer.text()),
                });
            }
            self.examined = Some(mailbox.to_vec());
        }
        let tag = conn.next_tag();
        conn.write(format!("{tag} UID FETCH {uid} (BODY.PEEK[])\r\n").as_bytes()).await?;
        let mut message = None;
        let mut line = Vec::new();
        loop {
            let literal = framer::read_segment(&mut conn.conn, MAX_LINE, &mut line)
                .await
                .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
            if line.is_empty() {
                return Err(UpstreamError::protocol(&conn.server, "the server closed the connection"));
            }
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let status = String::from_utf8_lossy(&line[tag.len() + 1..]).trim_end().to_string();
                if !status.to_ascii_uppercase().starts_with("OK") {
                    return Err(UpstreamError::protocol(&conn.server, format!("UID FETCH failed: {status}")));
                }
                break;
            }
            if let Some(announced) = literal {
                if announced.size > self.max_size {
                    return Err(UpstreamError::protocol(&conn.server, format!("message of {} octets is over imap.max_message_size", announced.size)));
                }
                let mut bytes = Vec::with_capacity(announced.size as usize);
                (&mut conn.conn)
                    .take(announced.size)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| UpstreamError::protocol(&conn.server, e.to_string()))?;
                if (bytes.len() as u64) < announced.size {
                    return Err(UpstreamError::protocol(&conn.server, "connection closed inside a literal"));
                }
                if message.is_none() && line.to_ascii_uppercase().windows(7).any(|w| w == b"BODY[] ") {
                    message = Some(bytes);
                }
            }
        }
        message.ok_or_else(|| UpstreamError::protocol(&conn.server, format!("message UID {uid} is gone")))
    }
}
