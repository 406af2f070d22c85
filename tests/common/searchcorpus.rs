//! A deterministic corpus for the SEARCH / SORT / THREAD differential tests
//! (`tests/search_differential.rs`): a few hundred varied messages, each
//! with the flags and internal date to APPEND it with.
//!
//! What is in it:
//!
//! - **Marker messages**: words that occur nowhere else, each in one kind
//!   of place only, so that a search tells the fields apart (see
//!   [`MARKERS`]): only in the Subject, only in a plain body, only in a
//!   base64 text attachment, only in a base64 binary attachment, only in a
//!   quoted-printable line split by a soft line break, only in an RFC 2047
//!   display name, only in To / Cc / Bcc / Reply-To / Message-ID / a custom
//!   header / the Subject of an attached message / an HTML part; and
//!   non-ASCII ones (`Grüße` only in subjects, `Straßenbahn` only in
//!   bodies, `Привет` / `Здравствуйте`, `東京` / `日本語`) in ISO-8859-1,
//!   windows-1252, KOI8-R, ISO-2022-JP, Shift_JIS and UTF-8, as 8bit,
//!   quoted-printable and base64 bodies and as Q and B encoded words.
//! - **Threads** of 5 to 30 messages with Message-ID / In-Reply-To /
//!   References chains (full chains, missing parents, In-Reply-To only,
//!   References only, subject only), replies prefixed `Re:`, `RE:`,
//!   `Re: Re:`, `Fwd:`, `[list] Re:`, `Aw:`, and some out of date order.
//! - **Dates**: Date fields in many zones (numeric and obsolete names),
//!   missing, malformed, two-digit years; a cluster around midnight of
//!   15/16 March 2021 (sent) and of 1/2 June 2022 (internal), so that
//!   `SENTON` and `ON` depend on how the zone is handled.
//! - **Fillers**: random messages of every common shape (plain, 8bit,
//!   quoted-printable, base64, multipart/alternative, mixed with
//!   attachments, related, forwarded messages), subjects drawn from a small
//!   pool with reply prefixes (so subjects repeat), addresses with display
//!   names (quoted, encoded in several charsets, raw UTF-8), groups.
//!
//! Every message ends with CRLF, has CRLF line ends only, no NUL and no
//! line longer than 998 octets. Every `Case` has flags (`\Seen`,
//! `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `$label1`, `$label2`)
//! and an internal date between 2019 and 2024, both drawn from the seed;
//! `smtp` marks the subset that is also sent through SMTP.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The seed of the corpus the tests use.
pub const SEED: u64 = 0x5ea1_2024;

/// One message of the corpus.
pub struct Case {
    /// What it is (`marker-subject-zebraquartz-1`, `thread-budget-07`,
    /// `filler-113`).
    pub name: String,
    /// The message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// The flags to APPEND it with (`\Seen`, `$label1`, ...).
    pub flags: Vec<&'static str>,
    /// The internal date to APPEND it with, as an IMAP `date-time` without
    /// the quotes (`03-Mar-2020 14:05:00 +0100`).
    pub internal_date: String,
    /// Part of the subset also delivered through SMTP: seven-bit header
    /// fields, a Message-ID and a Date.
    pub smtp: bool,
}

impl Case {
    /// The flag list as APPEND takes it: `(\Seen $label1)`, `()`.
    pub fn flag_list(&self) -> String {
        format!("({})", self.flags.join(" "))
    }
}

/// The marker words and where each one is, for the commands and checks
/// that depend on them. Every one occurs only where this says.
pub const MARKERS: [(&str, &str); 17] = [
    ("zebraquartz", "Subject only (plain, and inside a UTF-8 Q encoded word)"),
    ("quokkamint", "body only (plain text parts, and an HTML alternative)"),
    ("basiliskfern", "only inside base64 text/plain and text/csv attachments"),
    (
        "narwhalsprocket",
        "only inside base64 application/octet-stream and application/pdf attachments",
    ),
    (
        "pelicanwisp",
        "only in quoted-printable bodies, split by a soft line break (and once as pel=69canwisp)",
    ),
    (
        "ocelotbrine",
        "only in RFC 2047 display names (From Q UTF-8, Cc B ISO-8859-1, To B KOI8-R)",
    ),
    ("lynxpetal", "To only (display name, and a local part)"),
    ("heronvault", "Cc only (local part, and display name)"),
    ("ibexcanvas", "Bcc only"),
    ("wombatglyph", "X-Project header field only"),
    ("gannetplume", "only in the Subject and body of an attached message/rfc822"),
    ("tapirlantern", "only in a text/html alternative, inside <b>"),
    ("lemurquill", "Reply-To only"),
    ("yakspindle", "Message-ID only"),
    ("vireofable", "body only, of a text/plain part in an unknown charset"),
    ("marmosetcloud", "Subject only, in a Subject folded over two lines"),
    ("rolling thunder", "body: once on one line, once split by a line break"),
];

/// The corpus for [`SEED`].
pub fn corpus() -> Vec<Case> {
    corpus_with_seed(SEED)
}

/// The corpus for `seed`: the marker messages and threads are always the
/// same in content (their dates, flags and filler text vary with the
/// seed), the fillers are drawn from it.
pub fn corpus_with_seed(seed: u64) -> Vec<Case> {
    let mut g = Gen {
        rng: Rng::new(seed),
        boundary: 0,
        cases: Vec::new(),
    };
    // Interleave the kinds, so that sequence ranges cut across all of them.
    let mut fillers = 0;
    let mut add_fillers = |g: &mut Gen, n: usize| {
        for _ in 0..n {
            g.filler(fillers);
            fillers += 1;
        }
    };
    add_fillers(&mut g, 20);
    g.markers_ascii();
    add_fillers(&mut g, 30);
    g.thread("budget", "Quarterly budget review", 30, Style::Full, ymd(2021, 2, 1));
    add_fillers(&mut g, 25);
    g.markers_non_ascii();
    add_fillers(&mut g, 25);
    g.thread("migration", "Server migration plan", 15, Style::MissingParents, ymd(2022, 9, 12));
    g.thread("lunch", "Lunch on Friday?", 6, Style::InReplyToOnly, ymd(2020, 5, 4));
    add_fillers(&mut g, 30);
    g.thread("kickoff", "Project kickoff", 10, Style::ReferencesOnly, ymd(2023, 1, 9));
    g.thread("weekly", "Weekly report", 8, Style::SubjectOnly, ymd(2019, 11, 4));
    let cafe = ew('Q', Cs::Latin1, "Café meeting");
    g.thread("cafe", &cafe, 5, Style::Full, ymd(2024, 3, 18));
    add_fillers(&mut g, 25);
    g.dates_and_oddities();
    add_fillers(&mut g, 45);
    g.cases
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

/// xorshift64*: small and seeded.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// Charsets
// ---------------------------------------------------------------------------

/// The charsets the corpus writes text in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cs {
    Utf8,
    Latin1,
    Win1252,
    Koi8r,
    Iso2022jp,
    ShiftJis,
}

impl Cs {
    /// The MIME name.
    pub fn name(self) -> &'static str {
        match self {
            Cs::Utf8 => "UTF-8",
            Cs::Latin1 => "ISO-8859-1",
            Cs::Win1252 => "windows-1252",
            Cs::Koi8r => "KOI8-R",
            Cs::Iso2022jp => "ISO-2022-JP",
            Cs::ShiftJis => "Shift_JIS",
        }
    }
}

/// windows-1252 0x80..0x9F (`\0` where undefined).
const WIN1252_HIGH: [char; 32] = [
    '€', '\0', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\0', 'Ž', '\0', '\0', '‘', '’', '“', '”', '•', '–', '—', '˜', '™',
    'š', '›', 'œ', '\0', 'ž', 'Ÿ',
];

/// KOI8-R 0xC0..0xFF.
const KOI8R_HIGH: &str = "юабцдефгхийклмнопярстужвьызшэщчъЮАБЦДЕФГХИЙКЛМНОПЯРСТУЖВЬЫЗШЭЩЧЪ";

/// JIS X 0208 codes of the kanji and kana the corpus uses.
const JIS: [(char, u16); 53] = [
    ('で', 0x2447),
    ('す', 0x2439),
    ('。', 0x2123),
    ('を', 0x2472),
    ('し', 0x2437),
    ('て', 0x2446),
    ('く', 0x242f),
    ('だ', 0x2440),
    ('さ', 0x2435),
    ('い', 0x2424),
    ('、', 0x2122),
    ('日', 0x467c),
    ('本', 0x4b5c),
    ('語', 0x386c),
    ('の', 0x244e),
    ('テ', 0x2546),
    ('キ', 0x252d),
    ('ス', 0x2539),
    ('ト', 0x2548),
    ('こ', 0x2433),
    ('ん', 0x2473),
    ('に', 0x244b),
    ('ち', 0x2441),
    ('は', 0x244f),
    ('東', 0x456c),
    ('京', 0x357e),
    ('会', 0x3271),
    ('議', 0x3544),
    ('資', 0x3b71),
    ('料', 0x4e41),
    ('検', 0x3821),
    ('索', 0x3a77),
    ('確', 0x334e),
    ('認', 0x4727),
    ('山', 0x3b33),
    ('田', 0x4544),
    ('太', 0x4240),
    ('郎', 0x4f3a),
    ('中', 0x4366),
    ('花', 0x3256),
    ('子', 0x3b52),
    ('様', 0x4d4d),
    ('件', 0x376f),
    ('新', 0x3f37),
    ('年', 0x472f),
    ('度', 0x4559),
    ('予', 0x4d3d),
    ('算', 0x3b3b),
    ('報', 0x4a73),
    ('告', 0x3970),
    ('書', 0x3d71),
    ('週', 0x3d35),
    ('末', 0x4b76),
];

fn jis(c: char) -> (u8, u8) {
    let code = JIS
        .iter()
        .find(|(k, _)| *k == c)
        .unwrap_or_else(|| panic!("no JIS code for {c:?} in the table"))
        .1;
    ((code >> 8) as u8, code as u8)
}

/// `text` in charset `cs` (newlines left as they are). Panics on a
/// character the charset (or this table of it) does not have.
pub fn encode(cs: Cs, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match cs {
        Cs::Utf8 => out.extend_from_slice(text.as_bytes()),
        Cs::Latin1 => {
            for c in text.chars() {
                assert!((c as u32) < 0x100, "{c:?} is not in ISO-8859-1");
                out.push(c as u32 as u8);
            }
        }
        Cs::Win1252 => {
            for c in text.chars() {
                if let Some(i) = WIN1252_HIGH.iter().position(|&w| w == c && c != '\0') {
                    out.push(0x80 + i as u8);
                } else {
                    assert!(
                        (c as u32) < 0x100 && !(0x80..0xa0).contains(&(c as u32)),
                        "{c:?} is not in windows-1252"
                    );
                    out.push(c as u32 as u8);
                }
            }
        }
        Cs::Koi8r => {
            for c in text.chars() {
                if c.is_ascii() {
                    out.push(c as u8);
                } else if c == 'ё' {
                    out.push(0xa3);
                } else if c == 'Ё' {
                    out.push(0xb3);
                } else {
                    let i = KOI8R_HIGH
                        .chars()
                        .position(|k| k == c)
                        .unwrap_or_else(|| panic!("{c:?} is not in KOI8-R"));
                    out.push(0xc0 + i as u8);
                }
            }
        }
        Cs::Iso2022jp => {
            let mut in_jis = false;
            for c in text.chars() {
                if c.is_ascii() {
                    if in_jis {
                        out.extend_from_slice(b"\x1b(B");
                        in_jis = false;
                    }
                    out.push(c as u8);
                } else {
                    if !in_jis {
                        out.extend_from_slice(b"\x1b$B");
                        in_jis = true;
                    }
                    let (a, b) = jis(c);
                    out.extend_from_slice(&[a, b]);
                }
            }
            if in_jis {
                out.extend_from_slice(b"\x1b(B");
            }
        }
        Cs::ShiftJis => {
            for c in text.chars() {
                if c.is_ascii() {
                    out.push(c as u8);
                } else {
                    let (j1, j2) = jis(c);
                    let s1 = ((j1 + 1) >> 1) + if j1 <= 0x5e { 0x70 } else { 0xb0 };
                    let s2 = if j1 % 2 == 1 {
                        j2 + if j2 >= 0x60 { 0x20 } else { 0x1f }
                    } else {
                        j2 + 0x7e
                    };
                    out.extend_from_slice(&[s1, s2]);
                }
            }
        }
    }
    out
}

/// `text` (lines ending `\n`) in `cs`, lines ending CRLF; ISO-2022-JP
/// returns to ASCII before every line end.
fn text_bytes(cs: Cs, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n');
        out.extend(encode(cs, bare.unwrap_or(line)));
        if bare.is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------

/// RFC 2047 encoded words (`kind` `'Q'` or `'B'`) for `text` in `cs`,
/// split on character boundaries into words of a legal length, joined by
/// folding white space.
pub fn ew(kind: char, cs: Cs, text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    let flush = |chunk: &mut String, words: &mut Vec<String>| {
        if chunk.is_empty() {
            return;
        }
        let bytes = encode(cs, chunk);
        let encoded = match kind {
            'B' => STANDARD.encode(&bytes),
            _ => q_encode(&bytes),
        };
        words.push(format!("=?{}?{kind}?{encoded}?=", cs.name()));
        chunk.clear();
    };
    for c in text.chars() {
        chunk.push(c);
        let len = match kind {
            'B' => encode(cs, &chunk).len() * 4 / 3,
            _ => q_encode(&encode(cs, &chunk)).len(),
        };
        if len > 36 {
            flush(&mut chunk, &mut words);
        }
    }
    flush(&mut chunk, &mut words);
    words.join("\r\n ")
}

fn q_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out
}

/// Quoted-printable of CRLF-separated lines, soft breaks before 76.
fn qp_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let text_lines: Vec<&[u8]> = split_crlf(bytes);
    for (n, line) in text_lines.iter().enumerate() {
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
            let piece: Vec<u8> = if literal { vec![b] } else { format!("={b:02X}").into_bytes() };
            if col + piece.len() > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            col += piece.len();
            out.extend(piece);
        }
        if n + 1 < text_lines.len() || bytes.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn split_crlf(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if &bytes[i..i + 2] == b"\r\n" {
            lines.push(&bytes[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = STANDARD.encode(bytes);
    let mut out = Vec::new();
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A Content-Transfer-Encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cte {
    /// No field at all.
    Absent,
    SevenBit,
    EightBit,
    Qp,
    B64,
}

impl Cte {
    fn field(self) -> &'static str {
        match self {
            Cte::Absent => "",
            Cte::SevenBit => "Content-Transfer-Encoding: 7bit\r\n",
            Cte::EightBit => "Content-Transfer-Encoding: 8bit\r\n",
            Cte::Qp => "Content-Transfer-Encoding: quoted-printable\r\n",
            Cte::B64 => "Content-Transfer-Encoding: base64\r\n",
        }
    }

    fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = match self {
            Cte::Qp => qp_encode(bytes),
            Cte::B64 => base64_lines(bytes),
            _ => bytes.to_vec(),
        };
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Seconds since the epoch of midnight UTC, `y-m-d`.
fn ymd(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146097 + doe - 719468) * 86400
}

/// (year, month 1-12, day, hour, minute, second, weekday index) of `t`
/// seen at UTC offset `offset` minutes.
fn civil(t: i64, offset: i64) -> (i64, usize, i64, i64, i64, i64, usize) {
    let local = t + offset * 60;
    let days = local.div_euclid(86400);
    let secs = local.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m as usize,
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        days.rem_euclid(7) as usize,
    )
}

fn zone(offset: i64) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    format!("{sign}{:02}{:02}", offset.abs() / 60, offset.abs() % 60)
}

/// An RFC 5322 date, `Tue, 3 Mar 2020 14:05:00 +0100`.
fn rfc5322(t: i64, offset: i64) -> String {
    let (y, m, d, h, mi, s, wd) = civil(t, offset);
    format!("{}, {d} {} {y} {h:02}:{mi:02}:{s:02} {}", WEEKDAYS[wd], MONTHS[m - 1], zone(offset))
}

/// An IMAP date-time without quotes, `03-Mar-2020 14:05:00 +0100`.
fn imap_date_time(t: i64, offset: i64) -> String {
    let (y, m, d, h, mi, s, _) = civil(t, offset);
    format!("{d:02}-{}-{y} {h:02}:{mi:02}:{s:02} {}", MONTHS[m - 1], zone(offset))
}

/// UTC offsets (minutes) that dates are written in.
const OFFSETS: [i64; 12] = [0, 60, 120, -300, -240, -480, -420, 330, 540, -210, 720, 345];

// ---------------------------------------------------------------------------
// Words, names, subjects
// ---------------------------------------------------------------------------

const WORDS: [&str; 96] = [
    "the", "and", "of", "to", "a", "in", "for", "is", "on", "that", "by", "this", "with", "you", "it", "not", "or", "be", "are", "from",
    "at", "as", "your", "all", "have", "new", "more", "an", "was", "we", "will", "can", "us", "about", "if", "my", "has", "but", "our",
    "one", "other", "do", "no", "time", "they", "he", "up", "may", "what", "which", "their", "out", "use", "any", "there", "see", "only",
    "so", "his", "when", "here", "who", "also", "now", "help", "get", "view", "first", "been", "would", "how", "were", "me", "some",
    "these", "like", "service", "than", "report", "meeting", "budget", "invoice", "schedule", "review", "draft", "attached", "please",
    "thanks", "deadline", "project", "team", "server", "figures", "agenda", "notes", "update",
];

const GERMAN: [&str; 12] = [
    "Hallo",
    "Termin",
    "Bericht",
    "Woche",
    "München",
    "schön",
    "Übersicht",
    "für",
    "Größe",
    "Äpfel",
    "Köln",
    "Entwurf",
];

const FRENCH: [&str; 6] = ["café", "naïve", "déjà", "réunion", "élève", "crème"];

const RUSSIAN: [&str; 8] = ["отчёт", "встреча", "неделя", "проект", "бюджет", "команда", "Москва", "спасибо"];

const JAPANESE: [&str; 8] = ["会議", "資料", "確認", "予算", "報告書", "週末", "検索", "新年度"];

const SUBJECTS: [&str; 34] = [
    "Meeting notes",
    "Invoice 2041",
    "Project update",
    "Server maintenance window",
    "Team offsite",
    "Contract draft",
    "Holiday schedule",
    "Expense report",
    "Question about the API",
    "Release 4.2 checklist",
    "Welcome aboard",
    "Password reset",
    "Your order has shipped",
    "Newsletter: March edition",
    "Code review request",
    "Agenda for Monday",
    "Minutes",
    "Bug 1234: crash on startup",
    "Slides for the talk",
    "Travel booking",
    "Re-scheduled call",
    "RE-ORG announcement",
    "fwd of the week",
    "Re:",
    "",
    "[ANN] Version 2.0 released",
    "(no subject)",
    "Status",
    "status",
    "STATUS",
    "Status  report",
    "A very long subject line that goes on and on about nothing in particular just to be long",
    "x",
    "Q3",
];

const PREFIXES: [&str; 12] = [
    "",
    "",
    "",
    "",
    "Re: ",
    "RE: ",
    "Re: Re: ",
    "Fwd: ",
    "FW: ",
    "[list] Re: ",
    "Re[2]: ",
    "[team] ",
];

/// Rendered addresses for fillers (none with a marker word).
fn people() -> Vec<String> {
    vec![
        "Alice Example <alice@example.org>".into(),
        "\"Doe, Jane\" <jane.doe@example.net>".into(),
        "bob@example.net".into(),
        "<carl@mail.example.com>".into(),
        format!("{} <zoe@example.se>", ew('Q', Cs::Utf8, "Zoë Ångström")),
        format!("{} <francois@example.fr>", ew('Q', Cs::Latin1, "François Lévesque")),
        format!("{} <anna@example.ru>", ew('B', Cs::Utf8, "Анна Петрова")),
        format!("{} <hanako@example.jp>", ew('B', Cs::Iso2022jp, "田中花子")),
        format!("{} <sergei@example.ru>", ew('B', Cs::Koi8r, "Сергей Смирнов")),
        format!("{} <smart@example.com>", ew('Q', Cs::Win1252, "“Smart” Quotes")),
        "Support Team <support@vendor.example>".into(),
        "\"O'Brien, Pat (IT)\" <pat@example.ie>".into(),
        "mailer@example.com (Mail Delivery System)".into(),
        "Dave <dave@example.com>".into(),
        "Erin Q. Public <erin.public@example.org>".into(),
        "\"Frank \\\"the tank\\\" Smith\" <frank.smith@example.com>".into(),
        "noreply@notifications.example.com".into(),
        "Grace Hopper <grace@navy.example.mil>".into(),
        "Heidi <heidi@example.ch>".into(),
        "Ivan <ivan@example.bg>".into(),
    ]
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A MIME entity: its Content-* fields and its body, as sent.
struct Entity {
    fields: Vec<u8>,
    body: Vec<u8>,
}

impl Entity {
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.fields.clone();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The top-level header fields of a message being built.
#[derive(Default)]
struct Head {
    lines: Vec<u8>,
    date: Option<i64>,
    has_message_id: bool,
    has_date: bool,
}

impl Head {
    fn field(&mut self, name: &str, value: &str) -> &mut Head {
        self.raw(name, value.as_bytes())
    }

    fn raw(&mut self, name: &str, value: &[u8]) -> &mut Head {
        if name.eq_ignore_ascii_case("Message-ID") {
            self.has_message_id = true;
        }
        if name.eq_ignore_ascii_case("Date") {
            self.has_date = true;
        }
        self.lines.extend_from_slice(name.as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
        self
    }

    /// A Date field for `t` at `offset`, remembered for the internal date.
    fn date(&mut self, t: i64, offset: i64) -> &mut Head {
        self.date = Some(t);
        self.field("Date", &rfc5322(t, offset))
    }
}

enum Style {
    /// In-Reply-To and the whole References chain.
    Full,
    /// As Full, but some messages are left out of the mailbox.
    MissingParents,
    /// In-Reply-To only.
    InReplyToOnly,
    /// References only, sometimes cut to the root and the parent.
    ReferencesOnly,
    /// No threading fields: only the subject connects them.
    SubjectOnly,
}

struct Gen {
    rng: Rng,
    boundary: u32,
    cases: Vec<Case>,
}

/// Messages of the SMTP subset among the marker messages.
const SMTP_MARKERS: [&str; 12] = [
    "marker-subject-zebraquartz-1",
    "marker-body-quokkamint-1",
    "marker-att64-basiliskfern-1",
    "marker-qpsoft-pelicanwisp-1",
    "marker-ewname-ocelotbrine-1",
    "marker-to-lynxpetal-1",
    "marker-cc-heronvault-1",
    "marker-bcc-ibexcanvas-1",
    "nonascii-subject-gruesse-utf8-b",
    "nonascii-body-strassenbahn-latin1-8bit",
    "nonascii-body-zdravstvuyte-koi8-8bit",
    "nonascii-body-nihongo-iso2022jp",
];

impl Gen {
    // -- building blocks ---------------------------------------------------

    fn boundary(&mut self) -> String {
        self.boundary += 1;
        format!("=_sp{:03}_{:08x}", self.boundary, self.rng.next() as u32)
    }

    /// A Message-ID for a marker message: its position, no marker word.
    fn message_id(&self) -> String {
        format!("<m{}.{}@markers.example.org>", self.cases.len() + 1, self.boundary)
    }

    fn text(&mut self, subtype: &str, cs: Cs, cte: Cte, text: &str) -> Entity {
        let bytes = text_bytes(cs, text);
        Entity {
            fields: format!("Content-Type: text/{subtype}; charset=\"{}\"\r\n{}", cs.name(), cte.field()).into_bytes(),
            body: cte.apply(&bytes),
        }
    }

    fn attachment(&mut self, content_type: &str, filename: &str, bytes: &[u8]) -> Entity {
        Entity {
            fields: format!(
                "Content-Type: {content_type}; name=\"{filename}\"\r\nContent-Disposition: attachment; filename=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\n"
            )
            .into_bytes(),
            body: base64_lines(bytes),
        }
    }

    fn multipart(&mut self, subtype: &str, parts: Vec<Entity>) -> Entity {
        let boundary = self.boundary();
        let mut body = Vec::new();
        if self.rng.chance(50) {
            body.extend_from_slice(b"This is a multi-part message in MIME format.\r\n");
        }
        for part in parts {
            body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            let bytes = part.bytes();
            body.extend_from_slice(bytes.strip_suffix(b"\r\n").unwrap_or(&bytes));
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Entity {
            fields: format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n").into_bytes(),
            body,
        }
    }

    fn rfc822(&mut self, message: Vec<u8>) -> Entity {
        Entity {
            fields: b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"forwarded.eml\"\r\n".to_vec(),
            body: message,
        }
    }

    /// Random bytes, `embed` in the middle if given.
    fn binary(&mut self, len: usize, embed: Option<&str>) -> Vec<u8> {
        let mut out: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
        if let Some(e) = embed {
            let at = len / 2;
            out.splice(at..at, e.bytes());
        }
        out
    }

    /// Sentences of common words, lines wrapped before 72 columns, each
    /// ending `\n`.
    fn prose(&mut self, sentences: usize, extra: &[&str]) -> String {
        let mut words = Vec::new();
        for _ in 0..sentences {
            let n = 4 + self.rng.below(9);
            for i in 0..n {
                let mut w = if !extra.is_empty() && self.rng.chance(15) {
                    self.rng.pick(extra).to_string()
                } else {
                    self.rng.pick(&WORDS).to_string()
                };
                if i == 0 {
                    let mut c = w.chars();
                    w = c
                        .next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default();
                }
                if i + 1 == n {
                    w.push('.');
                }
                words.push(w);
            }
        }
        wrap(&words, 70)
    }

    fn person(&mut self) -> String {
        let people = people();
        people[self.rng.below(people.len())].clone()
    }

    fn people(&mut self, max: usize) -> String {
        let n = 1 + self.rng.below(max);
        (0..n).map(|_| self.person()).collect::<Vec<_>>().join(",\r\n ")
    }

    fn random_time(&mut self) -> i64 {
        self.rng.range(ymd(2019, 1, 1), ymd(2025, 1, 1))
    }

    fn offset(&mut self) -> i64 {
        OFFSETS[self.rng.below(OFFSETS.len())]
    }

    /// A From / To / (Cc) / Subject / Date / Message-ID header for a filler.
    fn common_head(&mut self, subject: &str, id: &str) -> Head {
        let mut h = Head::default();
        let t = self.random_time();
        let off = self.offset();
        h.date(t, off);
        let from = self.person();
        h.field("From", &from);
        match self.rng.below(12) {
            0 => {
                h.field("To", "undisclosed-recipients:;");
            }
            1 => {
                let (a, b) = (self.person(), self.person());
                h.field("To", &format!("Project Team: {a}, {b};"));
            }
            _ => {
                let to = self.people(3);
                h.field("To", &to);
            }
        }
        if self.rng.chance(30) {
            let cc = self.people(3);
            h.field("Cc", &cc);
        }
        if !subject.is_empty() || self.rng.chance(50) {
            h.field("Subject", subject);
        }
        h.field("Message-ID", &format!("<{id}@generated.example.org>"));
        h
    }

    /// Adds a case: flags and internal date drawn here.
    fn finish(&mut self, name: String, head: &Head, entity: Option<Entity>) {
        let mut bytes = head.lines.clone();
        if let Some(e) = entity {
            bytes.extend_from_slice(b"MIME-Version: 1.0\r\n");
            bytes.extend_from_slice(&e.bytes());
        }
        self.push(name, bytes, head.date, head.has_message_id && head.has_date);
    }

    fn push(&mut self, name: String, bytes: Vec<u8>, sent: Option<i64>, smtp_able: bool) {
        assert!(!bytes.contains(&0), "{name}: NUL");
        for line in split_crlf(&bytes) {
            assert!(line.len() <= 998, "{name}: line of {} octets", line.len());
            assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "{name}: bare CR or LF");
        }
        let mut flags = Vec::new();
        for (flag, percent) in [
            ("\\Seen", 60),
            ("\\Answered", 20),
            ("\\Flagged", 15),
            ("\\Deleted", 6),
            ("\\Draft", 5),
            ("$label1", 25),
            ("$label2", 10),
        ] {
            if self.rng.chance(percent) {
                flags.push(flag);
            }
        }
        let t = match sent {
            Some(t) if self.rng.chance(85) => t + self.rng.range(5, 7200),
            _ => self.random_time(),
        };
        let off = self.offset();
        let internal_date = imap_date_time(t, off);
        let header_end = super::find(&bytes, b"\r\n\r\n").unwrap_or(bytes.len());
        let ascii_head = bytes[..header_end].is_ascii();
        let filler_pick = name
            .strip_prefix("filler-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n % 8 == 3);
        let smtp = smtp_able && ascii_head && (filler_pick || SMTP_MARKERS.contains(&name.as_str()));
        self.cases.push(Case {
            name,
            bytes,
            flags,
            internal_date,
            smtp,
        });
    }

    /// Sets the internal date of the last case.
    fn internal_date(&mut self, date: &str) {
        self.cases.last_mut().unwrap().internal_date = date.to_string();
    }

    // -- fillers -----------------------------------------------------------

    fn filler(&mut self, n: usize) {
        let base = self.rng.pick(&SUBJECTS).to_string();
        let prefix = self.rng.pick(&PREFIXES);
        let subject = match self.rng.below(14) {
            0 => ew('Q', Cs::Latin1, &format!("{prefix}Café {base}")),
            1 => format!("{prefix}{}", ew('B', Cs::Koi8r, "Отчёт за неделю")),
            2 => ew('B', Cs::Iso2022jp, "会議資料の確認"),
            3 => format!("{prefix}{}", ew('B', Cs::Utf8, &format!("Übersicht: {base}"))),
            _ => format!("{prefix}{base}"),
        };
        let id = format!("filler.{n}.{:x}", self.rng.next() as u32);
        let mut head = self.common_head(&subject, &id);
        if self.rng.chance(5) {
            // Now and then a reply to something that is not here.
            head.field("In-Reply-To", &format!("<absent.{n}@elsewhere.example>"));
        }
        if self.rng.chance(8) {
            let reply_to = self.person();
            head.field("Reply-To", &reply_to);
        }
        if n % 29 == 7 {
            // A message without a Date (the internal date stands in).
            head = self.strip_date(head);
        }
        let entity = self.filler_body();
        self.finish(format!("filler-{n:03}"), &head, entity);
    }

    fn strip_date(&mut self, head: Head) -> Head {
        let mut out = Head::default();
        for line in split_crlf(&head.lines) {
            if !line.starts_with(b"Date: ") {
                out.lines.extend_from_slice(line);
                out.lines.extend_from_slice(b"\r\n");
            }
        }
        out.has_message_id = head.has_message_id;
        out
    }

    fn filler_body(&mut self) -> Option<Entity> {
        let sentences = 2 + self.rng.below(12);
        match self.rng.below(20) {
            0..=3 => {
                // RFC 822 without MIME fields.
                None
            }
            4 | 5 => {
                let text = self.prose(sentences, &[]);
                Some(self.text("plain", Cs::Utf8, Cte::SevenBit, &text))
            }
            6 => {
                let text = self.prose(sentences, &GERMAN);
                Some(self.text("plain", Cs::Utf8, Cte::EightBit, &text))
            }
            7 => {
                let text = self.prose(sentences, &GERMAN);
                Some(self.text("plain", Cs::Latin1, Cte::Qp, &text))
            }
            8 => {
                let text = self.prose(sentences, &FRENCH);
                Some(self.text("plain", Cs::Win1252, Cte::EightBit, &text))
            }
            9 => {
                let text = self.prose(sentences, &RUSSIAN);
                Some(self.text("plain", Cs::Koi8r, Cte::B64, &text))
            }
            10 => {
                let text = self.prose(sentences, &JAPANESE);
                Some(self.text("plain", Cs::Iso2022jp, Cte::SevenBit, &text))
            }
            11 | 12 => {
                let text = self.prose(sentences, &FRENCH);
                let plain = self.text("plain", Cs::Utf8, Cte::Qp, &text);
                let html = format!("<html><body><p>{}</p></body></html>\n", text.replace('\n', " "));
                let html = self.text("html", Cs::Utf8, Cte::Qp, &html);
                Some(self.multipart("alternative", vec![plain, html]))
            }
            13..=15 => {
                let text = self.prose(sentences, &[]);
                let body = self.text("plain", Cs::Utf8, Cte::SevenBit, &text);
                let mut parts = vec![body];
                for _ in 0..1 + self.rng.below(2) {
                    let part = match self.rng.below(4) {
                        0 => {
                            let len = 200 + self.rng.below(20_000);
                            let data = self.binary(len, None);
                            self.attachment("application/pdf", "report.pdf", &data)
                        }
                        1 => {
                            let len = 100 + self.rng.below(4_000);
                            let data = self.binary(len, None);
                            self.attachment("image/png", "logo.png", &data)
                        }
                        2 => {
                            let notes = self.prose(4, &[]);
                            self.attachment("text/plain", "notes.txt", &text_bytes(Cs::Utf8, &notes))
                        }
                        _ => {
                            let csv = "date,amount,item\n2021-01-04,12.50,coffee\n2021-01-05,7.00,tea\n";
                            self.attachment("text/csv", "figures.csv", &text_bytes(Cs::Utf8, csv))
                        }
                    };
                    parts.push(part);
                }
                Some(self.multipart("mixed", parts))
            }
            16 => {
                let text = self.prose(sentences, &[]);
                Some(self.text("plain", Cs::Utf8, Cte::B64, &text))
            }
            17 => {
                // mixed > related > alternative, and an attachment.
                let text = self.prose(sentences, &GERMAN);
                let plain = self.text("plain", Cs::Utf8, Cte::Qp, &text);
                let html = self.text("html", Cs::Utf8, Cte::Qp, &format!("<p>{}</p>\n", text.replace('\n', "<br>\n")));
                let alt = self.multipart("alternative", vec![plain, html]);
                let data = self.binary(600, None);
                let image = self.attachment("image/gif", "dot.gif", &data);
                let related = self.multipart("related", vec![alt, image]);
                let data = self.binary(1500, None);
                let zip = self.attachment("application/zip", "archive.zip", &data);
                Some(self.multipart("mixed", vec![related, zip]))
            }
            _ => {
                // A forwarded message.
                let inner_text = self.prose(3, &[]);
                let inner_id = format!("inner.{:x}", self.rng.next() as u32);
                let mut inner_head = self.common_head("Original message", &inner_id);
                let inner_body = self.text("plain", Cs::Utf8, Cte::SevenBit, &inner_text);
                inner_head.field("MIME-Version", "1.0");
                let mut inner = inner_head.lines.clone();
                inner.extend(inner_body.bytes());
                let text = self.prose(2, &[]);
                let note = self.text("plain", Cs::Utf8, Cte::SevenBit, &text);
                let forwarded = self.rfc822(inner);
                Some(self.multipart("mixed", vec![note, forwarded]))
            }
        }
    }

    // -- marker messages ---------------------------------------------------

    /// A header for a marker message: a Date, a From, a To, a Message-ID;
    /// `subject` (encoded as needed) if not empty.
    fn marker_head(&mut self, subject: &str) -> Head {
        let mut h = Head::default();
        let t = self.random_time();
        let off = self.offset();
        h.date(t, off);
        let from = self.person();
        h.field("From", &from);
        let to = self.people(2);
        h.field("To", &to);
        if !subject.is_empty() {
            h.field("Subject", subject);
        }
        h.field("Message-ID", &self.message_id());
        h
    }

    fn plain_marker(&mut self, name: &str, subject: &str, body: &str) {
        let head = self.marker_head(subject);
        let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, body);
        self.finish(name.to_string(), &head, Some(entity));
    }

    fn markers_ascii(&mut self) {
        // Subject only.
        let body = self.prose(3, &[]);
        self.plain_marker("marker-subject-zebraquartz-1", "zebraquartz launch plan", &body);
        let head = self.marker_head("Re: ZebraQuartz status");
        let text = self.prose(4, &[]);
        let plain = self.text("plain", Cs::Utf8, Cte::Qp, &text);
        let html = self.text("html", Cs::Utf8, Cte::Qp, &format!("<p>{text}</p>\n"));
        let entity = self.multipart("alternative", vec![plain, html]);
        self.finish("marker-subject-zebraquartz-2".into(), &head, Some(entity));
        let head = self.marker_head("[list] Fwd: the ZEBRAQUARTZ report");
        let text = self.prose(2, &[]);
        let note = self.text("plain", Cs::Utf8, Cte::SevenBit, &text);
        let data = self.binary(3000, None);
        let pdf = self.attachment("application/pdf", "report.pdf", &data);
        let entity = self.multipart("mixed", vec![note, pdf]);
        self.finish("marker-subject-zebraquartz-3".into(), &head, Some(entity));
        let subject = ew('Q', Cs::Utf8, "zebraquartz für alle");
        let body = self.prose(2, &[]);
        self.plain_marker("marker-subject-zebraquartz-4", &subject, &body);

        // Body only.
        let body = format!("{}The quokkamint figures are in.\n{}", self.prose(2, &[]), self.prose(2, &[]));
        self.plain_marker("marker-body-quokkamint-1", "Figures", &body);
        let head = self.marker_head("Figures again");
        let text = format!("Look at the QuokkaMint numbers.\n{}", self.prose(2, &[]));
        let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, &text);
        let html = self.text("html", Cs::Utf8, Cte::SevenBit, "<p>Look at the <i>quokkamint</i> numbers.</p>\n");
        let entity = self.multipart("alternative", vec![plain, html]);
        self.finish("marker-body-quokkamint-2".into(), &head, Some(entity));
        let head = self.marker_head("Scan");
        let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, "quokkamint scan attached\n");
        let data = self.binary(9000, None);
        let image = self.attachment("image/jpeg", "scan.jpg", &data);
        let entity = self.multipart("mixed", vec![plain, image]);
        self.finish("marker-body-quokkamint-3".into(), &head, Some(entity));

        // Only inside a base64 text attachment.
        for (i, (ctype, file)) in [("text/plain; charset=utf-8", "notes.txt"), ("text/csv", "data.csv")]
            .iter()
            .enumerate()
        {
            let name = format!("marker-att64-basiliskfern-{}", i + 1);
            let head = self.marker_head("Notes attached");
            let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, "See the attached file.\n");
            let content = format!("{}line with basiliskfern inside\n{}", self.prose(2, &[]), self.prose(1, &[]));
            let att = self.attachment(ctype, file, &text_bytes(Cs::Utf8, &content));
            let entity = self.multipart("mixed", vec![plain, att]);
            self.finish(name, &head, Some(entity));
        }

        // Only inside a base64 binary attachment.
        for (i, (ctype, file)) in [("application/octet-stream", "blob.bin"), ("application/pdf", "spec.pdf")]
            .iter()
            .enumerate()
        {
            let name = format!("marker-bin64-narwhalsprocket-{}", i + 1);
            let head = self.marker_head("Binary attached");
            let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, "The binary is attached.\n");
            let data = self.binary(2000, Some(" narwhalsprocket "));
            let att = self.attachment(ctype, file, &data);
            let entity = self.multipart("mixed", vec![plain, att]);
            self.finish(name, &head, Some(entity));
        }

        // Only in quoted-printable, split by a soft line break.
        for (i, split) in ["pelic=\r\nanwisp", "pelican=\r\nwisp", "pel=69canwisp"].iter().enumerate() {
            let name = format!("marker-qpsoft-pelicanwisp-{}", i + 1);
            let head = self.marker_head("Soft line breaks");
            let text = format!("{}Short line: pelicanwisp here.\n{}", self.prose(1, &[]), self.prose(1, &[]));
            let mut entity = if i == 1 {
                // In the HTML alternative only; the text part has no marker.
                let plain = self.text("plain", Cs::Utf8, Cte::Qp, "Short line: nothing here.\n");
                let html = self.text("html", Cs::Utf8, Cte::Qp, &format!("<p>{}</p>\n", text.replace('\n', " ")));
                self.multipart("alternative", vec![plain, html])
            } else {
                self.text("plain", Cs::Utf8, Cte::Qp, &text)
            };
            let at = super::find(&entity.body, b"pelicanwisp").expect("the marker on one QP line");
            entity.body.splice(at..at + 11, split.bytes());
            self.finish(name, &head, Some(entity));
        }

        // Only in encoded-word display names.
        let mut head = Head::default();
        head.date(ymd(2020, 7, 14) + 3600 * 9, 120);
        head.field("From", &format!("{} <om@example.net>", ew('Q', Cs::Utf8, "Ocelotbrine Müller")));
        head.field("To", "dave@example.com");
        head.field("Subject", "Display names");
        head.field("Message-ID", &self.message_id());
        let body = self.prose(2, &[]);
        let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
        self.finish("marker-ewname-ocelotbrine-1".into(), &head, Some(entity));
        let mut head = self.marker_head("Display names");
        head.field("Cc", &format!("{} <dj@example.de>", ew('B', Cs::Latin1, "Dr. ocelotbrine Jürgens")));
        let body = self.prose(2, &[]);
        let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
        self.finish("marker-ewname-ocelotbrine-2".into(), &head, Some(entity));
        let mut head = Head::default();
        head.date(ymd(2023, 4, 2) + 3600 * 16, 180);
        head.field("From", "Alice Example <alice@example.org>");
        head.field("To", &format!("{} <ivanov@example.ru>", ew('B', Cs::Koi8r, "OCELOTBRINE Иванов")));
        head.field("Subject", "Display names");
        head.field("Message-ID", &self.message_id());
        let body = self.prose(2, &[]);
        let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
        self.finish("marker-ewname-ocelotbrine-3".into(), &head, Some(entity));

        // To, Cc, Bcc, Reply-To, Message-ID, a custom field only.
        for (name, field, value) in [
            ("marker-to-lynxpetal-1", "To", "Lynxpetal Team <team@example.org>"),
            ("marker-to-lynxpetal-2", "To", "bob@example.net, lynxpetal@example.com"),
            ("marker-cc-heronvault-1", "Cc", "heronvault@lists.example.org"),
            (
                "marker-cc-heronvault-2",
                "Cc",
                "\"Heronvault Archive\" <archive@example.net>, carl@mail.example.com",
            ),
            ("marker-bcc-ibexcanvas-1", "Bcc", "ibexcanvas@example.com"),
            ("marker-bcc-ibexcanvas-2", "Bcc", "\"Ibexcanvas\" <hidden@example.net>"),
            ("marker-replyto-lemurquill-1", "Reply-To", "Lemurquill Desk <desk@example.org>"),
            ("marker-project-wombatglyph-1", "X-Project", "wombatglyph-7"),
            ("marker-project-wombatglyph-2", "X-Project", "WombatGlyph (phase 2)"),
        ] {
            let mut head = Head::default();
            let t = self.random_time();
            head.date(t, 60);
            head.field("From", "Support Team <support@vendor.example>");
            if field != "To" {
                head.field("To", "Dave <dave@example.com>");
            }
            head.field(field, value);
            head.field("Subject", "Addresses");
            head.field("Message-ID", &self.message_id());
            let body = self.prose(2, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            self.finish(name.to_string(), &head, Some(entity));
        }
        let mut head = Head::default();
        head.date(ymd(2022, 2, 2) + 7200, -300);
        head.field("From", "bob@example.net");
        head.field("To", "alice@example.org");
        head.field("Subject", "Ids");
        head.field("Message-ID", "<yakspindle.1@example.org>");
        self.finish("marker-msgid-yakspindle-1".into(), &head, None);
        let last = self.cases.last_mut().unwrap();
        last.bytes.extend_from_slice(b"\r\nA message whose id is special.\r\n");

        // Only in an attached message.
        let head = self.marker_head("Fwd: minutes");
        let inner = b"From: Carol <carol@example.com>\r\nTo: team@example.org\r\nSubject: gannetplume minutes\r\nDate: Mon, 3 May 2021 10:00:00 +0200\r\nMessage-ID: <inner-gannet@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe gannetplume minutes, as agreed.\r\n".to_vec();
        let note = self.text("plain", Cs::Utf8, Cte::SevenBit, "Forwarding the minutes.\n");
        let fwd = self.rfc822(inner);
        let entity = self.multipart("mixed", vec![note, fwd]);
        self.finish("marker-fwd-gannetplume-1".into(), &head, Some(entity));

        // Only in an HTML alternative.
        let head = self.marker_head("Newsletter");
        let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, "Plain version without it.\n");
        let html = self.text(
            "html",
            Cs::Utf8,
            Cte::SevenBit,
            "<html><body><p>Our <b>tapirlantern</b> offer.</p></body></html>\n",
        );
        let entity = self.multipart("alternative", vec![plain, html]);
        self.finish("marker-html-tapirlantern-1".into(), &head, Some(entity));

        // A part in a charset nobody knows.
        let mut head = self.marker_head("Unknown charset");
        head.field("Content-Type", "text/plain; charset=x-unknown-charset");
        self.finish("marker-charset-vireofable-1".into(), &head, None);
        let last = self.cases.last_mut().unwrap();
        last.bytes.extend_from_slice(b"MIME-Version: 1.0\r\n\r\nThe vireofable text.\r\n");

        // A folded Subject.
        let body = self.prose(2, &[]);
        self.plain_marker(
            "marker-folded-marmosetcloud-1",
            "A subject folded between alpha\r\n marmosetcloud and omega",
            &body,
        );

        // A phrase on one line, and split by a line break.
        self.plain_marker("marker-phrase-thunder-1", "Weather", "Expect rolling thunder tonight.\n");
        self.plain_marker(
            "marker-phrase-thunder-2",
            "Weather again",
            "Expect some rolling\nthunder tomorrow.\n",
        );

        // Big ones, for LARGER.
        for (i, size) in [90_000usize, 160_000].iter().enumerate() {
            let name = format!("big-{}", i + 1);
            let head = self.marker_head("Large attachment");
            let plain = self.text("plain", Cs::Utf8, Cte::SevenBit, "Big file attached.\n");
            let data = self.binary(*size, None);
            let att = self.attachment("application/zip", "big.zip", &data);
            let entity = self.multipart("mixed", vec![plain, att]);
            self.finish(name, &head, Some(entity));
        }
    }

    fn markers_non_ascii(&mut self) {
        // Grüße: subjects only.
        for (name, subject) in [
            ("nonascii-subject-gruesse-latin1-q", ew('Q', Cs::Latin1, "Grüße aus Berlin")),
            ("nonascii-subject-gruesse-utf8-b", ew('B', Cs::Utf8, "Herzliche Grüße")),
            ("nonascii-subject-gruesse-1252-q", ew('Q', Cs::Win1252, "„Grüße“ vom Team")),
            ("nonascii-subject-gruesse-raw-utf8", "Grüße roh".to_string()),
        ] {
            let body = self.prose(2, &[]);
            self.plain_marker(name, &subject, &body);
        }

        // Straßenbahn: bodies only.
        let cases = [
            (
                "nonascii-body-strassenbahn-latin1-8bit",
                Cs::Latin1,
                Cte::EightBit,
                "Die Straßenbahn fährt um 8 Uhr.\n",
            ),
            (
                "nonascii-body-strassenbahn-1252-qp",
                Cs::Win1252,
                Cte::Qp,
                "Die Straßenbahn ist „pünktlich“ – der Preis: 42 €.\n",
            ),
            (
                "nonascii-body-strassenbahn-utf8-b64",
                Cs::Utf8,
                Cte::B64,
                "Straßenbahn-Haltestelle verlegt.\n",
            ),
        ];
        for (name, cs, cte, text) in cases {
            let head = self.marker_head("Verkehr");
            let text = format!("{}{text}", self.prose(1, &[]));
            let entity = self.text("plain", cs, cte, &text);
            self.finish(name.to_string(), &head, Some(entity));
        }

        // Привет: subjects; Здравствуйте: bodies.
        for (name, subject) in [
            ("nonascii-subject-privet-koi8-b", ew('B', Cs::Koi8r, "Привет из Москвы")),
            (
                "nonascii-subject-privet-utf8-q",
                format!("Re: {}", ew('Q', Cs::Utf8, "Привет всем")),
            ),
        ] {
            let body = self.prose(2, &[]);
            self.plain_marker(name, &subject, &body);
        }
        for (name, cs, cte) in [
            ("nonascii-body-zdravstvuyte-koi8-8bit", Cs::Koi8r, Cte::EightBit),
            ("nonascii-body-zdravstvuyte-koi8-b64", Cs::Koi8r, Cte::B64),
            ("nonascii-body-zdravstvuyte-utf8-qp", Cs::Utf8, Cte::Qp),
        ] {
            let head = self.marker_head("Letter");
            let entity = self.text("plain", cs, cte, "Здравствуйте, коллеги!\nОтчёт за неделю готов.\n");
            self.finish(name.to_string(), &head, Some(entity));
        }

        // 日本語: bodies; 東京: subjects.
        for (name, cs, cte) in [
            ("nonascii-body-nihongo-iso2022jp", Cs::Iso2022jp, Cte::SevenBit),
            ("nonascii-body-nihongo-sjis-b64", Cs::ShiftJis, Cte::B64),
            ("nonascii-body-nihongo-utf8-8bit", Cs::Utf8, Cte::EightBit),
        ] {
            let head = self.marker_head("Text");
            let entity = self.text("plain", cs, cte, "日本語のテキストです。\n会議の資料を確認してください。\n");
            self.finish(name.to_string(), &head, Some(entity));
        }
        for (name, subject) in [
            ("nonascii-subject-tokyo-iso2022jp-b", ew('B', Cs::Iso2022jp, "東京会議")),
            ("nonascii-subject-tokyo-utf8-b", ew('B', Cs::Utf8, "東京の件")),
        ] {
            let body = self.prose(2, &[]);
            self.plain_marker(name, &subject, &body);
        }

        // Display names.
        for (name, from) in [
            (
                "nonascii-name-mueller-latin1-q",
                format!("{} <joerg@example.de>", ew('Q', Cs::Latin1, "Jörg Müller")),
            ),
            (
                "nonascii-name-ivanov-koi8-b",
                format!("{} <dmitri@example.ru>", ew('B', Cs::Koi8r, "Дмитрий Иванов")),
            ),
            (
                "nonascii-name-yamada-iso2022jp-b",
                format!("{} <yamada@example.jp>", ew('B', Cs::Iso2022jp, "山田太郎")),
            ),
            ("nonascii-name-raw-utf8", "Ümit Çelik <uemit@example.de>".to_string()),
        ] {
            let mut head = Head::default();
            let t = self.random_time();
            head.date(t, 540);
            head.field("From", &from);
            head.field("To", "Dave <dave@example.com>");
            head.field("Subject", "Names");
            head.field("Message-ID", &self.message_id());
            let body = self.prose(2, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            self.finish(name.to_string(), &head, Some(entity));
        }

        // Raw ISO-8859-1 in a header (not UTF-8, not encoded).
        let mut head = Head::default();
        head.date(ymd(2021, 10, 10) + 50_000, 60);
        head.field("From", "Caf\u{e9} owner <owner@example.fr>");
        head.raw("Subject", b"Caf\xe9 cr\xe8me");
        head.field("To", "dave@example.com");
        head.field("Message-ID", &self.message_id());
        let body = self.prose(2, &[]);
        let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
        self.finish("nonascii-raw-latin1-header".into(), &head, Some(entity));
        // The From line above went in as UTF-8; make it Latin-1 too.
        let last = self.cases.last_mut().unwrap();
        let at = super::find(&last.bytes, "Caf\u{e9} owner".as_bytes()).unwrap();
        last.bytes
            .splice(at..at + "Caf\u{e9} owner".len(), b"Caf\xe9 owner".iter().copied());

        // Adjacent encoded words make one word.
        let body = self.prose(2, &[]);
        self.plain_marker(
            "nonascii-subject-adjacent-ew",
            "=?UTF-8?Q?Gro=C3=9F?= =?UTF-8?Q?artig?= news",
            &body,
        );
        // A broken encoded word stays as it is.
        let body = self.prose(2, &[]);
        self.plain_marker("nonascii-subject-broken-ew", "=?UTF-8?Q?unterminated_word and more", &body);
    }

    // -- threads -----------------------------------------------------------

    fn thread(&mut self, key: &str, subject: &str, n: usize, style: Style, start: i64) {
        let ids: Vec<String> = (0..n).map(|i| format!("<{key}.{i}@threads.example.org>")).collect();
        let mut parents: Vec<Option<usize>> = vec![None];
        let mut refs: Vec<Vec<usize>> = vec![vec![]];
        for i in 1..n {
            let p = if self.rng.chance(55) { i - 1 } else { self.rng.below(i) };
            parents.push(Some(p));
            let mut chain = refs[p].clone();
            chain.push(p);
            refs.push(chain);
        }
        let missing = |i: usize| matches!(style, Style::MissingParents) && i % 4 == 1;
        let mut t = start + self.rng.range(0, 86400);
        let mut times = Vec::new();
        for _ in 0..n {
            t += self.rng.range(600, 2 * 86400);
            times.push(t);
        }
        // Emit mostly in date order, a few swapped.
        let mut order: Vec<usize> = (0..n).collect();
        for i in 1..n {
            if self.rng.chance(15) {
                order.swap(i - 1, i);
            }
        }
        let senders = [
            "Alice Example <alice@example.org>",
            "\"Doe, Jane\" <jane.doe@example.net>",
            "Dave <dave@example.com>",
            "Grace Hopper <grace@navy.example.mil>",
        ];
        for i in order {
            if missing(i) {
                continue;
            }
            let mut head = Head::default();
            let off = self.offset();
            head.date(times[i], off);
            head.field("From", senders[i % senders.len()]);
            head.field("To", "team@example.org");
            let prefix = if i == 0 {
                ""
            } else {
                self.rng
                    .pick(&["Re: ", "Re: ", "RE: ", "Re: Re: ", "[list] Re: ", "Fwd: ", "Aw: ", "re: "])
            };
            head.field("Subject", &format!("{prefix}{subject}"));
            if !(matches!(style, Style::SubjectOnly) && i % 3 == 2) {
                head.field("Message-ID", &ids[i]);
            }
            if let Some(p) = parents[i] {
                let chain: Vec<&str> = refs[i].iter().map(|&r| ids[r].as_str()).collect();
                match style {
                    Style::Full | Style::MissingParents => {
                        head.field("In-Reply-To", &ids[p]);
                        head.field("References", &chain.join("\r\n "));
                    }
                    Style::InReplyToOnly => {
                        head.field("In-Reply-To", &ids[p]);
                    }
                    Style::ReferencesOnly => {
                        let cut = if chain.len() > 2 && i % 2 == 0 {
                            vec![chain[0], chain[chain.len() - 1]]
                        } else {
                            chain
                        };
                        head.field("References", &cut.join(" "));
                    }
                    Style::SubjectOnly => {}
                }
            }
            let text = format!(
                "{}\nOn an earlier day, someone wrote:\n> {}",
                self.prose(2, &[]).trim_end(),
                self.prose(1, &[]).replace('\n', "\n> ")
            );
            let text = text.trim_end().to_string() + "\n";
            let entity = if i % 5 == 4 {
                let plain = self.text("plain", Cs::Utf8, Cte::Qp, &text);
                let html = self.text("html", Cs::Utf8, Cte::Qp, &format!("<p>{}</p>\n", text.replace('\n', "<br>\n")));
                Some(self.multipart("alternative", vec![plain, html]))
            } else {
                Some(self.text("plain", Cs::Utf8, Cte::SevenBit, &text))
            };
            self.finish(format!("thread-{key}-{i:02}"), &head, entity);
        }
    }

    // -- dates and other oddities --------------------------------------------

    fn dates_and_oddities(&mut self) {
        // Sent around midnight of 15/16 March 2021, in several zones.
        let sent = [
            ("date-midnight-1", "Mon, 15 Mar 2021 23:30:00 -0800"),
            ("date-midnight-2", "Tue, 16 Mar 2021 00:15:00 +0100"),
            ("date-midnight-3", "Mon, 15 Mar 2021 12:00:00 +0000"),
            ("date-midnight-4", "Tue, 16 Mar 2021 08:45:00 +0930"),
            ("date-midnight-5", "Mon, 15 Mar 2021 00:00:00 +1400"),
            ("date-midnight-6", "Mon, 15 Mar 2021 23:59:59 -1200"),
            ("date-obsolete-est", "Mon, 15 Mar 2021 21:00:00 EST"),
            ("date-obsolete-gmt", "16 Mar 2021 01:00:00 GMT"),
            ("date-two-digit-year", "Fri, 13 Aug 21 10:00:00 EDT"),
            ("date-two-digit-year-99", "1 Jan 99 12:00:00 +0000"),
            ("date-malformed-words", "yesterday afternoon"),
            ("date-malformed-iso", "2021-05-04T10:00:00Z"),
            ("date-malformed-feb31", "Mon, 31 Feb 2021 10:00:00 +0000"),
            ("date-malformed-time", "Fri, 13 Aug 2021 25:61:00 +0000"),
            ("date-no-zone", "Wed, 10 Feb 2021 10:00:00"),
            ("date-epoch", "Thu, 1 Jan 1970 00:00:00 +0000"),
            ("date-future", "Fri, 1 Jan 2038 00:00:00 +0000"),
            ("date-comment", "Tue, 2 Nov 2021 09:30:00 +0100 (CET)"),
            ("date-ut", "Sat, 1 Jan 2000 00:00:00 UT"),
            ("date-no-weekday", "3 Jun 2022 18:00:00 -0700"),
        ];
        for (name, date) in sent {
            let mut head = Head::default();
            head.field("Date", date);
            head.field("From", "Dates <dates@example.org>");
            head.field("To", "dave@example.com");
            head.field("Subject", &format!("Date test {name}"));
            head.field("Message-ID", &format!("<{name}@dates.example.org>"));
            let body = self.prose(1, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            head.date = Some(ymd(2021, 3, 15));
            self.finish(name.to_string(), &head, Some(entity));
        }
        // Without a Date.
        for i in 1..=3 {
            let mut head = Head::default();
            head.field("From", "Undated <undated@example.org>");
            head.field("To", "dave@example.com");
            head.field("Subject", "No date at all");
            head.field("Message-ID", &format!("<undated.{i}@dates.example.org>"));
            let body = self.prose(1, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            self.finish(format!("date-missing-{i}"), &head, Some(entity));
        }
        // Internal dates around midnight of 1/2 June 2022.
        for (i, internal) in [
            "01-Jun-2022 23:30:00 -0700",
            "02-Jun-2022 00:30:00 +0200",
            "01-Jun-2022 00:10:00 +0000",
            "31-May-2022 23:59:59 +0000",
            "02-Jun-2022 23:59:59 +1100",
            "01-Jun-2022 12:00:00 +0530",
        ]
        .iter()
        .enumerate()
        {
            let name = format!("internal-midnight-{}", i + 1);
            let head = self.marker_head("Arrival times");
            let body = self.prose(1, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            self.finish(name, &head, Some(entity));
            self.internal_date(internal);
        }
        // Without any header but a Subject; with an empty body.
        self.push("odd-subject-only".into(), b"Subject: just a subject\r\n\r\n".to_vec(), None, false);
        self.push(
            "odd-no-header".into(),
            b"\r\nA body without any header field at all.\r\n".to_vec(),
            None,
            false,
        );
        // Two messages with the same Message-ID; one that names itself.
        for i in 1..=2 {
            let mut head = Head::default();
            head.date(ymd(2020, 2, 20) + i * 3600, 0);
            head.field("From", "Dup <dup@example.org>");
            head.field("To", "dave@example.com");
            head.field("Subject", "Duplicate id");
            head.field("Message-ID", "<duplicate@example.org>");
            let body = self.prose(1, &[]);
            let entity = self.text("plain", Cs::Utf8, Cte::SevenBit, &body);
            self.finish(format!("odd-duplicate-id-{i}"), &head, Some(entity));
        }
        let mut head = Head::default();
        head.date(ymd(2020, 2, 21), 0);
        head.field("From", "Loop <loop@example.org>");
        head.field("To", "dave@example.com");
        head.field("Subject", "Re: Duplicate id");
        head.field("Message-ID", "<self@example.org>");
        head.field("In-Reply-To", "<self@example.org>");
        head.field("References", "<duplicate@example.org> <self@example.org>");
        self.finish("odd-self-reference".into(), &head, None);
        let last = self.cases.last_mut().unwrap();
        last.bytes.extend_from_slice(b"\r\nI refer to myself.\r\n");
        let mut head = Head::default();
        head.date(ymd(2020, 2, 22), 0);
        head.field("From", "Broken <broken@example.org>");
        head.field("To", "dave@example.com");
        head.field("Subject", "Re: Duplicate id");
        head.field("Message-ID", "<broken-refs@example.org>");
        head.field("In-Reply-To", "<not-closed@example.org");
        head.field("References", "garbage <duplicate@example.org> more garbage <");
        self.finish("odd-broken-references".into(), &head, None);
        let last = self.cases.last_mut().unwrap();
        last.bytes.extend_from_slice(b"\r\nBroken references.\r\n");
        // Several Subject fields; a Subject that is only a prefix.
        let mut head = self.marker_head("First subject");
        head.field("Subject", "Second subject");
        self.finish("odd-two-subjects".into(), &head, None);
        let last = self.cases.last_mut().unwrap();
        last.bytes.extend_from_slice(b"\r\nTwo subjects.\r\n");
        let body = self.prose(1, &[]);
        self.plain_marker("odd-subject-re-only", "Re: ", &body);
        let body = self.prose(1, &[]);
        self.plain_marker("odd-subject-tab", "Tabbed\tsubject  line", &body);
        let body = self.prose(1, &[]);
        self.plain_marker("odd-subject-fwd-trailer", "Lunch on Friday? (fwd)", &body);
    }
}

/// Words joined by spaces into lines of at most `width` characters, each
/// ending `\n`.
fn wrap(words: &[String], width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in words {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
