//! FETCH answers about encrypted messages: the proxy recognises them (from
//! BODYSTRUCTURE, and for single text parts from the start of the text),
//! obtains the decrypted message (cache, this very answer, or a read-only
//! side connection), and answers every content item from the decrypted
//! bytes, so BODYSTRUCTURE, RFC822.SIZE, ENVELOPE, sections and partials
//! all describe the same message. Other items (FLAGS, UID, MODSEQ, X-GM-*,
//! anything unknown) pass as the server wrote them; items only the proxy
//! asked for are removed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::Mutex;

use super::command::{Fetch, PROBE};
use super::emit;
use super::item::{FetchItem, Partial};
use super::section::{partial, Section};
use super::served::{Origin, Served};
use super::sidefetch::SideFetcher;
use super::state::{ClientWriter, Requests, SessionError, Shared};
use super::view::{BinaryError, MessageView};
use super::wire::{Cursor, Span, Value, Wire};
use crate::account::Account;
use crate::mime::to_crlf;
use crate::store::{EntryKey, MessageCache};

/// How much of an answer is gathered before it goes to the client.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// The start of an ASCII-armored OpenPGP message.
const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// One data item of a FETCH answer.
struct Item {
    /// The name as the server wrote it (`BODY[1.MIME]`, `BODY[]<0>`).
    name: Vec<u8>,
    /// The name, parsed: what requests are matched on.
    item: FetchItem,
    value: Span,
}

/// Rewrites FETCH answers for one session.
pub struct Rewriter {
    shared: Arc<Shared>,
    account: Arc<Account>,
    cache: Option<Arc<MessageCache>>,
    fetcher: Arc<SideFetcher>,
    served: Option<Arc<Served>>,
    /// Items left out of answers because the decrypted message cannot
    /// give them; the FETCH that asked for them fails.
    failures: Vec<(FetchItem, BinaryError)>,
}

impl Rewriter {
    /// A rewriter for `account`'s session, fetching through `fetcher`
    /// and recording what it shows in `served`.
    pub fn new(
        shared: Arc<Shared>,
        account: Arc<Account>,
        cache: Option<Arc<MessageCache>>,
        fetcher: Arc<SideFetcher>,
        served: Option<Arc<Served>>,
    ) -> Rewriter {
        Rewriter {
            shared,
            account,
            cache,
            fetcher,
            served,
            failures: Vec::new(),
        }
    }

    /// The tagged response for the FETCH `fetch` (tag `tag`) when an item
    /// it asked for was left out of an answer: `NO` with the reason's
    /// response code (`UNKNOWN-CTE`, `PARSE`), as Dovecot fails a FETCH
    /// whose BINARY section it cannot give. `None`: the server's response
    /// stands.
    pub fn failure(&mut self, fetch: &Fetch, tag: &[u8]) -> Option<Vec<u8>> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.failures)
            .into_iter()
            .partition(|(item, _)| fetch.asks_for(item));
        self.failures = others;
        let (_, error) = mine.first()?;
        let mut line = tag.to_vec();
        line.extend_from_slice(format!(" NO [{}] {error}\r\n", error.code()).as_bytes());
        Some(line)
    }

    /// Starts the client's version of one `* n FETCH (...)` answer: when
    /// it is about an encrypted message, the decrypted message is made in
    /// the background (cache, this answer's ciphertext, or a side fetch)
    /// while later answers are read. [`Self::finish`] writes it, in order.
    pub fn begin(&self, wire: Wire, requests: Requests) -> Pending {
        let Some((number, items)) = parse(&wire) else {
            return Pending {
                wire,
                requests,
                parsed: None,
                plaintext: None,
                fetched_aside: 0,
            };
        };
        let value = |wanted: &FetchItem| {
            items
                .iter()
                .find(|i| i.item.same_answer(wanted))
                .and_then(|i| wire.bytes(i.value.from, i.value.to, 1 << 20))
        };
        let structure = value(&FetchItem::BodyStructure).and_then(|b| Value::parse(&b));
        let probe = value(&FetchItem::parse(PROBE.as_bytes()))
            .and_then(|b| Value::parse(&b))
            .and_then(|v| v.text().map(<[u8]>::to_vec));
        let number_of = |wanted: &FetchItem| value(wanted).and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok());
        let uid = number_of(&FetchItem::Uid).and_then(|n| u32::try_from(n).ok());
        let whole = items
            .iter()
            .find(|i| i.item.is_whole_message(false))
            .and_then(|i| Cursor::literal_of(&wire, i.value));
        // A whole message shows for itself whether it is encrypted (the
        // proxy then asked for no BODYSTRUCTURE and no probe).
        let encrypted = match whole {
            Some(message) => encrypted_by_start(message),
            None => is_encrypted(structure.as_ref(), probe.as_deref()),
        };
        // What decrypting it will hold: the ciphertext fetched aside,
        // its size as the server states it, and about as much again.
        let fetched_aside = match (encrypted, whole) {
            (true, None) => number_of(&FetchItem::Rfc822Size),
            _ => None,
        };
        let plaintext = if encrypted {
            let place = match (&requests.selected, uid) {
                (Some(selected), Some(uid)) => Some((selected.mailbox.clone(), selected.uidvalidity, uid)),
                _ => None,
            };
            let ciphertext = whole.and_then(|spool| spool.to_vec().ok());
            Some(tokio::spawn(self.decryptor().plaintext(ciphertext, place)))
        } else {
            self.learn_from_header(&wire, &items);
            None
        };
        Pending {
            wire,
            requests,
            parsed: Some((number, items, uid)),
            plaintext,
            fetched_aside: fetched_aside.map_or(0, |size| 2 * size),
        }
    }

    /// Writes the answer `pending` to the client, once its decrypted
    /// message is made (telling the client while that takes long).
    pub async fn finish(&mut self, pending: Pending, client: &ClientWriter) -> Result<(), SessionError> {
        let Pending {
            wire,
            requests,
            parsed,
            plaintext,
            ..
        } = pending;
        let Some((number, items, uid)) = parsed else {
            // Not ours to understand: as it came.
            let mut w = client.lock().await;
            wire.write_to(&mut *w).await?;
            return Ok(w.flush().await?);
        };
        let plaintext = match plaintext {
            Some(task) => keep_alive(client, task).await.ok().flatten(),
            None => None,
        };
        if let (Some(message), Some(served), Some(selected), Some(uid)) = (&plaintext, &self.served, &requests.selected, uid) {
            let origin = Origin {
                mailbox: selected.mailbox.clone(),
                uidvalidity: selected.uidvalidity,
                uid,
            };
            served.record(message, origin);
        }
        let requests = &requests;
        let wire = &wire;
        let dropped = |item: &Item| requests.added.iter().any(|a| a.item.same_answer(&item.item));
        let mut w = client.lock().await;
        match plaintext {
            // Gathered into 64 KiB writes: one TLS record per answer, not
            // one per item (large literals still stream).
            None if !items.iter().any(dropped) => {
                let mut buffered = BufWriter::with_capacity(WRITE_BUFFER, &mut *w);
                wire.write_to(&mut buffered).await?;
                buffered.flush().await?;
            }
            None => {
                let mut buffered = BufWriter::with_capacity(WRITE_BUFFER, &mut *w);
                buffered.write_all(format!("* {number} FETCH (").as_bytes()).await?;
                for (n, item) in items.iter().filter(|i| !dropped(i)).enumerate() {
                    if n > 0 {
                        buffered.write_all(b" ").await?;
                    }
                    buffered.write_all(&item.name).await?;
                    buffered.write_all(b" ").await?;
                    wire.write_span(item.value.from, item.value.to, &mut buffered).await?;
                }
                buffered.write_all(b")\r\n").await?;
                buffered.flush().await?;
            }
            Some(message) => {
                let view = MessageView::parse(&message);
                let mut out = format!("* {number} FETCH (").into_bytes();
                // UID first: Thunderbird expects it there.
                let mut ordered: Vec<&Item> = items.iter().filter(|i| !dropped(i)).collect();
                ordered.sort_by_key(|i| i.item != FetchItem::Uid);
                let mut written = 0;
                for item in ordered {
                    let mut value = Vec::new();
                    match answer_from(&view, item, requests, &mut value) {
                        Ok(true) => {}
                        Ok(false) => value = wire.bytes(item.value.from, item.value.to, usize::MAX).unwrap_or_default(),
                        // Left out, as Dovecot leaves it out before it
                        // fails the command.
                        Err(e) => {
                            self.failures.push((item.item.clone(), e));
                            continue;
                        }
                    }
                    if written > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(&item.name);
                    out.push(b' ');
                    out.extend_from_slice(&value);
                    written += 1;
                }
                out.extend_from_slice(b")\r\n");
                w.write_all(&out).await?;
            }
        }
        Ok(w.flush().await?)
    }

    /// Hands the header of a plain message, when the answer carries it,
    /// to the learner (Autocrypt headers of correspondents), without
    /// delaying the answer.
    fn learn_from_header(&self, wire: &Wire, items: &[Item]) {
        const HEADER_LIMIT: usize = 256 * 1024;
        let header = items
            .iter()
            .filter(|i| i.item.is_whole_message(true))
            .find_map(|i| Cursor::literal_of(wire, i.value))
            .and_then(|spool| spool.head(HEADER_LIMIT).ok());
        if let Some(header) = header {
            let learner = self.shared.learner.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = learner.learn(&header, &[]) {
                    tracing::warn!(error = %e, "cannot record the keys this message carries");
                }
            });
        }
    }

    /// The account's indexer, if it has a search index.
    pub fn indexer(&self) -> Option<Arc<crate::imap::indexer::Indexer>> {
        self.shared.indexers.get(&self.account.login).cloned()
    }

    /// What makes decrypted messages for this session, on other tasks.
    fn decryptor(&self) -> Decryptor {
        Decryptor {
            shared: self.shared.clone(),
            account: self.account.clone(),
            cache: self.cache.clone(),
            fetcher: self.fetcher.clone(),
        }
    }
}

/// An answer begun by [`Rewriter::begin`], not written yet.
pub struct Pending {
    wire: Wire,
    requests: Requests,
    /// The answer's number, items and UID; `None` when not understood.
    parsed: Option<(u32, Vec<Item>, Option<u32>)>,
    /// The decrypted message being made, for an encrypted message.
    plaintext: Option<tokio::task::JoinHandle<Option<Vec<u8>>>>,
    /// Octets its decryption holds beyond the answer: twice the size of
    /// a message fetched on a side connection (ciphertext and plaintext).
    fetched_aside: u64,
}

impl Pending {
    /// True while its message is decrypted in the background: later
    /// answers may be read and begun before it is written.
    pub fn decrypting(&self) -> bool {
        self.plaintext.is_some()
    }

    /// The octets it holds (its literals, and what a side fetch brings),
    /// for the look-ahead's bound.
    pub fn size(&self) -> u64 {
        let literals: u64 = self.wire.parts.iter().filter_map(|p| p.literal.as_ref()).map(|l| l.len()).sum();
        literals + self.fetched_aside
    }
}

/// Obtains decrypted messages for a session, off its task.
struct Decryptor {
    shared: Arc<Shared>,
    account: Arc<Account>,
    cache: Option<Arc<MessageCache>>,
    fetcher: Arc<SideFetcher>,
}

impl Decryptor {
    /// The decrypted message (CRLF) at `place` (mailbox, UIDVALIDITY,
    /// UID), from the cache, from `ciphertext` (the answer's own), or
    /// fetched on a side connection; decrypted and cached as needed.
    /// `None` when it cannot be had (the client then sees the answer as
    /// the server gave it).
    async fn plaintext(self, ciphertext: Option<Vec<u8>>, place: Option<(Vec<u8>, Option<u32>, u32)>) -> Option<Vec<u8>> {
        if let (Some(cache), Some((mailbox, Some(uidvalidity), uid))) = (&self.cache, &place) {
            let cache = cache.clone();
            let (mailbox, uidvalidity, uid) = (mailbox.clone(), *uidvalidity, *uid);
            let hit = tokio::task::spawn_blocking(move || {
                cache.get(&EntryKey {
                    mailbox: &mailbox,
                    uidvalidity,
                    uid,
                })
            })
            .await
            .ok()
            .flatten();
            let result = if hit.is_some() { "hit" } else { "miss" };
            self.shared.metrics.imap_cache_lookups.with_label_values(&[result]).inc();
            if let Some(message) = hit {
                let metrics = &self.shared.metrics;
                metrics
                    .imap_messages
                    .with_label_values(&metrics.labels(&["cached"], &self.account.login))
                    .inc();
                return Some(message);
            }
        }
        let ciphertext = match ciphertext {
            Some(bytes) => bytes,
            None => {
                let (mailbox, _, uid) = place.as_ref()?;
                match self.fetcher.fetch(mailbox, *uid).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let metrics = &self.shared.metrics;
                        metrics
                            .upstream_failures
                            .with_label_values(&metrics.labels(&[e.kind()], &self.account.login))
                            .inc();
                        tracing::warn!(error = %e, "cannot fetch an encrypted message for decryption; showing it as stored");
                        return None;
                    }
                }
            }
        };
        let account = self.account.clone();
        let keystore = self.shared.keystore.snapshot();
        let learner = self.shared.learner.clone();
        let cache = self.cache.clone();
        let metrics = self.shared.metrics.clone();
        let indexer = self.shared.indexers.get(&self.account.login).cloned();
        let caches: Vec<Arc<MessageCache>> = self.shared.caches.values().cloned().collect();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let outcome = crate::message::decrypt_message(&ciphertext, std::slice::from_ref(&account.key), &keystore);
            if let Err(e) = learner.learn(&outcome.message, &outcome.gossip) {
                tracing::warn!(error = %e, "cannot record the keys this message carries");
            }
            let message = to_crlf(&outcome.message).into_owned();
            let label = if outcome.status.is_failure() { "failed" } else { "decrypted" };
            metrics
                .imap_messages
                .with_label_values(&metrics.labels(&[label], &account.login))
                .inc();
            metrics.imap_decrypt_seconds.observe(started.elapsed().as_secs_f64());
            if let (Some((mailbox, Some(uidvalidity), uid)), false) = (place, outcome.status.is_failure()) {
                if let Some(cache) = cache {
                    let key = EntryKey {
                        mailbox: &mailbox,
                        uidvalidity,
                        uid,
                    };
                    if let Err(e) = cache.put(&key, &message) {
                        tracing::warn!(error = %e, "cannot cache a decrypted message");
                    }
                    let held: u64 = caches.iter().map(|c| c.len_bytes()).sum();
                    metrics.imap_cache_bytes.set(i64::try_from(held).unwrap_or(i64::MAX));
                }
                if let Some(indexer) = indexer {
                    indexer.index_shown(mailbox, uidvalidity, uid, message.clone());
                }
            }
            message
        })
        .await
        .ok()
    }
}

/// How often a client waiting for a slow decryption hears from the proxy.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs `work`, telling the client every [`PROGRESS_INTERVAL`] that the
/// proxy is still at it (an untagged `OK`, allowed between answers):
/// clients such as Thunderbird give up on a server that stays silent while
/// a large message is fetched and decrypted.
async fn keep_alive<W, T>(client: &Mutex<W>, work: impl Future<Output = T>) -> T
where
    W: AsyncWrite + Unpin,
{
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + PROGRESS_INTERVAL;
    let mut ticks = tokio::time::interval_at(start, PROGRESS_INTERVAL);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                let mut w = client.lock().await;
                let _ = w.write_all(b"* OK Sealpost is still decrypting a large message\r\n").await;
                let _ = w.flush().await;
            }
        }
    }
}

/// Answers `item` from the decrypted message into `out`: `Ok(false)` for
/// items that do not depend on the content (they keep the server's
/// value), an error for a BINARY section the message cannot give.
fn answer_from(view: &MessageView<'_>, item: &Item, requests: &Requests, out: &mut Vec<u8>) -> Result<bool, BinaryError> {
    match &item.item {
        FetchItem::Uid | FetchItem::Flags | FetchItem::InternalDate | FetchItem::Other(_) => return Ok(false),
        FetchItem::Rfc822Size => emit::number(out, view.size() as u64),
        FetchItem::BodyStructure => view.bodystructure(out),
        FetchItem::Body => view.body(out),
        FetchItem::Envelope => view.envelope(out),
        // Like BODY[]: a section, so NULs go out as 0x80 as Dovecot sends them.
        FetchItem::Rfc822 => emit::literal(out, &view.section(&Section::all())),
        FetchItem::Rfc822Header => emit::literal(out, &view.section(&Section::header())),
        FetchItem::Rfc822Text => emit::literal(out, &view.section(&Section::text())),
        FetchItem::Section { section, partial: cut, .. } => {
            let bytes = view.section(section);
            emit::literal(out, cut_to(&bytes, cut, requests, &item.item));
        }
        FetchItem::Binary { section, partial: cut, .. } => {
            let binary = view.binary(section)?;
            let bytes = cut_to(&binary.bytes, cut, requests, &item.item);
            if binary.literal8 {
                emit::literal8(out, bytes);
            } else {
                emit::literal(out, bytes);
            }
        }
        FetchItem::BinarySize { section } => emit::number(out, view.binary_size(section)? as u64),
        // The draft syntax `PREVIEW (FUZZY)` (not announced) is answered
        // in its own form by the server; only RFC 8970's is ours.
        FetchItem::Preview { .. } if !requests.asked.iter().any(|r| matches!(r.item, FetchItem::Preview { .. })) => return Ok(false),
        FetchItem::Preview { .. } => emit::string(out, view.preview().as_bytes()),
    }
    Ok(true)
}

/// The part of a section's `bytes` an answer carries: all of them, or,
/// for an answer with a partial origin, from there as many as the client
/// asked for (answers carry only the origin).
fn cut_to<'b>(bytes: &'b [u8], cut: &Option<Partial>, requests: &Requests, answer: &FetchItem) -> &'b [u8] {
    match cut {
        None => bytes,
        Some(cut) => partial(bytes, cut.origin, asked_length(requests, answer)),
    }
}

/// The partial length the client asked for with the item this answer
/// names (answers carry only the origin).
fn asked_length(requests: &Requests, answer: &FetchItem) -> Option<u64> {
    let asked = requests.asked.iter().find(|r| r.item.same_answer(answer))?;
    match &asked.item {
        FetchItem::Section { partial, .. } | FetchItem::Binary { partial, .. } => partial.and_then(|p| p.length),
        _ => None,
    }
}

/// Splits `* n FETCH (items)` into the message number and its items.
fn parse(wire: &Wire) -> Option<(u32, Vec<Item>)> {
    let mut c = wire.cursor();
    if c.token() != b"*" {
        return None;
    }
    c.skip_spaces();
    let number: u32 = std::str::from_utf8(c.token()).ok()?.parse().ok()?;
    c.skip_spaces();
    if !c.token().eq_ignore_ascii_case(b"FETCH") {
        return None;
    }
    c.skip_spaces();
    if !c.eat(b'(') {
        return None;
    }
    let mut items = Vec::new();
    loop {
        c.skip_spaces();
        if c.eat(b')') {
            break;
        }
        let name = c.token().to_vec();
        if name.is_empty() {
            return None;
        }
        c.skip_spaces();
        let value = c.value()?;
        items.push(Item {
            item: FetchItem::parse(&name),
            name,
            value,
        });
    }
    c.at_end().then_some((number, items))
}

/// How much of a whole message [`encrypted_by_start`] reads after its
/// header: a PGP/MIME control part and the start of the encrypted part,
/// or the start of the text.
const DETECTION_HEAD: usize = 64 * 1024;

/// True when `message` (the whole message as stored) is encrypted, read
/// from its start: PGP/MIME (also as Exchange rewrites it) or an armored
/// text part, as decryption will find it.
fn encrypted_by_start(message: &crate::spool::Spool) -> bool {
    // The header, however long, and DETECTION_HEAD octets after it.
    let mut wanted = DETECTION_HEAD;
    let mut head = loop {
        let Ok(head) = message.head(wanted) else {
            return false;
        };
        let end = crate::imap::sidefetch::header_length(&head);
        if head.len() as u64 >= message.len() || end + DETECTION_HEAD <= head.len() {
            break head;
        }
        // Past the header's end now, or twice as far to find it.
        wanted = if end < head.len() { end + DETECTION_HEAD } else { 2 * wanted };
    };
    // Whole lines only, so that a base64 text part decodes.
    if (head.len() as u64) < message.len() {
        head.truncate(head.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1));
    }
    crate::message::protection(&head) == crate::message::Protection::Encrypted
}

/// True when the message is PGP/MIME (also as Exchange rewrites it, under
/// multipart/mixed) or a single text part that starts with an armored
/// OpenPGP message.
pub fn is_encrypted(structure: Option<&Value>, probe: Option<&[u8]>) -> bool {
    let Some(items) = structure.and_then(Value::list) else {
        return false;
    };
    let is_type = |part: &Value, t: &str, s: &str| part.list().is_some_and(|p| p.len() > 1 && p[0].is(t) && p[1].is(s));
    if items.first().and_then(Value::list).is_some() {
        let parts: Vec<&Value> = items.iter().take_while(|v| v.list().is_some()).collect();
        let subtype = items.get(parts.len());
        let control_first = parts.first().is_some_and(|p| is_type(p, "application", "pgp-encrypted")) && parts.len() >= 2;
        return control_first && subtype.is_some_and(|s| s.is("encrypted") || s.is("mixed"));
    }
    if !items.first().is_some_and(|t| t.is("text")) {
        return false;
    }
    let Some(probe) = probe else { return false };
    if items.get(5).is_some_and(|e| e.is("base64")) {
        let compact: Vec<u8> = probe.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        let usable = compact.len() / 4 * 4;
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &compact[..usable]).unwrap_or_default();
        return contains(&decoded, ARMOR_BEGIN);
    }
    contains(probe, ARMOR_BEGIN)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn v(s: &[u8]) -> Value {
        Value::parse(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_work_keeps_the_client_informed() {
        let (mut ours, theirs) = tokio::io::duplex(4096);
        let client = Mutex::new(theirs);
        let out = keep_alive(&client, async {
            tokio::time::sleep(Duration::from_secs(25)).await;
            7
        })
        .await;
        assert_eq!(out, 7);
        drop(client);
        let mut seen = String::new();
        ours.read_to_string(&mut seen).await.unwrap();
        assert_eq!(seen, "* OK Sealpost is still decrypting a large message\r\n".repeat(2));
        let quick = keep_alive(&Mutex::new(tokio::io::sink()), async { 1 }).await;
        assert_eq!(quick, 1);
    }

    #[test]
    fn recognises_encrypted_structures() {
        let pgp_mime = v(b"((\"application\" \"pgp-encrypted\" NIL NIL NIL \"7bit\" 12 NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"name\" \"encrypted.asc\") NIL NIL \"7bit\" 900 NIL NIL NIL NIL) \"encrypted\" (\"protocol\" \"application/pgp-encrypted\" \"boundary\" \"b\") NIL NIL NIL)");
        assert!(is_encrypted(Some(&pgp_mime), None));
        let exchange = v(b"((\"application\" \"pgp-encrypted\" NIL NIL NIL \"7bit\" 12 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 900 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)");
        assert!(is_encrypted(Some(&exchange), None));
        let alternative = v(b"((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 1) \"alternative\")");
        assert!(!is_encrypted(Some(&alternative), None));
        let text = v(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 900 20 NIL NIL NIL NIL)");
        assert!(is_encrypted(Some(&text), Some(b"\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEM")));
        assert!(!is_encrypted(Some(&text), Some(b"Hello Bob")));
        assert!(!is_encrypted(Some(&text), None));
        let b64 = v(b"(\"text\" \"plain\" NIL NIL NIL \"base64\" 900 20 NIL NIL NIL NIL)");
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"-----BEGIN PGP MESSAGE-----\n\nhQEMA");
        assert!(is_encrypted(Some(&b64), Some(encoded.as_bytes())));
        assert!(!is_encrypted(None, Some(b"-----BEGIN PGP MESSAGE-----")));
    }
}
