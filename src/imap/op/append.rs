//! APPEND: messages a client uploads (drafts, sent copies, the
//! upload-then-delete "moves" some clients do) are encrypted to the
//! account's own key before the server sees them, in the mailboxes the
//! `imap.append_encrypt` policy names. The proxy takes the client's
//! literals itself (the size changes), then sends the command on with the
//! new sizes; flags, dates, MULTIAPPEND and the server's answer
//! (APPENDUID included) pass through. It fails closed: a message it cannot
//! encrypt is not stored, and the client is told why.

use std::sync::{Arc, Mutex as SyncMutex};

use tokio::io::AsyncWriteExt;

use super::Next;
use crate::account::Account;
use crate::config::AppendEncrypt;
use crate::imap::command::{head, mailbox_key};
use crate::imap::framer::Literal;
use crate::imap::served::Served;
use crate::imap::sidefetch::SideFetcher;
use crate::imap::state::Shared;
use crate::imap::state::{await_continuation, send, ClientReader, ClientWriter, SessionError, State, Uploaded, UpstreamWriter};
use crate::imap::view::MessageView;
use crate::imap::wire::{Continuations, Cursor, Limits, Pos, Wire};
use crate::message::{protection, seal_for_self, Protection, STATUS_HEADER};
use crate::mime::Entity;

/// A command the proxy reads whole after login: APPEND, MULTIAPPEND has a
/// literal per message (each bounded by `imap.max_message_size`).
const COMMAND_LIMITS: Limits = Limits {
    line: super::MAX_COMMAND_LINE,
    literal: u64::MAX,
    parts: 1000,
};

/// One APPEND being relayed.
pub struct Upload<'a> {
    /// Session-wide settings and counters.
    pub shared: &'a Arc<Shared>,
    /// Whose key encrypts.
    pub account: &'a Arc<Account>,
    /// For the answer when the proxy refuses.
    pub client: &'a ClientWriter,
    /// For waiting on the server's `+`.
    pub state: &'a SyncMutex<State>,
    /// The server takes `{n+}` literals.
    pub literal_plus: bool,
    /// Fetches the original ciphertext of messages shown decrypted.
    pub fetcher: &'a SideFetcher,
    /// What was shown decrypted, and from where.
    pub served: Option<&'a Served>,
}

/// An APPEND's arguments: the mailbox and its messages.
struct Parsed {
    mailbox: Vec<u8>,
    messages: Vec<Message>,
}

/// One message of an APPEND (MULTIAPPEND has several).
struct Message {
    /// The flags and date before the literal, as written (with a leading
    /// space each).
    prefix: Vec<u8>,
    /// Sent as `UTF8 (~{n})` (RFC 6855) rather than a plain literal.
    utf8: bool,
    bytes: Vec<u8>,
}

impl Upload<'_> {
    /// Receives the APPEND whose first line is `line` (announcing
    /// `literal`) from the client, whole, and sends it on as [`Self::run`]
    /// says. A message announced over `imap.max_message_size` is refused
    /// before it is sent; one already on its way (`{n+}`) ends the session,
    /// as the stream cannot be resynchronised.
    pub async fn receive(
        &self,
        reader: &mut ClientReader,
        upstream: &mut UpstreamWriter,
        line: Vec<u8>,
        literal: Option<Literal>,
    ) -> Result<Next, SessionError> {
        let tag = head(&line).expect("the relay recognised an APPEND").tag.to_vec();
        let max = self.shared.limits.max_message_size;
        if let Some(announced) = literal.filter(|l| l.size > max) {
            if announced.non_synchronizing {
                send(self.client, b"* BYE Sealpost: APPEND literal over imap.max_message_size\r\n").await?;
                return Ok(Next::EndSession);
            }
            let too_big = format!(
                "NO [TOOBIG] Sealpost: message of {} octets is over imap.max_message_size ({max})",
                announced.size
            );
            send(self.client, &[&tag[..], b" ", too_big.as_bytes(), b"\r\n"].concat()).await?;
            return Ok(Next::ReadCommand);
        }
        let limits = Limits {
            literal: max,
            ..COMMAND_LIMITS
        };
        self.state.lock().expect("state lock").sent(&tag, "APPEND");
        let wire = Wire::read(
            reader,
            line,
            literal,
            &self.shared.spool_dir,
            limits,
            Continuations::Send(self.client),
        )
        .await?;
        self.run(&wire, upstream).await?;
        Ok(Next::ReadCommand)
    }

    /// Encrypts what the policy asks for and sends the command upstream.
    pub async fn run(&self, wire: &Wire, upstream: &mut UpstreamWriter) -> Result<(), SessionError> {
        let h = head(wire.first_line()).expect("the session recognised an APPEND");
        let tag = h.tag.to_vec();
        let max = self.shared.limits.max_message_size;
        let parsed = match parse(wire, h.args, max) {
            Ok(parsed) => parsed,
            Err(Unusable::Unreadable) => {
                return self
                    .refuse(
                        &tag,
                        "BAD Sealpost: cannot read this APPEND (CATENATE is not relayed); nothing was stored",
                    )
                    .await
            }
            Err(Unusable::TooBig) => {
                return self
                    .refuse(
                        &tag,
                        &format!("NO [TOOBIG] Sealpost: message over imap.max_message_size ({max} octets); nothing was stored"),
                    )
                    .await
            }
        };
        let encrypt = self.applies(&parsed.mailbox);
        let mut outgoing = Vec::with_capacity(parsed.messages.len());
        // What the encrypted uploads offer to SEARCH, indexed once the
        // server names their UIDs (APPENDUID): the provider cannot read
        // them, and the upload is the one moment Sealpost has them in clear.
        let mut documents = Vec::with_capacity(parsed.messages.len());
        for Message { prefix, utf8, bytes } in parsed.messages {
            if encrypt {
                if let Some(original) = self.original_of(&bytes).await {
                    self.shared.metrics.imap_appends.with_label_values(&["original-ciphertext"]).inc();
                    outgoing.push(Message {
                        prefix,
                        utf8,
                        bytes: original,
                    });
                    continue;
                }
            }
            let account = self.account.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                let document = encrypt.then(|| MessageView::parse(&bytes).search_text());
                prepare(bytes, encrypt, &account).map(|prepared| (prepared, document))
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            match prepared {
                Ok(((bytes, outcome), document)) => {
                    self.shared.metrics.imap_appends.with_label_values(&[outcome]).inc();
                    documents.push(document.filter(|_| outcome == "encrypted"));
                    outgoing.push(Message { prefix, utf8, bytes });
                }
                Err(e) => {
                    self.shared.metrics.imap_appends.with_label_values(&["refused"]).inc();
                    tracing::warn!(error = %e, "APPEND refused: cannot encrypt");
                    return self
                        .refuse(
                            &tag,
                            &format!("NO [CANNOT] Sealpost could not encrypt the message ({e}); nothing was stored"),
                        )
                        .await;
                }
            }
        }
        if documents.iter().any(Option::is_some) {
            self.state.lock().expect("state lock").uploads.push(Uploaded {
                tag: tag.clone(),
                mailbox: mailbox_key(&parsed.mailbox),
                documents,
            });
        }
        // The command as the server will see it.
        let mut line = tag.clone();
        line.extend_from_slice(b" APPEND ");
        if !push_mailbox(&mut line, &parsed.mailbox) {
            return self
                .refuse(
                    &tag,
                    "NO [CANNOT] Sealpost cannot relay a mailbox name with line breaks; nothing was stored",
                )
                .await;
        }
        for message in &outgoing {
            line.extend_from_slice(&message.prefix);
            let non_sync = self.literal_plus;
            let (open, close) = if message.utf8 { ("UTF8 (~", ")") } else { ("", "") };
            let plus = if non_sync { "+" } else { "" };
            line.extend_from_slice(format!(" {open}{{{}{plus}}}\r\n", message.bytes.len()).as_bytes());
            if !non_sync {
                let invited = await_continuation(self.state, &tag, false);
                upstream.write_all(&line).await?;
                upstream.flush().await?;
                line.clear();
                if invited.await.is_err() {
                    // The server answered the command instead (quota,
                    // TRYCREATE); the client has that answer.
                    return Ok(());
                }
            }
            upstream.write_all(&line).await?;
            line.clear();
            upstream.write_all(&message.bytes).await?;
            line.extend_from_slice(close.as_bytes());
        }
        upstream.write_all(&line).await?;
        upstream.write_all(b"\r\n").await?;
        upstream.flush().await?;
        Ok(())
    }

    /// The stored ciphertext of a message the proxy showed decrypted, when
    /// `message` is one (byte for byte, line endings aside) and its
    /// original is still on the server. That covers the account's own
    /// copies too, which show without a status header.
    async fn original_of(&self, message: &[u8]) -> Option<Vec<u8>> {
        let origin = self.served?.find(message)?;
        match self.fetcher.fetch(&origin.mailbox, origin.uid).await {
            Ok(original) if protection(&original) == Protection::Encrypted => Some(original),
            Ok(_) => None,
            Err(e) => {
                tracing::info!(error = %e, "the original of an uploaded message is gone; encrypting the upload instead");
                None
            }
        }
    }

    /// True when the policy encrypts uploads to `mailbox`.
    fn applies(&self, mailbox: &[u8]) -> bool {
        match &self.shared.limits.append_encrypt {
            AppendEncrypt::All => true,
            AppendEncrypt::None => false,
            AppendEncrypt::Only(list) => {
                let key = mailbox_key(mailbox);
                let special = self
                    .state
                    .lock()
                    .expect("state lock")
                    .special_use
                    .get(&key)
                    .cloned()
                    .unwrap_or_default();
                list.iter().any(|entry| {
                    if entry.starts_with('\\') {
                        special.iter().any(|s| s.eq_ignore_ascii_case(entry))
                    } else {
                        mailbox_key(entry.as_bytes()) == key
                    }
                })
            }
        }
    }

    async fn refuse(&self, tag: &[u8], status: &str) -> Result<(), SessionError> {
        // Answered here: the server never sees this command.
        self.state.lock().expect("state lock").complete(tag, false);
        let mut w = self.client.lock().await;
        w.write_all(&[tag, b" ", status.as_bytes(), b"\r\n"].concat()).await?;
        Ok(w.flush().await?)
    }
}

/// The message as it goes to the server, and what was done with it.
fn prepare(message: Vec<u8>, encrypt: bool, account: &Account) -> Result<(Vec<u8>, &'static str), crate::message::MessageError> {
    if !encrypt {
        return Ok((message, "passed"));
    }
    match protection(&message) {
        Protection::Encrypted => Ok((message, "already-encrypted")),
        // Signed mail is readable by anyone: it is encrypted too.
        Protection::None | Protection::Signed => {
            // A message Sealpost showed decrypted carries its status; that
            // verdict describes the old copy, not this one.
            let message = without_status(&message);
            Ok((seal_for_self(&message, &account.address, &account.key)?, "encrypted"))
        }
    }
}

fn without_status(message: &[u8]) -> Vec<u8> {
    let entity = Entity::parse(message);
    if entity.field(STATUS_HEADER).is_none() {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len());
    for f in entity.fields.iter().filter(|f| !f.is(STATUS_HEADER)) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[entity.header.len()..]);
    out
}

/// Why an APPEND cannot be relayed.
enum Unusable {
    /// CATENATE, a missing literal: syntax the proxy does not relay.
    Unreadable,
    /// A message over the size limit.
    TooBig,
}

/// Reads `mailbox *([flags] [date] (literal / UTF8 (literal8)))`.
fn parse(wire: &Wire, args: usize, max: u64) -> Result<Parsed, Unusable> {
    let mut c = wire.cursor();
    c.pos = Pos { part: 0, at: args };
    let mailbox = c.astring(4096).ok_or(Unusable::Unreadable)?;
    let mut messages = Vec::new();
    loop {
        c.skip_spaces();
        if c.at_end() {
            break;
        }
        let mut prefix = Vec::new();
        for (opening, limit) in [(b'(', 4096), (b'"', 256)] {
            if c.peek() == Some(opening) {
                let span = c.value().ok_or(Unusable::Unreadable)?;
                prefix.push(b' ');
                prefix.extend_from_slice(&wire.bytes(span.from, span.to, limit).ok_or(Unusable::Unreadable)?);
                c.skip_spaces();
            }
        }
        let mut utf8 = false;
        let before = c.clone();
        if c.token().eq_ignore_ascii_case(b"UTF8") {
            c.skip_spaces();
            utf8 = c.eat(b'(');
            if !utf8 {
                return Err(Unusable::Unreadable);
            }
        } else {
            c = before;
        }
        let span = c.value().ok_or(Unusable::Unreadable)?;
        let spool = Cursor::literal_of(wire, span).ok_or(Unusable::Unreadable)?;
        if spool.len() > max {
            return Err(Unusable::TooBig);
        }
        if utf8 && !c.eat(b')') {
            return Err(Unusable::Unreadable);
        }
        let bytes = spool.to_vec().map_err(|_| Unusable::Unreadable)?;
        messages.push(Message { prefix, utf8, bytes });
    }
    if messages.is_empty() {
        return Err(Unusable::Unreadable);
    }
    Ok(Parsed { mailbox, messages })
}

/// Writes the mailbox name quoted; false if it cannot be (CR, LF, NUL).
fn push_mailbox(line: &mut Vec<u8>, name: &[u8]) -> bool {
    if name.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return false;
    }
    line.push(b'"');
    for &b in name {
        if b == b'"' || b == b'\\' {
            line.push(b'\\');
        }
        line.push(b);
    }
    line.push(b'"');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::framer::read_segment;
    use crate::imap::wire::Continuations;

    async fn parsed(bytes: &[u8], max: u64) -> Result<Parsed, Unusable> {
        let mut reader = tokio::io::BufReader::new(bytes);
        let mut first = Vec::new();
        let literal = read_segment(&mut reader, 1 << 20, &mut first).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let limits = crate::imap::wire::Limits {
            line: 1 << 20,
            literal: u64::MAX,
            parts: 100,
        };
        let wire = Wire::read::<_, Vec<u8>>(&mut reader, first, literal, dir.path(), limits, Continuations::None)
            .await
            .unwrap();
        let args = head(wire.first_line()).unwrap().args;
        parse(&wire, args, max)
    }

    #[tokio::test]
    async fn append_forms() {
        let p = parsed(
            b"a APPEND \"Sent Items\" (\\Seen) \"27-Nov-2026 10:00:00 +0000\" {5+}\r\nhello\r\n",
            100,
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(p.mailbox, b"Sent Items");
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].prefix, b" (\\Seen) \"27-Nov-2026 10:00:00 +0000\"");
        assert_eq!(p.messages[0].bytes, b"hello");

        let multi = parsed(b"a APPEND Drafts {1+}\r\nx (\\Draft) {2+}\r\nyz\r\n", 100)
            .await
            .ok()
            .unwrap();
        let bodies: Vec<&[u8]> = multi.messages.iter().map(|m| m.bytes.as_slice()).collect();
        assert_eq!(bodies, [&b"x"[..], b"yz"]);

        let utf8 = parsed(b"a APPEND INBOX UTF8 (~{3+}\r\n\xc3\xa9!)\r\n", 100).await.ok().unwrap();
        assert!(utf8.messages[0].utf8);
        assert_eq!(utf8.messages[0].bytes, "\u{e9}!".as_bytes());

        assert!(matches!(
            parsed(b"a APPEND INBOX CATENATE (URL \"/x\")\r\n", 100).await,
            Err(Unusable::Unreadable)
        ));
        assert!(matches!(parsed(b"a APPEND INBOX\r\n", 100).await, Err(Unusable::Unreadable)));
        assert!(matches!(
            parsed(b"a APPEND INBOX {5+}\r\nhello\r\n", 4).await,
            Err(Unusable::TooBig)
        ));
    }

    #[test]
    fn statuses_of_messages_sealpost_showed_are_not_stored() {
        let shown = b"From: a@x.test\r\nSubject: s\r\nSealpost-Status: decrypted; signature=good\r\n\r\nbody\r\n";
        assert_eq!(without_status(shown), b"From: a@x.test\r\nSubject: s\r\n\r\nbody\r\n");
        let plain = b"Subject: s\r\n\r\nbody";
        assert_eq!(without_status(plain), plain.to_vec());
    }
}
