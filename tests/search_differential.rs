//! SEARCH, SORT and THREAD over encrypted mail, held to Dovecot's answers
//! about the same mail stored in clear.
//!
//! The corpus (`common::searchcorpus`, a few hundred seeded messages with
//! marker words in known places, threads, many charsets and dates) is
//! APPENDed twice to fresh mailboxes of one account, in the same order and
//! with the same flags and internal dates: to P directly at Dovecot (stored
//! in clear), and to E through Sealpost (stored encrypted: checked by
//! fetching E directly, where no subject or body marker may show). UIDs
//! and sequence numbers then correspond one to one. Each command of
//! [`SEARCHES`], [`SORTS`] and [`THREADS`] is sent to Dovecot about P and
//! through Sealpost about E with the same tag; the untagged responses must
//! be equal byte for byte, and the tagged status (`OK`, `NO`, `BAD`, with
//! its response code if any; not the tag, not the human text).
//!
//! Each command also says what Dovecot must answer about P ([`Expect`]:
//! some message, none, or anything), so that the corpus is known to
//! exercise what the command asks about; and at least 80% of the commands
//! with content criteria must match a message on the plaintext side.
//!
//! **SMTP.** A subset of the corpus (`Case::smtp`) is also submitted as
//! alice@example.org through Sealpost's SMTP proxy to erin@example.org
//! (encrypted to her key), and the same bytes directly to the stack's
//! Postfix submission port, also as alice, to bob@example.net; each
//! message carries an `X-Search-Run` field with the run's token and its
//! index. Both INBOXes hold mail of other tests and runs, so the messages
//! of this run are moved, one at a time in corpus order, into a fresh
//! mailbox of each user (directly at Dovecot: bytes, flags and internal
//! dates move unchanged); erin's is read through her Sealpost, bob's
//! directly. What differs between the two as the client sees them (the
//! test prints it: header fields compared message by message, sizes,
//! internal dates; `SEARCH_SHOW=1` also prints one header of each):
//!
//! - Both begin with what delivery prepended: `Return-Path` (the same,
//!   alice), `Delivered-To` (erin vs bob) and two `Received` fields (the
//!   authenticated submission and the LMTP delivery: LMTP ids, recipient,
//!   time). In erin's copy these are fields of the encrypted envelope
//!   message, which Sealpost's view keeps above the decrypted header.
//! - Sealpost's view also keeps the envelope's `Autocrypt` field (alice's
//!   key, added by her Sealpost) and its `MIME-Version` (where the message
//!   had none), adds a `Sealpost-Status` field (`decrypted;
//!   signature=good; signer=...; warning="the signing key does not belong
//!   to the From address <...>"`), and its `Content-Type` carries the
//!   header-protection parameters `protected-headers="v1"; hp="cipher"`
//!   (a message without Content-Type gets `text/plain; charset=us-ascii`
//!   with them).
//! - So sizes differ (erin's view is about 1.2 to 1.4 KiB larger:
//!   `RFC822.SIZE`, `LARGER`, `SMALLER`, `SORT (SIZE)`), and internal dates
//!   are each delivery's time (usually the same second, not always:
//!   `BEFORE`, `ON`, `SINCE`, `SORT (ARRIVAL)`, `SORT (DATE)` of a message
//!   without Date; the subset has a Date and a Message-ID in every
//!   message, so Postfix adds neither).
//! - Everything the sender wrote is the same on both sides: Date, From,
//!   To, Cc, Subject, Message-ID, `X-*` fields, the body. Neither has the
//!   Bcc field any more (Postfix removes it, and Sealpost's copy has none
//!   either). No flags are set on delivery.
//!
//! [`SMTP_SEARCHES`] therefore asks only about what the submitted message
//! itself holds (Subject, From, To, Cc, the Date field, the body, the
//! marker words with TEXT, `HEADER` of the sender's fields), flags, UID
//! and sequence sets and sent dates; never about sizes, internal dates,
//! `Received` / `Delivered-To` / `Autocrypt` / `Sealpost-Status`, nor TEXT
//! words that only those hold (`localhost`, `LMTP`, `ESMTPSA`, `cipher`,
//! `signature`, the delivery year).
//!
//! **Dovecot 2.3's search**, which an implementation has to match (each
//! point has a command below that shows it): header values have their
//! white space compressed (a tab is a space) before they are compared,
//! the term not, so `SUBJECT "status  report"` does not find `Status
//! report` with two spaces, while TEXT and BODY keep white space; folded
//! lines are unfolded; encoded words are decoded for SUBJECT, FROM, ...
//! and HEADER, adjacent ones into one word, and a broken one is left as
//! it is; raw ISO-8859-1 in a header is not taken for text; case folding
//! is i;unicode-casemap (`ß` does not match `SS`); BODY is the decoded
//! text of every text part (HTML as it is) and the header and body of an
//! attached message, but not MIME part headers and not the content of
//! non-text attachments; a term does not match across a line break;
//! group names count as display names for TO and CC; SENT* take the date
//! as written, in the field's own zone, and a missing or unreadable Date
//! is 1 January 1970 (not the internal date); BEFORE, ON and SINCE take
//! the internal date in the server's time zone (UTC here), not in the
//! zone it was appended with; CHARSET converts the terms (ISO-8859-1,
//! KOI8-R, Shift_JIS), UTF-8 is taken without it and in quoted strings,
//! an unknown one is `NO [BADCHARSET]`; searching for a keyword the
//! mailbox does not know defines it (`* FLAGS` to every session).
//!
//! Knobs: `SEARCH_ONLY=substring` keeps only the commands containing it;
//! `SEARCH_SHOW=1` prints every command with both answers;
//! `SEARCH_SEED=n` draws the corpus from another seed; `SEARCH_KEEP=1`
//! keeps the mailboxes (their names are printed) instead of deleting them;
//! `SEARCH_DUMP=dir` makes `corpus_is_deterministic_and_varied` write the
//! corpus there, one `NNN-name.eml` per message (NNN is the UID).
//! `cargo test --test search_differential -- --nocapture` shows the counts.
//! A failing test lists each differing command with both answers (cut),
//! and writes them whole to `$TMPDIR/search-differential-LABEL.txt`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

use common::proxy::{python, token, Proxy, Setup};
use common::rawimap::{cut, literal_announcement, show, Imap, Mailbox};
use common::searchcorpus::{corpus_with_seed, encode, Case, Cs, MARKERS, SEED};
use common::stack::{password, stack};
use common::{contains, User};

/// The account P and E belong to.
const USER: &str = "carol@example.com";
/// Who submits the SMTP subset.
const SENDER: &str = "alice@example.org";
/// Who receives it through Sealpost, and who directly.
const SEALED_RECIPIENT: &str = "erin@example.org";
const PLAIN_RECIPIENT: &str = "bob@example.net";

/// What Dovecot must answer about the plaintext mailbox.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// `OK` and at least one message.
    Hit,
    /// `OK` and no message.
    Miss,
    /// Anything (a refusal, or a result that documents Dovecot's choice).
    Any,
}

use Expect::{Any, Hit, Miss};

// ---------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------
//
// `{{text}}` is sent as a synchronizing literal of the UTF-8 text,
// `{{+text}}` as a non-synchronizing one (LITERAL+), `{{latin1:text}}`,
// `{{koi8:text}}` and `{{sjis:text}}` in that charset. Commands run in
// order: `$` refers to the last `RETURN (SAVE)`.

/// SEARCH and UID SEARCH.
const SEARCHES: &[(Expect, &str)] = &[
    // Everything, flags, keywords.
    (Hit, "SEARCH ALL"),
    (Hit, "UID SEARCH ALL"),
    (Hit, "SEARCH SEEN"),
    (Hit, "SEARCH UNSEEN"),
    (Hit, "SEARCH FLAGGED"),
    (Hit, "SEARCH UNFLAGGED"),
    (Hit, "SEARCH ANSWERED"),
    (Hit, "SEARCH UNANSWERED"),
    (Hit, "SEARCH DELETED"),
    (Hit, "SEARCH UNDELETED"),
    (Hit, "SEARCH DRAFT"),
    (Hit, "SEARCH UNDRAFT"),
    (Hit, "SEARCH KEYWORD $label1"),
    (Hit, "SEARCH UNKEYWORD $label1"),
    (Hit, "SEARCH KEYWORD $label2"),
    (Miss, "SEARCH KEYWORD $spare"),
    (Hit, "SEARCH UNKEYWORD $spare"),
    (Hit, "UID SEARCH FLAGGED UNSEEN"),
    (Hit, "SEARCH NOT SEEN"),
    (Hit, "SEARCH OR FLAGGED DRAFT"),
    (Hit, "SEARCH KEYWORD $label1 KEYWORD $label2"),
    (Hit, "SEARCH OLDER 86400"),
    (Miss, "SEARCH YOUNGER 60"),
    // Sequence and UID sets.
    (Hit, "SEARCH 1"),
    (Hit, "SEARCH 1:10"),
    (Hit, "SEARCH 5:2"),
    (Hit, "SEARCH *"),
    (Hit, "SEARCH 300:*"),
    (Hit, "SEARCH 1,3,5,7:9,*"),
    (Hit, "UID SEARCH UID 1:50"),
    (Hit, "UID SEARCH UID *"),
    (Hit, "UID SEARCH UID 100:*"),
    (Hit, "SEARCH UID 2,4,6"),
    (Hit, "UID SEARCH 1:5"),
    (Hit, "SEARCH 1:* NOT 2:*"),
    (Miss, "UID SEARCH UID 9999"),
    (Hit, "UID SEARCH UID 9999:*"),
    (Any, "SEARCH 9999"),
    (Hit, "SEARCH 10:20 UID 15:30"),
    // Internal dates.
    (Hit, "SEARCH BEFORE 1-Jan-2020"),
    (Hit, "SEARCH SINCE 1-Jan-2024"),
    (Hit, "SEARCH ON 1-Jun-2022"),
    (Hit, "SEARCH ON 2-Jun-2022"),
    (Hit, "SEARCH ON 31-May-2022"),
    (Hit, "SEARCH SINCE 1-Jun-2022 BEFORE 3-Jun-2022"),
    (Miss, "SEARCH BEFORE 1-Jan-1990"),
    (Miss, "SEARCH SINCE 1-Jan-2030"),
    (Hit, "UID SEARCH SINCE 01-Mar-2021 BEFORE 01-Apr-2021"),
    // Dovecot takes day 32 (RFC 3501 would not).
    (Any, "SEARCH BEFORE 32-Jan-2020"),
    // Sent dates.
    (Hit, "SEARCH SENTON 15-Mar-2021"),
    (Hit, "SEARCH SENTON 16-Mar-2021"),
    (Miss, "SEARCH SENTON 14-Mar-2021"),
    // A missing or unreadable Date counts as 1 January 1970 for SENT*.
    (Hit, "SEARCH SENTBEFORE 1-Jan-2000"),
    (Hit, "SEARCH SENTSINCE 1-Jan-2030"),
    (Hit, "SEARCH SENTBEFORE 1-Jan-2020"),
    (Hit, "SEARCH SENTSINCE 1-Jan-2024"),
    (Hit, "SEARCH SENTSINCE 14-Mar-2021 SENTBEFORE 17-Mar-2021"),
    (Hit, "SEARCH SENTON 13-Aug-2021"),
    (Hit, "SEARCH SENTON 1-Jan-1970"),
    (Any, "SEARCH SENTON 4-May-2021"),
    (Hit, "SEARCH SENTON 10-Feb-2021"),
    (Hit, "SEARCH NOT SENTBEFORE 1-Jan-2019"),
    (Hit, "SEARCH SENTON 2-Nov-2021"),
    // Sizes.
    (Hit, "SEARCH LARGER 100000"),
    (Hit, "SEARCH SMALLER 1000"),
    (Hit, "SEARCH LARGER 5000 SMALLER 10000"),
    (Miss, "SEARCH SMALLER 1"),
    (Miss, "SEARCH LARGER 10000000"),
    (Hit, "UID SEARCH LARGER 20000 SEEN"),
    (Hit, "SEARCH NOT LARGER 700"),
    // Subject.
    (Hit, "SEARCH SUBJECT zebraquartz"),
    (Hit, "SEARCH SUBJECT ZEBRAQUARTZ"),
    (Hit, "SEARCH SUBJECT ZebraQuartz"),
    (Miss, "SEARCH BODY zebraquartz"),
    (Hit, "SEARCH TEXT zebraquartz"),
    (Miss, "SEARCH FROM zebraquartz"),
    (Hit, "SEARCH SUBJECT \"zebraquartz launch\""),
    (Miss, "SEARCH SUBJECT \"launch zebraquartz\""),
    (Hit, "SEARCH SUBJECT quarterly"),
    (Hit, "SEARCH SUBJECT \"Re: Quarterly\""),
    (Hit, "SEARCH SUBJECT \"RE: quarterly\""),
    (Hit, "SEARCH SUBJECT \"[list]\""),
    (Hit, "SEARCH SUBJECT Fwd"),
    (Hit, "SEARCH SUBJECT \"\""),
    (Hit, "SEARCH SUBJECT re"),
    (Hit, "SEARCH SUBJECT x"),
    (Hit, "SEARCH SUBJECT marmosetcloud"),
    (Hit, "SEARCH SUBJECT \"alpha marmosetcloud\""),
    (Hit, "SEARCH SUBJECT \"(fwd)\""),
    (Hit, "SEARCH SUBJECT \"second subject\""),
    (Hit, "SEARCH SUBJECT \"first subject\""),
    (Hit, "SEARCH SUBJECT unterminated"),
    (Hit, "SEARCH SUBJECT \"=?UTF-8?Q?unterminated\""),
    // Dovecot compresses white space in header values (a tab is a space)
    // before it compares, but not in the term; TEXT and BODY keep it.
    (Miss, "SEARCH SUBJECT \"status  report\""),
    (Hit, "SEARCH SUBJECT \"status report\""),
    (Hit, "SEARCH TEXT \"status  report\""),
    (Hit, "SEARCH SUBJECT \"tabbed subject line\""),
    (Miss, "SEARCH SUBJECT \"tabbed\tsubject\""),
    (Hit, "UID SEARCH SUBJECT migration"),
    (Hit, "SEARCH SUBJECT \"lunch on friday\""),
    (Hit, "SEARCH SUBJECT kickoff"),
    (Hit, "SEARCH SUBJECT \"weekly report\""),
    (Hit, "SEARCH SUBJECT \"date test\""),
    (Hit, "SEARCH SUBJECT aw"),
    // Body and text.
    (Hit, "SEARCH BODY quokkamint"),
    (Miss, "SEARCH SUBJECT quokkamint"),
    (Hit, "SEARCH TEXT quokkamint"),
    (Hit, "SEARCH BODY QuokkaMint"),
    (Hit, "SEARCH BODY \"quokkamint figures\""),
    (Hit, "SEARCH BODY basiliskfern"),
    (Hit, "SEARCH TEXT basiliskfern"),
    // Dovecot does not look into attachments that are not text.
    (Miss, "SEARCH BODY narwhalsprocket"),
    (Miss, "SEARCH TEXT narwhalsprocket"),
    (Hit, "SEARCH BODY pelicanwisp"),
    (Hit, "SEARCH BODY pelic"),
    (Hit, "SEARCH BODY anwisp"),
    (Miss, "SEARCH BODY \"pelic=\""),
    (Hit, "SEARCH TEXT PelicanWisp"),
    (Hit, "SEARCH BODY tapirlantern"),
    // HTML is searched as it is; an attached message's header is body.
    (Hit, "SEARCH BODY \"<b>tapirlantern\""),
    (Hit, "SEARCH BODY gannetplume"),
    (Miss, "SEARCH SUBJECT gannetplume"),
    (Hit, "SEARCH TEXT gannetplume"),
    (Hit, "SEARCH BODY \"rolling thunder\""),
    (Hit, "SEARCH BODY \"the\""),
    (Hit, "SEARCH BODY a"),
    (Hit, "SEARCH TEXT of"),
    (Hit, "SEARCH TEXT e"),
    (Any, "SEARCH BODY xq"),
    (Hit, "SEARCH BODY vireofable"),
    (Hit, "SEARCH BODY report"),
    (Hit, "SEARCH TEXT \"budget review\""),
    (Hit, "SEARCH BODY attached"),
    // BODY is the decoded text of the parts, without MIME headers.
    (Miss, "SEARCH BODY notes.txt"),
    (Hit, "SEARCH TEXT \"Content-Type\""),
    (Miss, "SEARCH BODY \"Content-Type\""),
    (Hit, "SEARCH TEXT multipart"),
    (Miss, "SEARCH BODY boundary"),
    (Hit, "SEARCH BODY \"someone wrote\""),
    (Hit, "SEARCH TEXT \"someone wrote\""),
    (Hit, "SEARCH BODY \"short line\""),
    (Hit, "SEARCH BODY 42"),
    (Hit, "SEARCH TEXT 2021"),
    (Miss, "SEARCH BODY nosuchwordanywhere"),
    (Hit, "SEARCH TEXT \"\""),
    // Addresses.
    (Hit, "SEARCH FROM ocelotbrine"),
    (Hit, "SEARCH TO ocelotbrine"),
    (Hit, "SEARCH CC ocelotbrine"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{Ocelotbrine Müller}}"),
    (Hit, "SEARCH FROM om@example.net"),
    (Hit, "SEARCH FROM example.net"),
    (Hit, "SEARCH FROM \"@example.org\""),
    (Hit, "SEARCH TO lynxpetal"),
    (Miss, "SEARCH CC lynxpetal"),
    (Hit, "SEARCH CC heronvault"),
    (Miss, "SEARCH TO heronvault"),
    (Hit, "SEARCH BCC ibexcanvas"),
    (Hit, "SEARCH TEXT ibexcanvas"),
    (Miss, "SEARCH TO ibexcanvas"),
    (Hit, "SEARCH FROM alice"),
    (Hit, "SEARCH FROM \"Jane\""),
    (Hit, "SEARCH TO \"doe, jane\""),
    // Group names count.
    (Hit, "SEARCH TO undisclosed-recipients"),
    (Hit, "SEARCH TO \"Project Team\""),
    (Hit, "SEARCH CC \"\""),
    (Hit, "SEARCH BCC \"\""),
    (Hit, "SEARCH FROM \"mail delivery system\""),
    (Hit, "SEARCH FROM \"the tank\""),
    (Hit, "SEARCH FROM \"grace hopper\""),
    (Hit, "SEARCH TO dave"),
    (Hit, "SEARCH TO team@example.org"),
    (Hit, "SEARCH FROM \"<alice@example.org>\""),
    (Hit, "SEARCH HEADER Reply-To lemurquill"),
    (Miss, "SEARCH FROM lemurquill"),
    // Non-ASCII.
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{Grüße}}"),
    (Miss, "SEARCH CHARSET UTF-8 BODY {{Grüße}}"),
    (Hit, "SEARCH CHARSET UTF-8 TEXT {{Grüße}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{+grüße}}"),
    // Case folding is i;unicode-casemap: ß is not SS, nor ẞ.
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{GRÜSSE}}"),
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{GRÜẞE}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{GRÜßE}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{Straßenbahn}}"),
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{Straßenbahn}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{+straßenbahn}}"),
    (Miss, "SEARCH CHARSET UTF-8 BODY {{STRASSENBAHN}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{Привет}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{привет}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{Здравствуйте}}"),
    (Hit, "SEARCH CHARSET UTF-8 TEXT {{+ЗДРАВСТВУЙТЕ}}"),
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{Здравствуйте}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{日本語}}"),
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{日本語}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{東京}}"),
    (Miss, "SEARCH CHARSET UTF-8 BODY {{東京}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{Müller}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{Иванов}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{山田}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{+Ümit}}"),
    (Hit, "SEARCH CHARSET UTF-8 TO {{иванов}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{42 €}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{„pünktlich“}}"),
    // Raw ISO-8859-1 in a header is not taken for text.
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{Café crème}}"),
    (Miss, "SEARCH CHARSET UTF-8 FROM {{Café}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{Großartig}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{ü}}"),
    (Hit, "SEARCH CHARSET UTF-8 TEXT {{日}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{資料}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{会議資料}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{отчёт}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{déjà}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{Zoë}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{“Smart”}}"),
    (Hit, "SEARCH CHARSET ISO-8859-1 SUBJECT {{latin1:Grüße}}"),
    (Hit, "SEARCH CHARSET KOI8-R BODY {{koi8:Здравствуйте}}"),
    (Hit, "SEARCH CHARSET Shift_JIS BODY {{sjis:日本語}}"),
    (Any, "SEARCH CHARSET X-NOPE SUBJECT foo"),
    (Hit, "SEARCH CHARSET US-ASCII SUBJECT zebraquartz"),
    // UTF-8 without CHARSET, and 8-bit in a quoted string, are taken.
    (Hit, "SEARCH SUBJECT {{Grüße}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT \"Grüße\""),
    (Hit, "SEARCH CHARSET UTF-8 OR SUBJECT {{Привет}} BODY {{+日本語}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{Привет из}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{café meeting}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{fährt}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{pünktlich}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{коллеги}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{確認}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{田中}}"),
    (Hit, "SEARCH CHARSET UTF-8 FROM {{+françois}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{Übersicht}}"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{übersicht}}"),
    // Header fields.
    (Hit, "SEARCH HEADER X-Project wombatglyph"),
    (Hit, "SEARCH HEADER x-project WOMBATGLYPH"),
    (Miss, "SEARCH BODY wombatglyph"),
    (Hit, "SEARCH TEXT wombatglyph"),
    (Hit, "SEARCH HEADER X-Project \"\""),
    (Miss, "SEARCH HEADER X-Nonexistent \"\""),
    (Hit, "SEARCH HEADER Message-ID yakspindle"),
    (Hit, "SEARCH TEXT yakspindle"),
    (Hit, "SEARCH HEADER In-Reply-To budget"),
    (Hit, "SEARCH HEADER References migration.1"),
    (Hit, "SEARCH HEADER Content-Type multipart/alternative"),
    (Hit, "SEARCH HEADER Content-Type iso-2022-jp"),
    (Hit, "SEARCH HEADER Content-Transfer-Encoding base64"),
    (Hit, "SEARCH HEADER Subject zebraquartz"),
    // HEADER decodes encoded words.
    (Hit, "SEARCH HEADER From ocelotbrine"),
    (Hit, "SEARCH CHARSET UTF-8 HEADER Subject {{東京}}"),
    (Hit, "SEARCH HEADER Date 2021"),
    (Hit, "SEARCH HEADER Date -0800"),
    (Hit, "SEARCH HEADER Date yesterday"),
    (Hit, "SEARCH HEADER DATE \"\""),
    (Hit, "SEARCH NOT HEADER Date \"\""),
    (Hit, "SEARCH NOT HEADER Message-ID \"\""),
    (Miss, "SEARCH HEADER Received \"\""),
    (Hit, "SEARCH HEADER MIME-Version 1.0"),
    (Hit, "SEARCH HEADER Bcc ibexcanvas"),
    (Hit, "SEARCH HEADER X-Project phase"),
    (Hit, "SEARCH HEADER Subject \"Re: \""),
    // Combinations.
    (Hit, "SEARCH OR SUBJECT zebraquartz BODY quokkamint"),
    (Hit, "SEARCH NOT SUBJECT zebraquartz"),
    (Hit, "SEARCH (SUBJECT quarterly SEEN)"),
    (Hit, "SEARCH OR (SUBJECT quarterly FLAGGED) (BODY quokkamint UNSEEN)"),
    (Hit, "SEARCH NOT (OR SEEN FLAGGED)"),
    (Hit, "SEARCH OR OR SUBJECT zebraquartz BODY pelicanwisp FROM ocelotbrine"),
    (Hit, "SEARCH SUBJECT quarterly NOT FROM alice"),
    (Hit, "SEARCH UNSEEN BODY the LARGER 2000"),
    (Hit, "SEARCH 1:100 TEXT the"),
    (Hit, "UID SEARCH UID 50:150 SUBJECT re"),
    (Any, "SEARCH KEYWORD $label1 SUBJECT server"),
    (Hit, "SEARCH SINCE 1-Jan-2021 BODY report"),
    (Hit, "SEARCH SENTSINCE 1-Jan-2021 NOT SENTSINCE 1-Jan-2022 SUBJECT re"),
    (Hit, "SEARCH NOT NOT SUBJECT zebraquartz"),
    (Hit, "SEARCH ((SUBJECT zebraquartz))"),
    (Hit, "SEARCH OR NOT SEEN NOT BODY the"),
    (Any, "SEARCH DELETED TEXT a"),
    (Hit, "SEARCH OR (FROM jane SUBJECT budget) (TO team CC \"\")"),
    (Hit, "UID SEARCH NOT (SUBJECT re OR BODY the FLAGGED)"),
    (Hit, "SEARCH OR HEADER X-Project glyph OR BCC ibexcanvas CC heronvault"),
    (Hit, "SEARCH CHARSET UTF-8 NOT OR SUBJECT {{Grüße}} BODY {{Straßenbahn}}"),
    (Hit, "SEARCH ANSWERED SENTBEFORE 1-Jan-2022 TEXT the"),
    (Hit, "SEARCH OR 1:5 SUBJECT zebraquartz"),
    // ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
    (Hit, "SEARCH RETURN (MIN) SUBJECT quarterly"),
    (Hit, "SEARCH RETURN (MAX COUNT) BODY the"),
    (Hit, "SEARCH RETURN (ALL) FLAGGED"),
    (Hit, "SEARCH RETURN () SUBJECT re"),
    (Hit, "UID SEARCH RETURN (MIN MAX COUNT ALL) TEXT zebraquartz"),
    (Miss, "SEARCH RETURN (COUNT) BODY nosuchwordanywhere"),
    (Miss, "SEARCH RETURN (MIN MAX) SUBJECT nosuchwordanywhere"),
    (Hit, "SEARCH RETURN (ALL) CHARSET UTF-8 SUBJECT {{+Привет}}"),
    (Hit, "UID SEARCH RETURN (COUNT) CHARSET UTF-8 BODY {{日本語}}"),
    (Any, "SEARCH RETURN (SAVE) SUBJECT quarterly"),
    (Hit, "SEARCH $"),
    (Hit, "UID FETCH $ (UID)"),
    (Any, "SEARCH $ SEEN"),
    (Hit, "SEARCH NOT $"),
    (Hit, "SEARCH RETURN (SAVE MIN) BODY quokkamint"),
    (Hit, "UID SEARCH $"),
    (Hit, "SEARCH OR $ SUBJECT zebraquartz"),
    (Hit, "UID SEARCH RETURN (SAVE ALL) CHARSET UTF-8 BODY {{Straßenbahn}}"),
    (Hit, "FETCH $ (UID)"),
    (Any, "SEARCH RETURN (SAVE) FLAGGED"),
    (Hit, "SEARCH $ FROM example"),
    // Syntax the server refuses: the same refusal.
    (Any, "SEARCH FOO"),
    (Any, "SEARCH SUBJECT"),
    (Any, "SEARCH CHARSET UTF-8"),
    (Any, "SEARCH OR SUBJECT a"),
];

/// SORT, UID SORT and ESORT (RFC 5256, 5957, 5267).
const SORTS: &[(Expect, &str)] = &[
    (Hit, "SORT (ARRIVAL) UTF-8 ALL"),
    (Hit, "SORT (REVERSE ARRIVAL) UTF-8 ALL"),
    (Hit, "SORT (DATE) UTF-8 ALL"),
    (Hit, "SORT (REVERSE DATE) UTF-8 ALL"),
    (Hit, "SORT (SIZE) UTF-8 ALL"),
    (Hit, "SORT (REVERSE SIZE) US-ASCII ALL"),
    (Hit, "SORT (SUBJECT) UTF-8 ALL"),
    (Hit, "SORT (REVERSE SUBJECT) UTF-8 ALL"),
    (Hit, "SORT (SUBJECT DATE) UTF-8 ALL"),
    (Hit, "SORT (FROM) UTF-8 ALL"),
    (Hit, "SORT (REVERSE FROM) UTF-8 ALL"),
    (Hit, "SORT (TO) UTF-8 ALL"),
    (Hit, "SORT (CC) UTF-8 ALL"),
    (Hit, "SORT (CC SUBJECT) UTF-8 ALL"),
    (Hit, "SORT (DISPLAYFROM) UTF-8 ALL"),
    (Hit, "SORT (DISPLAYTO) UTF-8 ALL"),
    (Hit, "SORT (REVERSE DISPLAYFROM SIZE) UTF-8 ALL"),
    (Hit, "SORT (TO CC FROM) UTF-8 ALL"),
    (Hit, "SORT (REVERSE SUBJECT REVERSE DATE) UTF-8 ALL"),
    (Hit, "UID SORT (DATE) UTF-8 ALL"),
    (Hit, "UID SORT (SUBJECT) UTF-8 SUBJECT quarterly"),
    (Hit, "UID SORT (DISPLAYTO ARRIVAL) UTF-8 ALL"),
    (Hit, "SORT (DATE) UTF-8 SUBJECT quarterly"),
    (Hit, "SORT (SIZE) UTF-8 LARGER 10000"),
    (Hit, "SORT (FROM) UTF-8 BODY the"),
    (Hit, "SORT (ARRIVAL) UTF-8 SEEN"),
    (Hit, "SORT (DATE) UTF-8 SENTSINCE 1-Jan-2022"),
    (Hit, "SORT (SUBJECT) UTF-8 SUBJECT {{Привет}}"),
    (Hit, "SORT (DISPLAYFROM) UTF-8 FROM {{+Müller}}"),
    (Hit, "SORT (DISPLAYTO) UTF-8 OR TO lynxpetal CC heronvault"),
    (Hit, "SORT (DATE) UTF-8 1:50"),
    (Hit, "UID SORT (SIZE) UTF-8 UID 100:200"),
    (Hit, "SORT (SUBJECT) US-ASCII SUBJECT re"),
    (Hit, "SORT (DATE) UTF-8 NOT HEADER Date \"\""),
    (Hit, "SORT (DATE) UTF-8 OR SENTON 15-Mar-2021 SENTON 16-Mar-2021"),
    (Hit, "SORT (REVERSE DATE ARRIVAL) UTF-8 HEADER Subject \"date test\""),
    (Hit, "SORT (ARRIVAL) UTF-8 ON 1-Jun-2022"),
    (Hit, "SORT (SIZE) UTF-8 SMALLER 1500"),
    (Hit, "SORT (DISPLAYFROM) UTF-8 FROM example"),
    (Hit, "SORT (CC) UTF-8 NOT CC \"\""),
    (Hit, "SORT (SUBJECT ARRIVAL) UTF-8 SUBJECT status"),
    (Hit, "SORT (SUBJECT) UTF-8 OR SUBJECT lunch SUBJECT weekly"),
    (Hit, "SORT RETURN (MIN) (DATE) UTF-8 ALL"),
    (Hit, "SORT RETURN (MAX COUNT) (SIZE) UTF-8 ALL"),
    (Hit, "SORT RETURN (ALL) (SUBJECT) UTF-8 FLAGGED"),
    (Hit, "UID SORT RETURN (ALL COUNT) (REVERSE DATE) UTF-8 BODY report"),
    (Hit, "SORT RETURN () (FROM) UTF-8 ALL"),
    (Miss, "SORT (DATE) UTF-8 SUBJECT nosuchwordanywhere"),
    (Any, "SORT (NOSUCHKEY) UTF-8 ALL"),
    (Any, "SORT (DATE) X-NOPE ALL"),
];

/// THREAD and UID THREAD (RFC 5256, and REFS, RFC 9051's sibling draft).
const THREADS: &[(Expect, &str)] = &[
    (Hit, "THREAD REFERENCES UTF-8 ALL"),
    (Hit, "THREAD ORDEREDSUBJECT UTF-8 ALL"),
    (Hit, "THREAD REFS UTF-8 ALL"),
    (Hit, "UID THREAD REFERENCES UTF-8 ALL"),
    (Hit, "UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
    (Hit, "UID THREAD REFS UTF-8 ALL"),
    (Hit, "THREAD REFERENCES UTF-8 SUBJECT quarterly"),
    (Hit, "THREAD REFERENCES UTF-8 SEEN"),
    (Hit, "THREAD ORDEREDSUBJECT UTF-8 SUBJECT re"),
    (Hit, "THREAD REFERENCES UTF-8 SUBJECT migration"),
    (Hit, "THREAD REFS UTF-8 SINCE 1-Jan-2022"),
    (Hit, "THREAD REFERENCES US-ASCII BODY the"),
    (Hit, "THREAD ORDEREDSUBJECT UTF-8 FROM example"),
    (Hit, "THREAD REFERENCES UTF-8 SUBJECT {{Привет}}"),
    (Hit, "THREAD REFERENCES UTF-8 1:100"),
    (Hit, "UID THREAD REFERENCES UTF-8 UID 50:*"),
    (Hit, "THREAD REFERENCES UTF-8 NOT DELETED"),
    (Hit, "THREAD REFS UTF-8 OR SUBJECT lunch SUBJECT kickoff"),
    (Hit, "THREAD ORDEREDSUBJECT UTF-8 OR SUBJECT weekly SUBJECT status"),
    (Hit, "THREAD REFERENCES UTF-8 HEADER Subject \"duplicate id\""),
    (Hit, "THREAD REFS UTF-8 SUBJECT budget"),
    (Hit, "UID THREAD ORDEREDSUBJECT UTF-8 SENTBEFORE 1-Jan-2022"),
    (Miss, "THREAD REFERENCES UTF-8 SUBJECT nosuchwordanywhere"),
    (Any, "THREAD NOSUCHALGORITHM UTF-8 ALL"),
];

/// About the SMTP-delivered subset: only criteria whose answer does not
/// depend on what delivery added (see the module doc).
const SMTP_SEARCHES: &[(Expect, &str)] = &[
    (Hit, "SEARCH ALL"),
    (Hit, "UID SEARCH ALL"),
    (Hit, "SEARCH UNSEEN"),
    (Miss, "SEARCH SEEN"),
    (Miss, "SEARCH FLAGGED"),
    (Hit, "SEARCH 1:5"),
    (Hit, "UID SEARCH UID 10:*"),
    (Hit, "SEARCH *"),
    (Hit, "SEARCH SUBJECT zebraquartz"),
    (Hit, "SEARCH TEXT zebraquartz"),
    (Miss, "SEARCH BODY zebraquartz"),
    (Hit, "SEARCH BODY quokkamint"),
    (Hit, "SEARCH TEXT quokkamint"),
    (Miss, "SEARCH SUBJECT quokkamint"),
    (Hit, "SEARCH BODY basiliskfern"),
    (Hit, "SEARCH BODY pelicanwisp"),
    (Hit, "SEARCH FROM ocelotbrine"),
    (Hit, "SEARCH TEXT ocelotbrine"),
    (Hit, "SEARCH TO lynxpetal"),
    (Hit, "SEARCH CC heronvault"),
    (Miss, "SEARCH TO heronvault"),
    (Hit, "SEARCH FROM example"),
    (Any, "SEARCH TO \"Project Team\""),
    // Postfix drops the Bcc field; Sealpost's copy has none either.
    (Miss, "SEARCH HEADER Bcc \"\""),
    (Miss, "SEARCH BCC ibexcanvas"),
    (Hit, "SEARCH SUBJECT re"),
    (Hit, "SEARCH BODY the"),
    (Hit, "SEARCH CHARSET UTF-8 SUBJECT {{Grüße}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{Straßenbahn}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{+Здравствуйте}}"),
    (Hit, "SEARCH CHARSET UTF-8 BODY {{日本語}}"),
    (Miss, "SEARCH CHARSET UTF-8 SUBJECT {{日本語}}"),
    (Hit, "SEARCH HEADER Message-ID markers"),
    (Hit, "SEARCH HEADER X-Search-Run \"\""),
    (Hit, "SEARCH HEADER Content-Type multipart"),
    (Hit, "SEARCH SENTBEFORE 1-Jan-2022"),
    (Hit, "SEARCH SENTSINCE 1-Jan-2022"),
    (Hit, "SEARCH OR SUBJECT zebraquartz BODY quokkamint"),
    (Hit, "SEARCH NOT BODY the"),
    (Hit, "SEARCH RETURN (MIN MAX COUNT) SUBJECT re"),
    (Hit, "UID SEARCH RETURN (ALL) BODY the"),
];

/// SORT and THREAD over the SMTP-delivered subset.
const SMTP_SORTS: &[(Expect, &str)] = &[
    (Hit, "SORT (SUBJECT) UTF-8 ALL"),
    (Hit, "SORT (FROM) UTF-8 ALL"),
    (Hit, "SORT (DATE) UTF-8 ALL"),
    (Hit, "THREAD ORDEREDSUBJECT UTF-8 ALL"),
];

/// The markers that must not show in what the server stores for E: the
/// ones in the subject or the body (From, To, Cc, Message-ID and custom
/// fields stay outside the encryption, see `outer_fields`).
const SECRET_MARKERS: [&str; 9] = [
    "zebraquartz",
    "quokkamint",
    "basiliskfern",
    "pelicanwisp",
    "tapirlantern",
    "gannetplume",
    "marmosetcloud",
    "vireofable",
    "rolling thunder",
];

// ---------------------------------------------------------------------------
// A raw IMAP client with literals both ways
// ---------------------------------------------------------------------------

trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

/// A logged-in IMAP session that sends commands with literals (waiting for
/// the `+` of a synchronizing one) and keeps answers as sent.
struct Client {
    reader: BufReader<Box<dyn Stream>>,
}

/// The answer to one command.
#[derive(Clone, PartialEq, Eq)]
struct Reply {
    /// Untagged responses, literals inlined (continuation requests left
    /// out).
    untagged: Vec<Vec<u8>>,
    /// The tagged response, without the tag.
    status: Vec<u8>,
}

impl Reply {
    fn ok(&self) -> bool {
        self.status.starts_with(b"OK")
    }

    /// `OK` / `NO` / `BAD` and the response code, if any: what is compared.
    fn status_key(&self) -> String {
        let text = String::from_utf8_lossy(&self.status);
        let mut words = text.trim_end().splitn(2, ' ');
        let word = words.next().unwrap_or("").to_string();
        match words.next() {
            Some(rest) if rest.starts_with('[') => format!("{word} {}", rest.split_once(']').map_or(rest, |(c, _)| c)) + "]",
            _ => word,
        }
    }

    fn show(&self) -> String {
        let mut lines: Vec<String> = self.untagged.iter().map(|u| cut(&show(u))).collect();
        lines.push(show(&self.status));
        lines.join(" | ")
    }
}

/// One piece of a command.
enum Piece {
    Text(Vec<u8>),
    Literal { bytes: Vec<u8>, sync: bool },
}

/// A command written in the small language of [`SEARCHES`].
fn pieces(command: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(rest.as_bytes()[..open].to_vec()));
        let close = open + rest[open..].find("}}").expect("}} closes {{");
        let mut inner = &rest[open + 2..close];
        let sync = match inner.strip_prefix('+') {
            Some(i) => {
                inner = i;
                false
            }
            None => true,
        };
        let bytes = if let Some(t) = inner.strip_prefix("latin1:") {
            encode(Cs::Latin1, t)
        } else if let Some(t) = inner.strip_prefix("koi8:") {
            encode(Cs::Koi8r, t)
        } else if let Some(t) = inner.strip_prefix("sjis:") {
            encode(Cs::ShiftJis, t)
        } else {
            inner.as_bytes().to_vec()
        };
        out.push(Piece::Literal { bytes, sync });
        rest = &rest[close + 2..];
    }
    out.push(Piece::Text(rest.as_bytes().to_vec()));
    out
}

impl Client {
    /// `user` logged in at Dovecot, without TLS.
    fn direct(user: &str) -> Client {
        let s = stack();
        let tcp = TcpStream::connect(s.addr(s.imap_port)).expect("Dovecot listens");
        tcp.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
        let mut client = Client {
            reader: BufReader::new(Box::new(tcp)),
        };
        let greeting = client.read_response();
        assert!(greeting.starts_with(b"* OK"), "greeting: {}", show(&greeting));
        client.login(user);
        client
    }

    /// `user` logged in at Sealpost's IMAP listener after STARTTLS, its
    /// local certificate pinned.
    fn through(proxy: &Proxy, certificate: &Path, user: &str) -> Client {
        let mut tcp = TcpStream::connect(proxy.imap).expect("Sealpost listens");
        tcp.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
        let mut plain = BufReader::new(tcp.try_clone().unwrap());
        let mut line = Vec::new();
        plain.read_until(b'\n', &mut line).unwrap();
        assert!(line.starts_with(b"* OK"), "greeting: {}", show(&line));
        tcp.write_all(b"t STARTTLS\r\n").unwrap();
        loop {
            line.clear();
            plain.read_until(b'\n', &mut line).unwrap();
            if line.starts_with(b"t ") {
                assert!(line.starts_with(b"t OK"), "STARTTLS: {}", show(&line));
                break;
            }
        }
        let mut client = Client {
            reader: BufReader::new(Box::new(pinned_tls(certificate, tcp))),
        };
        client.login(user);
        client
    }

    fn login(&mut self, user: &str) {
        let reply = self.run("l", &format!("LOGIN {user} {}", password(user)));
        assert!(reply.ok(), "LOGIN {user}: {}", reply.show());
    }

    /// One response with the literals it announces.
    fn read_response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = self.reader.read_until(b'\n', &mut out).expect("the server answers");
            assert!(n > 0, "the server closed the connection after {}", show(&out));
            let Some(size) = literal_announcement(&out[start..]) else {
                return out;
            };
            let mut literal = vec![0u8; size];
            self.reader.read_exact(&mut literal).expect("the literal");
            out.extend_from_slice(&literal);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("the server takes the command");
    }

    /// Sends `command` (in the language of [`SEARCHES`]) tagged `tag`.
    fn run(&mut self, tag: &str, command: &str) -> Reply {
        self.send(tag, &pieces(command))
    }

    fn send(&mut self, tag: &str, pieces: &[Piece]) -> Reply {
        let tagged = format!("{tag} ");
        let mut untagged = Vec::new();
        let mut buf = tagged.clone().into_bytes();
        for piece in pieces {
            match piece {
                Piece::Text(t) => buf.extend_from_slice(t),
                Piece::Literal { bytes, sync: true } => {
                    buf.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.write(&buf);
                    buf.clear();
                    loop {
                        let resp = self.read_response();
                        if resp.starts_with(b"+") {
                            break;
                        }
                        if let Some(status) = resp.strip_prefix(tagged.as_bytes()) {
                            // Refused before the literal.
                            return Reply {
                                untagged,
                                status: status.to_vec(),
                            };
                        }
                        untagged.push(resp);
                    }
                    buf.extend_from_slice(bytes);
                }
                Piece::Literal { bytes, sync: false } => {
                    buf.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                    buf.extend_from_slice(bytes);
                }
            }
        }
        buf.extend_from_slice(b"\r\n");
        self.write(&buf);
        loop {
            let resp = self.read_response();
            if let Some(status) = resp.strip_prefix(tagged.as_bytes()) {
                return Reply {
                    untagged,
                    status: status.to_vec(),
                };
            }
            if !resp.starts_with(b"+") {
                untagged.push(resp);
            }
        }
    }

    /// APPENDs `case` with its flags and internal date; its UID.
    fn append(&mut self, mailbox: &str, case: &Case) -> u32 {
        let head = format!("APPEND {mailbox} {} \"{}\" ", case.flag_list(), case.internal_date);
        let reply = self.send(
            "a",
            &[
                Piece::Text(head.into_bytes()),
                Piece::Literal {
                    bytes: case.bytes.clone(),
                    sync: true,
                },
            ],
        );
        assert!(reply.ok(), "APPEND {}: {}", case.name, reply.show());
        let text = String::from_utf8_lossy(&reply.status);
        text.split("[APPENDUID ")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("APPENDUID in {text}"))
    }

    /// Runs a command that must succeed.
    fn must(&mut self, command: &str) -> Reply {
        let reply = self.run("m", command);
        assert!(reply.ok(), "{command}: {}", reply.show());
        reply
    }
}

/// TLS over `stream` to a server whose certificate must be exactly the one
/// in `certificate` (the proxy's self-signed local one).
fn pinned_tls(certificate: &Path, stream: TcpStream) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let expected = CertificateDer::from_pem_file(certificate).expect("the proxy's local certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { expected, provider }))
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    rustls::StreamOwned::new(connection, stream)
}

#[derive(Debug)]
struct Pinned {
    expected: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the proxy's local certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// The mailboxes, shared by the tests of one run
// ---------------------------------------------------------------------------

/// P and E with the corpus in them, and the proxy in front of E.
struct Fixture {
    proxy: Proxy,
    /// Another proxy with the same keys in front of the same mailboxes,
    /// at a listener of the server that announces no ESEARCH.
    without_esearch: Proxy,
    certificate: PathBuf,
    plain: Option<Mailbox>,
    sealed: Option<Mailbox>,
    cases: Vec<Case>,
    _user: User,
}

impl Fixture {
    fn new() -> Fixture {
        let started = Instant::now();
        let seed = env("SEARCH_SEED").and_then(|s| s.parse().ok()).unwrap_or(SEED);
        let cases = corpus_with_seed(seed);
        let user = User::new(USER);
        let proxy = Proxy::start(&user, None, "");
        let stack = stack();
        let plain_upstream = format!("imap://{}:{}", stack.imap_noesearch_host, stack.imap_port);
        let without_esearch = Proxy::start_with(
            &user,
            Setup {
                imap_upstream: Some(&plain_upstream),
                ..Setup::default()
            },
        );
        let certificate = user.dir.path().join("tls/local-cert.pem");
        let run = token("search").replace("search-", "");
        let plain = Mailbox {
            user: USER,
            name: format!("search-plain-{run}"),
            at: Imap::connect,
        };
        let sealed = Mailbox {
            user: USER,
            name: format!("search-sealed-{run}"),
            at: Imap::connect,
        };
        let mut direct = Client::direct(USER);
        for mailbox in [&plain, &sealed] {
            direct.must(&format!("CREATE {}", mailbox.name));
        }
        // Both uploads at once: UIDs follow the corpus order in each.
        std::thread::scope(|scope| {
            let through = scope.spawn(|| {
                let mut through = Client::through(&proxy, &certificate, USER);
                for (i, case) in cases.iter().enumerate() {
                    let uid = through.append(&sealed.name, case);
                    assert_eq!(uid as usize, i + 1, "{} through Sealpost", case.name);
                }
                through.run("z", "LOGOUT");
            });
            for (i, case) in cases.iter().enumerate() {
                let uid = direct.append(&plain.name, case);
                assert_eq!(uid as usize, i + 1, "{}", case.name);
            }
            through.join().unwrap();
        });
        // A keyword that no message has, defined in both mailboxes now: a
        // search for a keyword the mailbox does not know makes Dovecot
        // define it and announce new FLAGS, which sessions of the other
        // tests would see at some command or other.
        for mailbox in [&plain, &sealed] {
            direct.must(&format!("SELECT {}", mailbox.name));
            direct.must("STORE 1 +FLAGS.SILENT ($spare)");
            direct.must("STORE 1 -FLAGS.SILENT ($spare)");
        }
        // What the server stores for E is ciphertext.
        direct.must(&format!("EXAMINE {}", sealed.name));
        let stored = direct.must("FETCH 1:* (BODY.PEEK[])");
        assert_eq!(stored.untagged.iter().filter(|r| contains(r, b" FETCH (")).count(), cases.len());
        for (i, message) in stored.untagged.iter().filter(|r| contains(r, b" FETCH (")).enumerate() {
            assert!(
                contains(message, b"-----BEGIN PGP MESSAGE-----"),
                "{} is not stored encrypted",
                cases[i].name
            );
            let lower = message.to_ascii_lowercase();
            for marker in SECRET_MARKERS {
                assert!(
                    !contains(&lower, marker.as_bytes()),
                    "{} shows {marker} to the server: {}",
                    cases[i].name,
                    cut(&show(message))
                );
            }
        }
        // And P what was uploaded.
        direct.must(&format!("EXAMINE {}", plain.name));
        let sizes = direct.must("FETCH 1:* (RFC822.SIZE)");
        for (i, case) in cases.iter().enumerate() {
            let want = format!("* {} FETCH (RFC822.SIZE {})", i + 1, case.bytes.len());
            assert!(
                sizes.untagged.iter().any(|r| r.starts_with(want.as_bytes())),
                "{}: {want} in {}",
                case.name,
                cut(&sizes.show())
            );
        }
        direct.run("z", "LOGOUT");
        eprintln!(
            "corpus of {} messages ({} KiB; seed {seed}) in {} and {}, uploaded in {:.1?}",
            cases.len(),
            cases.iter().map(|c| c.bytes.len()).sum::<usize>() / 1024,
            plain.name,
            sealed.name,
            started.elapsed()
        );
        Fixture {
            proxy,
            without_esearch,
            certificate,
            plain: Some(plain),
            sealed: Some(sealed),
            cases,
            _user: user,
        }
    }

    /// A direct session with P examined, and one through Sealpost with E.
    fn sessions(&self) -> (Client, Client) {
        self.sessions_via(&self.proxy)
    }

    /// The same, through `proxy`.
    fn sessions_via(&self, proxy: &Proxy) -> (Client, Client) {
        let mut direct = Client::direct(USER);
        direct.must(&format!("EXAMINE {}", self.plain.as_ref().unwrap().name));
        let mut through = Client::through(proxy, &self.certificate, USER);
        through.must(&format!("EXAMINE {}", self.sealed.as_ref().unwrap().name));
        (direct, through)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if env("SEARCH_KEEP").is_some() {
            for mailbox in [self.plain.take(), self.sealed.take()].into_iter().flatten() {
                eprintln!("kept {} of {}", mailbox.name, mailbox.user);
                std::mem::forget(mailbox);
            }
        }
    }
}

static SHARED: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());

/// The fixture, made by the first test that asks and dropped (mailboxes
/// deleted, proxy stopped) when the last one running lets it go.
fn fixture() -> Arc<Fixture> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fixture) = slot.upgrade() {
        return fixture;
    }
    let fixture = Arc::new(Fixture::new());
    *slot = Arc::downgrade(&fixture);
    fixture
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------

/// Criteria whose answer depends on the messages' content.
const CONTENT_KEYS: [&str; 16] = [
    "TEXT",
    "BODY",
    "SUBJECT",
    "FROM",
    "TO",
    "CC",
    "BCC",
    "HEADER",
    "LARGER",
    "SMALLER",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SORT",
    "THREAD",
    "$",
];

fn has_content_criteria(command: &str) -> bool {
    let outside_literals: String = pieces(command)
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            Piece::Literal { .. } => None,
        })
        .collect::<Vec<_>>()
        .join(" x ");
    outside_literals
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .any(|w| CONTENT_KEYS.contains(&w.to_ascii_uppercase().as_str()))
}

/// True when the answer names at least one message.
fn matched(reply: &Reply) -> bool {
    reply.untagged.iter().any(|line| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if let Some(rest) = text.strip_prefix("* SEARCH").or_else(|| text.strip_prefix("* SORT")) {
            return rest.split_whitespace().any(|w| w.chars().all(|c| c.is_ascii_digit()));
        }
        if let Some(rest) = text.strip_prefix("* THREAD") {
            return rest.contains('(');
        }
        if let Some(rest) = text.strip_prefix("* ESEARCH") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            return words
                .iter()
                .enumerate()
                .any(|(i, w)| matches!(*w, "ALL" | "MIN" | "MAX") || (*w == "COUNT" && words.get(i + 1).is_some_and(|n| *n != "0")));
        }
        text.contains(" FETCH (")
    })
}

/// The numbers of `* SEARCH` / `* SORT` answers, for a readable report.
fn numbers(reply: &Reply) -> BTreeSet<u64> {
    reply
        .untagged
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| l.starts_with("* SEARCH") || l.starts_with("* SORT"))
        .flat_map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()).collect::<Vec<u64>>())
        .collect()
}

/// `len` characters of `s` from character `from` on.
fn cut_at(s: &str, from: usize, len: usize) -> String {
    s.chars().skip(from).take(len).collect()
}

/// At most 40 numbers, and how many there are.
fn listed<'a>(numbers: impl Iterator<Item = &'a u64>) -> String {
    let all: Vec<String> = numbers.map(u64::to_string).collect();
    match all.len() {
        0 => "-".into(),
        n if n > 40 => format!("{} ... ({n})", all[..40].join(" ")),
        _ => all.join(" "),
    }
}

/// What one list of commands gave.
#[derive(Default)]
struct Report {
    commands: usize,
    content: usize,
    content_matched: usize,
    matched: usize,
    /// Dovecot's answers that are not what the command's [`Expect`] says.
    unsound: Vec<String>,
    mismatches: Vec<String>,
    mismatches_without_content: usize,
    /// Sealpost's `* OK Sealpost is indexing ...` lines.
    indexing_notes: usize,
    /// The mismatches with the whole answers.
    full: Vec<String>,
}

/// Runs `commands` on both sessions, tagged `prefix` and the index.
fn differential(label: &str, prefix: &str, commands: &[(Expect, &str)], direct: &mut Client, through: &mut Client) -> Report {
    let only = env("SEARCH_ONLY");
    let verbose = env("SEARCH_SHOW").is_some();
    let started = Instant::now();
    let mut report = Report::default();
    for (i, (expect, command)) in commands.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !command.contains(o.as_str())) {
            continue;
        }
        let tag = format!("{prefix}{i}");
        let want = direct.run(&tag, command);
        let mut have = through.run(&tag, command);
        // Sealpost says when it must index messages to answer (the first
        // content search of a mailbox): its own line, not Dovecot's.
        let before = have.untagged.len();
        have.untagged.retain(|line| !line.starts_with(b"* OK Sealpost is indexing "));
        report.indexing_notes += before - have.untagged.len();
        report.commands += 1;
        let hit = want.ok() && matched(&want);
        report.matched += usize::from(hit);
        let content = has_content_criteria(command);
        if content {
            report.content += 1;
            report.content_matched += usize::from(hit);
        }
        let sound = match expect {
            Hit => hit,
            Miss => want.ok() && !matched(&want),
            Any => true,
        };
        if !sound {
            report
                .unsound
                .push(format!("{command}\n    expected {expect:?}, Dovecot answered: {}", want.show()));
        }
        let same = want.untagged == have.untagged && want.status_key() == have.status_key();
        if verbose {
            eprintln!(
                "{label} {}: {command}\n    dovecot:  {}\n    sealpost: {}",
                if same { "same" } else { "DIFFERS" },
                want.show(),
                have.show()
            );
        }
        if !same {
            if !content {
                report.mismatches_without_content += 1;
            }
            let (w, h) = (numbers(&want), numbers(&have));
            let mut detail = String::new();
            if !(w.is_empty() && h.is_empty()) {
                detail = format!(
                    "\n    only Dovecot: {}\n    only Sealpost: {}",
                    listed(w.difference(&h)),
                    listed(h.difference(&w))
                );
            }
            let (ws, hs) = (want.show(), have.show());
            let at = ws.bytes().zip(hs.bytes()).take_while(|(a, b)| a == b).count();
            if at > 200 {
                let from = at - 40;
                detail.push_str(&format!(
                    "\n    first difference at character {at}: dovecot ...{}\n                                  sealpost ...{}",
                    cut_at(&ws, from, 120),
                    cut_at(&hs, from, 120)
                ));
            }
            report.full.push(format!("{command}\n    dovecot:  {ws}\n    sealpost: {hs}\n"));
            report
                .mismatches
                .push(format!("{command}\n    dovecot:  {}\n    sealpost: {}{detail}", cut(&ws), cut(&hs)));
        }
    }
    eprintln!(
        "{label}: {} commands in {:.1?}; {} matched a message on Dovecot's side, {} of {} with content criteria; {} differ from Dovecot ({} without content criteria)",
        report.commands,
        started.elapsed(),
        report.matched,
        report.content_matched,
        report.content,
        report.mismatches.len(),
        report.mismatches_without_content
    );
    report
}

impl Report {
    /// Fails unless Dovecot's answers are sound and varied and Sealpost's
    /// are the same.
    fn check(self, label: &str) {
        let mut problems = Vec::new();
        if !self.unsound.is_empty() {
            problems.push(format!(
                "{} answer(s) of Dovecot about the plaintext mailbox are not what the command expects (the corpus or the list is wrong):\n{}",
                self.unsound.len(),
                self.unsound.join("\n")
            ));
        }
        if env("SEARCH_ONLY").is_none() && self.content * 4 > self.content_matched * 5 {
            problems.push(format!(
                "only {} of {} commands with content criteria match a message on the plaintext side (80% must)",
                self.content_matched, self.content
            ));
        }
        if !self.mismatches.is_empty() {
            let file = std::env::temp_dir().join(format!("search-differential-{label}.txt"));
            let _ = std::fs::write(&file, self.full.join("\n"));
            problems.push(format!(
                "{} of {} answers through Sealpost differ from Dovecot's ({} without content criteria; whole answers in {}):\n{}",
                self.mismatches.len(),
                self.commands,
                self.mismatches_without_content,
                file.display(),
                self.mismatches.join("\n")
            ));
        }
        assert!(problems.is_empty(), "{label}:\n{}", problems.join("\n\n"));
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn corpus_is_deterministic_and_varied() {
    let cases = corpus_with_seed(SEED);
    let again = corpus_with_seed(SEED);
    assert!(cases.len() >= 320, "{} messages", cases.len());
    assert!(cases
        .iter()
        .zip(&again)
        .all(|(a, b)| a.bytes == b.bytes && a.flags == b.flags && a.internal_date == b.internal_date));
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "names are unique");
    assert!(cases.iter().filter(|c| c.smtp).count() >= 30);
    for flag in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$label1", "$label2"] {
        assert!(cases.iter().filter(|c| c.flags.contains(&flag)).count() >= 5, "{flag}");
    }
    if let Some(dir) = env("SEARCH_DUMP") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, case) in cases.iter().enumerate() {
            std::fs::write(Path::new(&dir).join(format!("{:03}-{}.eml", i + 1, case.name)), &case.bytes).unwrap();
        }
        eprintln!("{} messages written to {dir}", cases.len());
    }
    let years: BTreeSet<&str> = cases.iter().map(|c| &c.internal_date[7..11]).collect();
    assert!(years.len() >= 5, "{years:?}");
    assert_eq!(encode(Cs::Iso2022jp, "日本語"), b"\x1b$BF|K\\8l\x1b(B");
    assert_eq!(encode(Cs::ShiftJis, "日本語"), b"\x93\xfa\x96\x7b\x8c\xea");
    assert_eq!(encode(Cs::Koi8r, "Привет"), b"\xf0\xd2\xc9\xd7\xc5\xd4");
    assert_eq!(encode(Cs::Win1252, "„€“"), b"\x84\x80\x93");
    assert!(SEARCHES.len() >= 160 && SORTS.len() >= 30 && THREADS.len() >= 15);
    // Every marker is somewhere (raw, encoded or not).
    for (marker, _) in MARKERS {
        let raw = cases.iter().any(|c| contains(&c.bytes.to_ascii_lowercase(), marker.as_bytes()));
        assert!(
            raw || ["basiliskfern", "narwhalsprocket", "pelicanwisp", "rolling thunder"].contains(&marker),
            "{marker}"
        );
    }
}

#[test]
fn search_matches_dovecot() {
    let fixture = fixture();
    let (mut direct, mut through) = fixture.sessions();
    let report = differential("SEARCH", "s", SEARCHES, &mut direct, &mut through);
    // At most the first content search indexes (the background indexer
    // may have been quicker).
    assert!(
        report.indexing_notes <= 1,
        "expected at most one '* OK Sealpost is indexing' line, saw {}",
        report.indexing_notes
    );
    report.check("SEARCH");
}

/// Through a server that announces no ESEARCH, the proxy asks for UID
/// sets with plain `UID SEARCH`, one at a time: the same answers.
#[test]
fn search_without_esearch_at_the_server_matches_dovecot() {
    let fixture = fixture();
    let (mut direct, mut through) = fixture.sessions_via(&fixture.without_esearch);
    let capabilities = through.must("CAPABILITY");
    assert!(!contains(&capabilities.untagged.concat(), b"ESEARCH"), "{}", capabilities.show());
    differential("SEARCH", "n", SEARCHES, &mut direct, &mut through).check("SEARCH without ESEARCH");
    differential("SORT", "m", SORTS, &mut direct, &mut through).check("SORT without ESEARCH");
}

/// `imap.search = "hybrid"`, over the plaintext mailbox: Sealpost
/// indexes only the messages' headers and asks Dovecot for BODY and
/// TEXT; the answers are still Dovecot's own.
#[test]
fn hybrid_search_over_plaintext_matches_dovecot() {
    let fixture = fixture();
    let user = User::new(USER);
    let proxy = Proxy::start_with(
        &user,
        Setup {
            extra: "[imap]\nsearch = \"hybrid\"\nbackground_indexing = false\n",
            ..Setup::default()
        },
    );
    let plain = &fixture.plain.as_ref().unwrap().name;
    let mut direct = Client::direct(USER);
    direct.must(&format!("EXAMINE {plain}"));
    let mut through = Client::through(&proxy, &user.dir.path().join("tls/local-cert.pem"), USER);
    through.must(&format!("EXAMINE {plain}"));
    differential("SEARCH", "h", SEARCHES, &mut direct, &mut through).check("hybrid SEARCH");
    differential("SORT", "i", SORTS, &mut direct, &mut through).check("hybrid SORT");
    let (ok, status) = proxy.cli(&["index", "status"]);
    let wanted = format!(
        "{plain}: {n} indexed, {n} plaintext by their header (imap.search = \"hybrid\": the server searches their bodies)",
        n = fixture.cases.len()
    );
    assert!(ok && status.contains(&wanted), "{wanted} in {status}");
}

#[test]
fn sort_matches_dovecot() {
    let fixture = fixture();
    let (mut direct, mut through) = fixture.sessions();
    differential("SORT", "o", SORTS, &mut direct, &mut through).check("SORT");
}

#[test]
fn thread_matches_dovecot() {
    let fixture = fixture();
    let (mut direct, mut through) = fixture.sessions();
    let report = differential("THREAD", "t", THREADS, &mut direct, &mut through);
    report.check("THREAD");
    assert!(fixture.cases.len() >= 320);
}

/// Submits `messages` as [`SENDER`] to `recipient` at `port` (STARTTLS,
/// AUTH PLAIN), one SMTP transaction each, in order.
fn submit(port: u16, recipient: &str, messages: &[Vec<u8>]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:04}.eml")), m).unwrap();
    }
    python(
        r#"
port, user, pw, rcpt, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
s = connect(port)
s.login(user, pw)
options = ["BODY=8BITMIME"] if s.has_extn("8bitmime") else []
for name in sorted(os.listdir(folder)):
    data = open(os.path.join(folder, name), "rb").read()
    refused = s.sendmail(user, [rcpt], data, mail_options=options)
    assert not refused, refused
s.quit()
"#,
        &[
            &port.to_string(),
            SENDER,
            &password(SENDER),
            recipient,
            dir.path().to_str().unwrap(),
        ],
    );
}

/// Moves the messages of run `run` from `user`'s INBOX into `mailbox`,
/// one at a time in the order of their index.
fn collect(user: &str, run: &str, mailbox: &str, count: usize) {
    let mut imap = Client::direct(user);
    imap.must(&format!("CREATE {mailbox}"));
    imap.must("SELECT INBOX");
    let found = imap.must("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Search-Run)])");
    let mut by_index = BTreeMap::new();
    for resp in &found.untagged {
        let text = String::from_utf8_lossy(resp);
        let Some(rest) = text.split(&format!("X-Search-Run: {run} ")).nth(1) else {
            continue;
        };
        let index: usize = rest[..rest.find('\r').unwrap()].trim().parse().unwrap();
        let uid: u32 = text
            .split("UID ")
            .nth(1)
            .unwrap()
            .split([' ', ')'])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        by_index.insert(index, uid);
    }
    assert_eq!(by_index.len(), count, "{user}: the run's messages in the INBOX: {by_index:?}");
    for uid in by_index.values() {
        imap.must(&format!("UID MOVE {uid} {mailbox}"));
    }
    imap.run("z", "LOGOUT");
}

/// A message as one side shows it: its header fields (names in lower
/// case, values unfolded), RFC822.SIZE and INTERNALDATE.
type Shown = (Vec<(String, String)>, u64, String);

/// The header fields of each message as each side shows them, compared:
/// which fields only one side has, or with other values, and how sizes
/// and internal dates differ. Printed, for the module doc.
fn describe_differences(direct: &mut Client, through: &mut Client) {
    let fields = |c: &mut Client| -> Vec<Shown> {
        let reply = c.must("FETCH 1:* (RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])");
        reply
            .untagged
            .iter()
            .filter(|r| contains(r, b" FETCH ("))
            .map(|r| {
                let text = String::from_utf8_lossy(r).into_owned();
                let size = text
                    .split("RFC822.SIZE ")
                    .nth(1)
                    .unwrap()
                    .split([' ', ')'])
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let date = text.split("INTERNALDATE \"").nth(1).unwrap().split('"').next().unwrap().to_string();
                let header = text.split_once("}\r\n").map_or("", |(_, h)| h);
                let mut out: Vec<(String, String)> = Vec::new();
                for line in header.split("\r\n") {
                    if line.starts_with([' ', '\t']) {
                        if let Some(last) = out.last_mut() {
                            last.1.push_str(line);
                        }
                    } else if let Some((n, v)) = line.split_once(':') {
                        out.push((n.to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                (out, size, date)
            })
            .collect()
    };
    let (plain, sealed) = (fields(direct), fields(through));
    if env("SEARCH_SHOW").is_some() {
        for (name, side) in [("directly delivered", &plain), ("through Sealpost", &sealed)] {
            let lines: Vec<String> = side[0].0.iter().map(|(n, v)| format!("    {n}: {v}")).collect();
            eprintln!("SMTP: the header of message 1 {name}:\n{}", lines.join("\n"));
        }
    }
    let mut only_plain: BTreeMap<String, usize> = BTreeMap::new();
    let mut only_sealed: BTreeMap<String, usize> = BTreeMap::new();
    let mut sizes = Vec::new();
    let mut dates = 0;
    for ((p, psize, pdate), (s, ssize, sdate)) in plain.iter().zip(&sealed) {
        for f in p.iter().filter(|f| !s.contains(f)) {
            *only_plain.entry(f.0.clone()).or_default() += 1;
        }
        for f in s.iter().filter(|f| !p.contains(f)) {
            *only_sealed.entry(f.0.clone()).or_default() += 1;
        }
        sizes.push(*psize as i64 - *ssize as i64);
        dates += usize::from(pdate != sdate);
    }
    eprintln!(
        "SMTP: header fields (name: messages) only in the directly delivered copies: {only_plain:?}; only in Sealpost's view: {only_sealed:?}; size differences (direct minus Sealpost): {:?}..{:?}; {dates} of {} internal dates differ",
        sizes.iter().min(),
        sizes.iter().max(),
        plain.len()
    );
}

#[test]
fn smtp_delivered_search_matches_dovecot() {
    smtp_differential(SMTP_SEARCHES);
}

#[test]
fn smtp_delivered_sort_and_thread_match_dovecot() {
    smtp_differential(SMTP_SORTS);
}

/// Delivers the SMTP subset both ways and compares `commands`' answers.
fn smtp_differential(commands: &[(Expect, &str)]) {
    let stack = stack();
    let seed = env("SEARCH_SEED").and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let cases: Vec<Case> = corpus_with_seed(seed).into_iter().filter(|c| c.smtp).collect();
    assert!(cases.len() >= 30, "an SMTP subset of {} messages", cases.len());
    if env("SEARCH_SHOW").is_some() {
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        eprintln!("SMTP: the subset: {}", names.join(" "));
    }
    let started = Instant::now();
    let run = token("smtp");
    let messages: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| [format!("X-Search-Run: {run} {i:03}\r\n").into_bytes(), c.bytes.clone()].concat())
        .collect();

    let mut alice = User::new(SENDER);
    let mut erin = User::new(SEALED_RECIPIENT);
    alice.knows(&[&erin]);
    erin.knows(&[&alice]);
    let sending = Proxy::start(&alice, None, "");
    let reading = Proxy::start(&erin, None, "");
    std::thread::scope(|scope| {
        let through = scope.spawn(|| submit(sending.smtp.port(), SEALED_RECIPIENT, &messages));
        submit(stack.submission_port, PLAIN_RECIPIENT, &messages);
        through.join().unwrap();
    });
    let wait = Duration::from_secs(180);
    stack.wait_for_matching(SEALED_RECIPIENT, run.as_bytes(), messages.len(), wait);
    stack.wait_for_matching(PLAIN_RECIPIENT, run.as_bytes(), messages.len(), wait);
    let sealed = Mailbox {
        user: SEALED_RECIPIENT,
        name: format!("search-smtp-sealed-{run}"),
        at: Imap::connect,
    };
    let plain = Mailbox {
        user: PLAIN_RECIPIENT,
        name: format!("search-smtp-plain-{run}"),
        at: Imap::connect,
    };
    collect(SEALED_RECIPIENT, &run, &sealed.name, messages.len());
    collect(PLAIN_RECIPIENT, &run, &plain.name, messages.len());
    eprintln!("SMTP: {} messages delivered both ways in {:.1?}", messages.len(), started.elapsed());

    // Erin's copies are stored encrypted.
    let mut stored = Client::direct(SEALED_RECIPIENT);
    stored.must(&format!("EXAMINE {}", sealed.name));
    let raw = stored.must("FETCH 1:* (BODY.PEEK[])");
    for message in raw.untagged.iter().filter(|r| contains(r, b" FETCH (")) {
        assert!(contains(message, b"-----BEGIN PGP MESSAGE-----"));
        for marker in SECRET_MARKERS {
            assert!(
                !contains(&message.to_ascii_lowercase(), marker.as_bytes()),
                "{marker} stored in clear"
            );
        }
    }
    stored.run("z", "LOGOUT");

    let mut direct = Client::direct(PLAIN_RECIPIENT);
    direct.must(&format!("EXAMINE {}", plain.name));
    let certificate = erin.dir.path().join("tls/local-cert.pem");
    let mut through = Client::through(&reading, &certificate, SEALED_RECIPIENT);
    through.must(&format!("EXAMINE {}", sealed.name));
    describe_differences(&mut direct, &mut through);
    let keep = env("SEARCH_KEEP").is_some();
    let report = differential("SMTP", "m", commands, &mut direct, &mut through);
    if keep {
        eprintln!("kept {} of {} and {} of {}", plain.name, plain.user, sealed.name, sealed.user);
        std::mem::forget(plain);
        std::mem::forget(sealed);
    }
    report.check("SMTP");
}
