//! SEARCH, SORT and THREAD (and their UID forms) over mail the server
//! cannot read.
//!
//! A search whose keys all concern what the server knows (flags, UIDs,
//! sequence numbers, arrival dates) is relayed as written. Any other is
//! answered by Sealpost, and no search string reaches the server (but in
//! hybrid mode, below):
//!
//! 1. On the client's own connection (so sequence numbers, `$` and
//!    expunges are the session's), the proxy asks the server, with tags
//!    of its own, for the UIDs of the mailbox and for the UIDs each part
//!    of the program without content criteria selects: pipelined with
//!    ESEARCH (`UID SEARCH RETURN (ALL) SEEN`...), whose answers name
//!    their command; without it, once nothing of the client's is
//!    in flight, one plain `UID SEARCH` at a time.
//! 2. Messages of the mailbox the account's search index lacks are
//!    fetched on a side connection, decrypted and indexed first (the
//!    client hears a `* OK` saying so).
//! 3. Content criteria are answered from the index; the program's
//!    boolean structure is evaluated over the UID sets, and the answer is
//!    written as the server would write it (`* SEARCH`, or `* ESEARCH`
//!    with MIN, MAX, COUNT, ALL). `RETURN (SAVE)` has the server save the
//!    result for `$`: the one time it learns a result, which the client's
//!    next FETCH of `$` would tell it anyway.
//!
//! With `imap.search = "hybrid"` the index holds only the header of a
//! message stored in plaintext; when the mailbox holds such messages, the
//! server is asked which of them each BODY and TEXT string selects (one
//! more `UID SEARCH CHARSET UTF-8 BODY ...` per string), and the user has
//! accepted that it learns the strings.

use std::sync::{Arc, Mutex as SyncMutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::Next;
use crate::account::Account;
use crate::imap::command::Head;
use crate::imap::indexer::{index_fetched, sequence_set};
use crate::imap::response::{esearch_all, modseq, search_numbers};
use crate::imap::searchkey::{self, Key, Program, ProgramError, Return};
use crate::imap::sidefetch::SideFetcher;
use crate::imap::state::{send, ClientWriter, Internal, InternalAnswer, SessionError, Shared, State, UpstreamWriter};
use crate::imap::wire::{Pos, Wire};
use crate::search::{order, thread, Algorithm, Coverage, Criterion, OrderRow, SortCriterion};
use crate::store::{MailboxId, SearchIndex};

/// Messages fetched from the server per round trip while indexing.
const FETCH_BATCH: usize = 50;

/// What a search needs from the session.
pub struct Search<'a> {
    /// What all sessions share.
    pub shared: &'a Arc<Shared>,
    /// The account logged in.
    pub account: &'a Arc<Account>,
    /// The session's state.
    pub state: &'a Arc<SyncMutex<State>>,
    /// The client.
    pub client: &'a ClientWriter,
    /// Side connections for messages to index.
    pub fetcher: &'a SideFetcher,
    /// The server answers with ESEARCH, whose lines name the command
    /// they answer. Without it the proxy's own commands wait until
    /// nothing of the client's is in flight and go one at a time, so that
    /// each `* SEARCH` line is known to be theirs.
    pub esearch: bool,
    /// The server takes `{n+}` literals (for the strings of a hybrid
    /// search).
    pub literal_plus: bool,
}

/// A search that failed before it could be answered.
enum Failure {
    /// The client hears `NO` with this text.
    No(String),
    /// The session cannot go on.
    Session(SessionError),
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        Failure::Session(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Session(e.into())
    }
}

/// Which command is answered, with what it adds to the search program.
enum Request {
    /// SEARCH.
    Search,
    /// SORT with its criteria.
    Sort(Vec<SortCriterion>),
    /// THREAD with its algorithm.
    Thread(Algorithm),
}

/// The messages a program selects.
struct Selection {
    /// Every UID of the mailbox, ascending, as the server answered.
    universe: Vec<u32>,
    /// Of the expunges withheld from the client, how many the server
    /// announced before that answer (the later ones are in `universe`).
    expunges_before: usize,
    /// The UIDs selected, ascending.
    result: Vec<u32>,
    /// The index holding them.
    index: Arc<SearchIndex>,
    mailbox: MailboxId,
}

impl Search<'_> {
    /// Handles the SEARCH or SORT `head` whose whole command is `wire`.
    pub async fn run(&self, upstream: &mut UpstreamWriter, head: &Head<'_>, wire: &Wire) -> Result<Next, SessionError> {
        let mut args = wire.cursor();
        args.pos = Pos { part: 0, at: head.args };
        let tag = head.tag;
        let parsed = match head.name.as_str() {
            "SORT" => searchkey::parse_sort(wire, args).map(|(criteria, program)| (Request::Sort(criteria), program)),
            "THREAD" => searchkey::parse_thread(wire, args).map(|(algorithm, program)| (Request::Thread(algorithm), program)),
            _ => searchkey::parse(wire, args).map(|program| (Request::Search, program)),
        };
        let (request, program) = match parsed {
            Ok(parsed) => parsed,
            Err(ProgramError::BadCharset(_)) => {
                let answer = format!("{} NO [BADCHARSET] Sealpost cannot read that charset\r\n", show(tag));
                send(self.client, answer.as_bytes()).await?;
                return Ok(Next::ReadCommand);
            }
            Err(ProgramError::Refused(e)) => {
                send(self.client, format!("{} NO [CANNOT] {e}\r\n", show(tag)).as_bytes()).await?;
                return Ok(Next::ReadCommand);
            }
            Err(ProgramError::Syntax(e)) => {
                send(self.client, format!("{} BAD Sealpost: {e}\r\n", show(tag)).as_bytes()).await?;
                return Ok(Next::ReadCommand);
            }
        };
        let single_line = wire.parts.len() == 1;
        if matches!(request, Request::Search) && single_line && program.keys.iter().all(Key::server_only) {
            return Ok(Next::Relay);
        }
        let selected = self.state.lock().expect("state lock").selected.clone();
        let Some(selected) = selected else {
            send(self.client, format!("{} BAD No mailbox selected\r\n", show(tag)).as_bytes()).await?;
            return Ok(Next::ReadCommand);
        };
        self.shared.metrics.searches.inc();
        let answer = async {
            let selection = self
                .select(upstream, &program, &selected.mailbox, selected.uidvalidity.unwrap_or(0))
                .await?;
            // Expunges the server announced meanwhile reach the client
            // after the answer, which numbers messages as the client
            // still sees them.
            let expunges = std::mem::take(&mut self.state.lock().expect("state lock").withheld_expunges);
            let numbers: Vec<u32> = expunges.iter().filter_map(|line| expunged_number(line)).collect();
            let (before, after) = numbers.split_at(selection.expunges_before.min(numbers.len()));
            // Messages expunged after the server listed the mailbox are in
            // the list, and still in the client's view, but match nothing.
            let gone = expunged_uids(&selection.universe, after);
            let mut selection = selection;
            selection.result.retain(|u| gone.binary_search(u).is_err());
            let numbering = Numbering {
                uid: head.uid,
                universe: &selection.universe,
                expunged: before.to_vec(),
            };
            let (untagged, done) = match &request {
                Request::Search => {
                    let untagged = self.respond(upstream, head, "SEARCH", &program, &selection.result, &numbering);
                    (untagged.await?, "Search")
                }
                Request::Sort(criteria) => {
                    let ordered = self.sorted(&selection, criteria, &selected.mailbox).await?;
                    let untagged = self.respond(upstream, head, "SORT", &program, &ordered, &numbering);
                    (untagged.await?, "Sort")
                }
                Request::Thread(algorithm) => {
                    let rows = self.order_rows(&selection, &selected.mailbox).await?;
                    let refs: Vec<&OrderRow> = rows.iter().collect();
                    let threads = thread::thread(&refs, *algorithm, |uid| numbering.id(uid).unwrap_or(0));
                    (format!("* THREAD {threads}\r\n").into_bytes(), "Thread")
                }
            };
            let mut answer = untagged;
            expunges.iter().for_each(|line| answer.extend_from_slice(line));
            answer
                .extend_from_slice(format!("{} OK {done} completed (by Sealpost, over the decrypted messages)\r\n", show(tag)).as_bytes());
            Ok(answer)
        };
        match answer.await {
            Ok(answer) => send(self.client, &answer).await?,
            Err(Failure::No(text)) => send(self.client, format!("{} NO {text}\r\n", show(tag)).as_bytes()).await?,
            Err(Failure::Session(e)) => return Err(e),
        }
        Ok(Next::ReadCommand)
    }

    /// The messages `program` selects in `mailbox`.
    async fn select(
        &self,
        upstream: &mut UpstreamWriter,
        program: &Program,
        mailbox: &[u8],
        uidvalidity: u32,
    ) -> Result<Selection, Failure> {
        // The server-only parts, each asked once, after the mailbox's UIDs.
        let mut server_parts: Vec<Vec<u8>> = vec![b"ALL".to_vec()];
        let tree = plan(&Key::And(program.keys.clone()), &mut server_parts);
        let (mut sets, expunges_before) = self.ask_server(upstream, &server_parts).await?;
        let universe = std::mem::take(&mut sets[0]);
        sets[0] = universe.clone();

        let index = self
            .shared
            .indexes
            .get(&self.account.login)
            .cloned()
            .ok_or_else(|| Failure::No("[UNAVAILABLE] Sealpost has no search index for this account".into()))?;
        let mailbox_id = blocking({
            let (index, mailbox) = (index.clone(), mailbox.to_vec());
            move || index.mailbox(&mailbox, uidvalidity)
        })
        .await?;
        self.bring_up_to_date(&index, mailbox_id, mailbox, &universe).await?;
        let (plaintext_headers, over_limit) = blocking({
            let index = index.clone();
            move || {
                let covered = |coverage| index.covered(mailbox_id, coverage);
                Ok((covered(Coverage::PlaintextHeader)?, covered(Coverage::OverLimit)?))
            }
        })
        .await?;
        let plaintext_headers = intersect(&plaintext_headers, &universe);
        let partial = intersect(&over_limit, &universe).len();
        if partial > 0 {
            let note = format!(
                "* OK Sealpost read only the header of {partial} messages over imap.max_message_size; \
                 raise it to search and sort them whole\r\n"
            );
            send(self.client, note.as_bytes()).await?;
        }

        let mut criteria = Vec::new();
        collect_criteria(&tree, &mut criteria);
        let mut local_sets = blocking({
            let index = index.clone();
            let criteria = criteria.clone();
            move || {
                criteria
                    .iter()
                    .map(|c| index.matching(mailbox_id, c))
                    .collect::<Result<Vec<_>, _>>()
            }
        })
        .await?;
        if !plaintext_headers.is_empty() {
            self.add_server_matches(upstream, &criteria, &mut local_sets, &plaintext_headers)
                .await?;
        }
        let result = evaluate(&tree, &universe, &sets, &local_sets, &mut 0);
        Ok(Selection {
            universe,
            expunges_before,
            result,
            index,
            mailbox: mailbox_id,
        })
    }

    /// `imap.search = "hybrid"`: the index holds only the header of the
    /// messages `plaintext` (ascending), so the server says which of them
    /// each BODY or TEXT of `criteria` selects, and those join its set in
    /// `sets`. The server learns the strings; it is asked only when the
    /// mailbox holds such messages.
    async fn add_server_matches(
        &self,
        upstream: &mut UpstreamWriter,
        criteria: &[Criterion],
        sets: &mut [Vec<u32>],
        plaintext: &[u32],
    ) -> Result<(), Failure> {
        let mut parts = Vec::new();
        let mut asked = Vec::new();
        for (i, criterion) in criteria.iter().enumerate() {
            let (name, needle) = match criterion {
                Criterion::Body(needle) => ("BODY", needle),
                Criterion::Text(needle) => ("TEXT", needle),
                _ => continue,
            };
            let mut part = format!("CHARSET UTF-8 {name} ").into_bytes();
            if !push_string(&mut part, needle.as_bytes(), self.literal_plus) {
                return Err(Failure::No(
                    "[CANNOT] Sealpost cannot send a string with a line break to a server without LITERAL+ (imap.search = \"hybrid\")"
                        .into(),
                ));
            }
            parts.push(part);
            asked.push(i);
        }
        if parts.is_empty() {
            return Ok(());
        }
        let (found, _) = self.ask_server(upstream, &parts).await?;
        for (i, found) in asked.into_iter().zip(found) {
            let set = &mut sets[i];
            set.extend(intersect(&found, plaintext));
            set.sort_unstable();
            set.dedup();
        }
        Ok(())
    }

    /// The selected UIDs in the order SORT `criteria` give.
    async fn sorted(&self, selection: &Selection, criteria: &[SortCriterion], mailbox: &[u8]) -> Result<Vec<u32>, Failure> {
        let rows = self.order_rows(selection, mailbox).await?;
        let refs: Vec<&OrderRow> = rows.iter().collect();
        Ok(order::sort(&refs, criteria))
    }

    /// The order rows of the selected messages, ascending by UID; the
    /// arrival of messages indexed when a client fetched them is asked
    /// of the server first.
    async fn order_rows(&self, selection: &Selection, mailbox_name: &[u8]) -> Result<Vec<OrderRow>, Failure> {
        let (index, mailbox) = (selection.index.clone(), selection.mailbox);
        let unknown = blocking(move || index.without_arrival(mailbox)).await?;
        if !unknown.is_empty() {
            let arrivals = self.fetcher.arrivals(mailbox_name, &sequence_set(&unknown)).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot fetch arrival times");
                Failure::No("[UNAVAILABLE] Sealpost could not ask the server when messages arrived; try again".into())
            })?;
            let index = selection.index.clone();
            blocking(move || index.set_arrivals(mailbox, &arrivals)).await?;
        }
        let index = selection.index.clone();
        let rows = blocking(move || index.order_rows(mailbox)).await?;
        Ok(rows
            .into_iter()
            .filter(|r| selection.result.binary_search(&r.uid).is_ok())
            .collect())
    }

    /// The untagged answer to SEARCH or SORT (`name`): `ordered` (UIDs in
    /// answer order) numbered as `numbering` says, in the standard form
    /// or as ESEARCH when `returns` asks.
    async fn respond(
        &self,
        upstream: &mut UpstreamWriter,
        head: &Head<'_>,
        name: &str,
        program: &Program,
        ordered: &[u32],
        numbering: &Numbering<'_>,
    ) -> Result<Vec<u8>, Failure> {
        let ids: Vec<u32> = ordered.iter().filter_map(|&u| numbering.id(u)).collect();
        let options = program.returns.as_deref();
        let has = |o: Return| options.is_some_and(|options| options.contains(&o));
        // With MIN or MAX but neither ALL nor COUNT only those messages
        // are saved (RFC 5182 §2.4) and count for MODSEQ, as in Dovecot.
        let extremes = (has(Return::Min) || has(Return::Max)) && !(has(Return::All) || has(Return::Count));
        let mut counted: Vec<u32> = if extremes {
            let min = ordered.first().filter(|_| has(Return::Min));
            let max = ordered.last().filter(|_| has(Return::Max));
            min.into_iter().chain(max).copied().collect()
        } else {
            ordered.to_vec()
        };
        counted.sort_unstable();
        counted.dedup();
        // A search with MODSEQ answers with the highest mod-sequence of
        // the messages found (RFC 7162 §3.1.5).
        let modseq = match program.keys.iter().any(Key::has_modseq) && !counted.is_empty() {
            true => Some(self.highest_modseq(upstream, &counted).await?),
            false => None,
        };
        let mut out = Vec::new();
        match options {
            None => {
                out.extend_from_slice(format!("* {name}").as_bytes());
                for id in &ids {
                    out.extend_from_slice(format!(" {id}").as_bytes());
                }
                if let Some(modseq) = modseq {
                    out.extend_from_slice(format!(" (MODSEQ {modseq})").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            Some(options) => {
                if has(Return::Save) {
                    self.save(upstream, &counted).await?;
                }
                if options != [Return::Save] {
                    out.extend_from_slice(b"* ESEARCH (TAG ");
                    out.extend_from_slice(&quoted(head.tag));
                    out.push(b')');
                    if head.uid {
                        out.extend_from_slice(b" UID");
                    }
                    if let (true, Some(min)) = (has(Return::Min), ids.first()) {
                        out.extend_from_slice(format!(" MIN {min}").as_bytes());
                    }
                    if let (true, Some(max)) = (has(Return::Max), ids.last()) {
                        out.extend_from_slice(format!(" MAX {max}").as_bytes());
                    }
                    if (options.is_empty() || has(Return::All)) && !ids.is_empty() {
                        out.extend_from_slice(b" ALL ");
                        out.extend_from_slice(sequence_set(&ids).as_bytes());
                    }
                    if has(Return::Count) {
                        out.extend_from_slice(format!(" COUNT {}", ids.len()).as_bytes());
                    }
                    if let Some(modseq) = modseq {
                        out.extend_from_slice(format!(" MODSEQ {modseq}").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        Ok(out)
    }

    /// Sends `UID SEARCH RETURN (ALL) part` for each part, pipelined, and
    /// reads the UID sets, with how many expunges came before the first
    /// answer.
    async fn ask_server(&self, upstream: &mut UpstreamWriter, parts: &[Vec<u8>]) -> Result<(Vec<Vec<u32>>, usize), Failure> {
        let mut sets = Vec::new();
        let mut expunges_before = None;
        if self.esearch {
            let mut waiting = Vec::new();
            let mut commands = Vec::new();
            for part in parts {
                let (tag, done) = self.internal_tag();
                commands.extend_from_slice(format!("{tag} UID SEARCH RETURN (ALL) ").as_bytes());
                commands.extend_from_slice(part);
                commands.extend_from_slice(b"\r\n");
                waiting.push(done);
            }
            upstream.write_all(&commands).await?;
            upstream.flush().await?;
            for done in waiting {
                let answer = self.answered(done, "a search it needs").await?;
                expunges_before.get_or_insert(answer.expunges_before);
                sets.push(answer.lines.iter().flat_map(|l| esearch_all(l)).collect());
            }
        } else {
            self.until_nothing_in_flight().await;
            for part in parts {
                let mut command = b"UID SEARCH ".to_vec();
                command.extend_from_slice(part);
                let answer = self.plain(upstream, &command, "a search it needs").await?;
                expunges_before.get_or_insert(answer.expunges_before);
                sets.push(answer.lines.iter().filter_map(|l| search_numbers(l)).flatten().collect());
            }
        }
        Ok((sets, expunges_before.unwrap_or(0)))
    }

    /// Waits until every command of the client's has its answer: then a
    /// `* SEARCH` line can only answer the proxy's own command.
    async fn until_nothing_in_flight(&self) {
        while !self.state.lock().expect("state lock").in_flight.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Sends `command` for the proxy's own use, alone, and waits for its
    /// answer (see [`Self::esearch`]).
    async fn plain(&self, upstream: &mut UpstreamWriter, command: &[u8], what: &str) -> Result<InternalAnswer, Failure> {
        let (tag, done) = self.internal_tag();
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        upstream.write_all(&line).await?;
        upstream.flush().await?;
        self.answered(done, what).await
    }

    /// The answer to an internal command; a `NO` or `BAD` refuses the
    /// client's command, saying what the server refused.
    async fn answered(&self, done: oneshot::Receiver<InternalAnswer>, what: &str) -> Result<InternalAnswer, Failure> {
        let answer = done
            .await
            .map_err(|_| Failure::Session(SessionError::Io(std::io::ErrorKind::BrokenPipe.into())))?;
        if !answer.ok {
            return Err(Failure::No(format!("[CANNOT] Sealpost: the server refused {what}")));
        }
        Ok(answer)
    }

    /// The highest mod-sequence of the messages `uids`, as the server
    /// reports it for a search with MODSEQ.
    async fn highest_modseq(&self, upstream: &mut UpstreamWriter, uids: &[u32]) -> Result<u64, Failure> {
        let what = "to report mod-sequences (it must support CONDSTORE for MODSEQ)";
        let set = sequence_set(uids);
        let answer = if self.esearch {
            let (tag, done) = self.internal_tag();
            let command = format!("{tag} UID SEARCH RETURN (ALL) UID {set} MODSEQ 0\r\n");
            upstream.write_all(command.as_bytes()).await?;
            upstream.flush().await?;
            self.answered(done, what).await?
        } else {
            self.until_nothing_in_flight().await;
            self.plain(upstream, format!("UID SEARCH UID {set} MODSEQ 0").as_bytes(), what)
                .await?
        };
        answer.lines.iter().find_map(|line| modseq(line)).ok_or_else(|| {
            Failure::No("[CANNOT] Sealpost: the server did not report mod-sequences (it must support CONDSTORE for MODSEQ)".into())
        })
    }

    /// Has the server save `uids` as the session's `$`.
    async fn save(&self, upstream: &mut UpstreamWriter, uids: &[u32]) -> Result<(), Failure> {
        let (tag, done) = self.internal_tag();
        let set = if uids.is_empty() {
            "NOT ALL".to_string()
        } else {
            format!("UID {}", sequence_set(uids))
        };
        upstream
            .write_all(format!("{tag} UID SEARCH RETURN (SAVE) {set}\r\n").as_bytes())
            .await?;
        upstream.flush().await?;
        match done.await {
            Ok(InternalAnswer { ok: true, .. }) => Ok(()),
            Ok(InternalAnswer { ok: false, .. }) => Err(Failure::No(
                "[CANNOT] Sealpost: the server refused to save the search result".into(),
            )),
            Err(_) => Err(Failure::Session(SessionError::Io(std::io::ErrorKind::BrokenPipe.into()))),
        }
    }

    fn internal_tag(&self) -> (String, oneshot::Receiver<InternalAnswer>) {
        let mut s = self.state.lock().expect("state lock");
        s.internal_count += 1;
        let tag = format!("sealpost-s{}", s.internal_count);
        let (done, rx) = oneshot::channel();
        s.internal.insert(
            tag.clone().into_bytes(),
            Internal {
                lines: Vec::new(),
                expunges_at_answer: None,
                done,
            },
        );
        (tag, rx)
    }

    /// Indexes the messages of `universe` the index lacks and forgets
    /// those gone from the server.
    async fn bring_up_to_date(
        &self,
        index: &Arc<SearchIndex>,
        mailbox_id: MailboxId,
        mailbox: &[u8],
        universe: &[u32],
    ) -> Result<(), Failure> {
        let missing = blocking({
            let (index, universe) = (index.clone(), universe.to_vec());
            move || index.sync(mailbox_id, &universe)
        })
        .await?;
        if missing.is_empty() {
            return Ok(());
        }
        let note = format!(
            "* OK Sealpost is indexing {} messages of this mailbox to answer the search\r\n",
            missing.len()
        );
        send(self.client, note.as_bytes()).await?;
        for batch in missing.chunks(FETCH_BATCH) {
            let messages = self.fetcher.fetch_set(mailbox, &sequence_set(batch)).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot fetch messages to index");
                Failure::No("[UNAVAILABLE] Sealpost could not fetch the messages it must search; try again".into())
            })?;
            let (index, account, keystore) = (index.clone(), self.account.clone(), self.shared.keystore.snapshot());
            let metrics = self.shared.metrics.clone();
            let search = self.shared.limits.search;
            blocking(move || index_fetched(&index, mailbox_id, messages, &account, &keystore, &metrics, search)).await?;
        }
        Ok(())
    }
}

/// Runs index work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, crate::store::IndexError> + Send + 'static) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "search index failure");
            Err(Failure::No("[SERVERBUG] Sealpost's search index failed; see its log".into()))
        }
        Err(_) => Err(Failure::No("[SERVERBUG] Sealpost's search failed; see its log".into())),
    }
}

/// How the answer names messages: by UID, or by the sequence number the
/// client knows them by (their place among the mailbox's UIDs, before
/// the expunges the client has not heard of yet).
struct Numbering<'u> {
    uid: bool,
    /// Every UID of the mailbox now, ascending.
    universe: &'u [u32],
    /// Sequence numbers of the `* n EXPUNGE` lines withheld, in order.
    expunged: Vec<u32>,
}

impl Numbering<'_> {
    fn id(&self, uid: u32) -> Option<u32> {
        if self.uid {
            return Some(uid);
        }
        let mut seq = self.universe.binary_search(&uid).ok()? as u32 + 1;
        // Undo the expunges, last first: each moved later messages down.
        for &gone in self.expunged.iter().rev() {
            if seq >= gone {
                seq += 1;
            }
        }
        Some(seq)
    }
}

/// The UIDs that expunges of sequence numbers `numbers` (in order, each
/// after the ones before it) removed from `universe`, ascending.
fn expunged_uids(universe: &[u32], numbers: &[u32]) -> Vec<u32> {
    let mut left = universe.to_vec();
    let mut gone = Vec::new();
    for &n in numbers {
        if n >= 1 && (n as usize) <= left.len() {
            gone.push(left.remove(n as usize - 1));
        }
    }
    gone.sort_unstable();
    gone
}

/// `n` of a `* n EXPUNGE` line.
fn expunged_number(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("*"), Some(n), Some(word)) if word.eq_ignore_ascii_case("EXPUNGE") => n.parse().ok(),
        _ => None,
    }
}

/// A program with each server-only part replaced by its index in
/// `parts`, where it is appended.
#[derive(Debug)]
enum Plan {
    Local(Criterion),
    Server(usize),
    Not(Box<Plan>),
    Or(Box<Plan>, Box<Plan>),
    And(Vec<Plan>),
}

fn plan(key: &Key, parts: &mut Vec<Vec<u8>>) -> Plan {
    if key.server_only() {
        let mut text = Vec::new();
        key.write(&mut text);
        parts.push(text);
        return Plan::Server(parts.len() - 1);
    }
    match key {
        Key::Local(c) => Plan::Local(c.clone()),
        Key::Not(k) => Plan::Not(Box::new(plan(k, parts))),
        Key::Or(a, b) => Plan::Or(Box::new(plan(a, parts)), Box::new(plan(b, parts))),
        Key::And(keys) => {
            // Adjacent server-only keys go to the server as one part.
            let (server, local): (Vec<&Key>, Vec<&Key>) = keys.iter().partition(|k| k.server_only());
            let mut plans: Vec<Plan> = local.into_iter().map(|k| plan(k, parts)).collect();
            if !server.is_empty() {
                plans.push(plan(&Key::And(server.into_iter().cloned().collect()), parts));
            }
            Plan::And(plans)
        }
        Key::Server(_) => unreachable!("server-only keys are planned above"),
    }
}

fn collect_criteria(plan: &Plan, out: &mut Vec<Criterion>) {
    match plan {
        Plan::Local(c) => out.push(c.clone()),
        Plan::Server(_) => {}
        Plan::Not(p) => collect_criteria(p, out),
        Plan::Or(a, b) => {
            collect_criteria(a, out);
            collect_criteria(b, out);
        }
        Plan::And(plans) => plans.iter().for_each(|p| collect_criteria(p, out)),
    }
}

/// The UIDs (of `universe`, ascending) the plan selects; local criteria
/// take their sets from `local` in the order [`collect_criteria`] gave.
fn evaluate(plan: &Plan, universe: &[u32], server: &[Vec<u32>], local: &[Vec<u32>], next_local: &mut usize) -> Vec<u32> {
    match plan {
        Plan::Local(_) => {
            *next_local += 1;
            intersect(&local[*next_local - 1], universe)
        }
        Plan::Server(i) => intersect(&server[*i], universe),
        Plan::Not(p) => {
            let inner = evaluate(p, universe, server, local, next_local);
            universe.iter().copied().filter(|u| inner.binary_search(u).is_err()).collect()
        }
        Plan::Or(a, b) => {
            let a = evaluate(a, universe, server, local, next_local);
            let b = evaluate(b, universe, server, local, next_local);
            let mut all: Vec<u32> = a.into_iter().chain(b).collect();
            all.sort_unstable();
            all.dedup();
            all
        }
        Plan::And(plans) => {
            let mut result = universe.to_vec();
            for p in plans {
                let set = evaluate(p, universe, server, local, next_local);
                result = intersect(&result, &set);
            }
            result
        }
    }
}

/// Appends `value` as an IMAP string: a `{n+}` literal when the server
/// takes them, else a quoted string (false when it cannot be one).
fn push_string(out: &mut Vec<u8>, value: &[u8], literal_plus: bool) -> bool {
    if literal_plus {
        out.extend_from_slice(format!("{{{}+}}\r\n", value.len()).as_bytes());
        out.extend_from_slice(value);
        return true;
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return false;
    }
    out.extend_from_slice(&quoted(value));
    true
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().copied().filter(|x| b.binary_search(x).is_ok()).collect()
}

fn show(tag: &[u8]) -> String {
    String::from_utf8_lossy(tag).into_owned()
}

/// A tag as an IMAP quoted string.
fn quoted(tag: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in tag {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_before_withheld_expunges() {
        // The client sees 1..=6; messages 3 and then (the new) 4 went.
        let universe = [10, 20, 40, 60];
        let numbering = Numbering {
            uid: false,
            universe: &universe,
            expunged: vec![3, 4],
        };
        let seqs: Vec<Option<u32>> = [10, 20, 40, 60, 99].iter().map(|&u| numbering.id(u)).collect();
        assert_eq!(seqs, [Some(1), Some(2), Some(4), Some(6), None]);
        assert_eq!(expunged_number(b"* 7 EXPUNGE\r\n"), Some(7));
        // After the list: 40 went (third), then 60 (third again).
        assert_eq!(expunged_uids(&[10, 20, 40, 60], &[3, 3]), [40, 60]);
        assert_eq!(expunged_number(b"* 7 EXISTS\r\n"), None);
    }

    #[test]
    fn sets_and_boolean_structure() {
        assert_eq!(sequence_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(esearch_all(b"* ESEARCH (TAG \"t\") UID ALL 1:3,5,9:8\r\n"), [1, 2, 3, 5, 8, 9]);
        assert_eq!(esearch_all(b"* ESEARCH (TAG \"t\") UID\r\n"), Vec::<u32>::new());
        let keys = Key::And(vec![
            Key::Server(b"SEEN".to_vec()),
            Key::Or(
                Box::new(Key::Local(Criterion::Larger(5))),
                Box::new(Key::Server(b"FLAGGED".to_vec())),
            ),
            Key::Not(Box::new(Key::Local(Criterion::Smaller(2)))),
            Key::Server(b"UID 1:4".to_vec()),
        ]);
        let mut parts = vec![b"ALL".to_vec()];
        let tree = plan(&keys, &mut parts);
        assert_eq!(parts, [b"ALL".to_vec(), b"FLAGGED".to_vec(), b"(SEEN UID 1:4)".to_vec()]);
        let universe = [1, 2, 3, 4, 5];
        let server = [universe.to_vec(), vec![1], vec![1, 2, 3]];
        // LARGER 5 -> {2, 3}; SMALLER 2 -> {3}.
        let local = [vec![2, 3], vec![3]];
        assert_eq!(evaluate(&tree, &universe, &server, &local, &mut 0), [1, 2]);
    }
}
