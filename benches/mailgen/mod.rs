//! A seeded mailbox of realistic mail for the search benchmarks
//! (`benches/search_index.rs`, and `benches/search-compare.sh` through its
//! dump mode): N messages, each one made from its index and the seed
//! alone, so that message `i` is the same whatever N is and whichever
//! messages are made before it.
//!
//! What is in it (the ideas of `tests/common/searchcorpus.rs`, scaled up,
//! without depending on it):
//!
//! - **Text**: words drawn from a Zipf-Mandelbrot distribution (exponent
//!   1.15, so that the 300 most frequent words make 65% of the text, the
//!   2,000 most frequent 82%) over a vocabulary of 40,000 words: about 330
//!   common English and business words at the top, then pronounceable
//!   made-up words of one to three syllables; 3% of the words are numbers. German, French, Russian and Japanese messages mix
//!   in words of their language. Message length is log-normal (median
//!   about 100 words), newsletters are long.
//! - **Structure**: text/plain alone (7bit, 8bit, quoted-printable, base64),
//!   multipart/alternative with an HTML part (inline styles), newsletters
//!   (table layout, tracking links with random tokens), multipart/mixed
//!   with 1 to 3 attachments (PDF, images, zip, docx as base64 random
//!   bytes; text and CSV attachments that SEARCH reads; forwarded
//!   message/rfc822), multipart/related with an inline image, calendar
//!   invitations.
//! - **Charsets**: UTF-8, US-ASCII, ISO-8859-1, windows-1252, KOI8-R,
//!   ISO-2022-JP and Shift_JIS, in bodies and in RFC 2047 Q and B encoded
//!   words (subjects and display names).
//! - **Headers** as delivered: Return-Path, Delivered-To, two or three
//!   Received fields, DKIM-Signature and Authentication-Results for many,
//!   X-Mailer or User-Agent, List-Unsubscribe for newsletters.
//! - **Threads**: 45% of the messages answer an earlier one (`Re:` and the
//!   thread's subject, In-Reply-To, References, and the parent's text
//!   quoted).
//! - **Marker words** ([`MARKERS`]) at known frequencies, each in one kind
//!   of place only: message `i` carries a marker of period P when `i % P`
//!   is the marker's offset (an offset below N, so that a marker rarer than
//!   the mailbox is large still occurs exactly once). No other text holds
//!   a marker: no vocabulary word contains one, and random tokens are drawn
//!   without the letters E, J, Q, X, one of which every marker has.
//!
//! Every message has CRLF line ends, no NUL and no line over 998 octets.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The seed the benchmarks use.
pub const SEED: u64 = 0x5ea1_be9c;

/// Where a marker word is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the message's own text (the text/plain part and its HTML
    /// alternative), never in quoted text.
    Body,
    /// In the Subject, after the thread's subject.
    Subject,
    /// As the surname in the From display name.
    FromName,
    /// As the value of a header field of this name (`X-Ticket`).
    Header(&'static str),
}

/// A marker word: where it is and how often (one message in `period`).
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    /// The word as written (lower case).
    pub word: &'static str,
    /// Where.
    pub place: Place,
    /// One message in this many.
    pub period: usize,
}

/// The marker words. `therestion` is made of very common English trigrams
/// (THE HER ERE RES EST STI TIO ION), the others mostly of rare ones: a
/// trigram index finds the first kind harder.
pub const MARKERS: [Marker; 10] = [
    marker("zephyrquill", Place::Body, 100_000),
    marker("quaxtorine", Place::Body, 1_000),
    marker("jovialtrex", Place::Body, 10),
    marker("therestion", Place::Body, 100_000),
    marker("vexlarquin", Place::Subject, 100_000),
    marker("zorbleqvist", Place::Subject, 1_000),
    marker("quimbyfax", Place::FromName, 100_000),
    marker("jaxtonberg", Place::FromName, 1_000),
    marker("glacierpod", Place::Header("X-Ticket"), 1_000),
    marker("frexbullion", Place::Header("X-Ticket"), 100_000),
];

const fn marker(word: &'static str, place: Place, period: usize) -> Marker {
    Marker { word, place, period }
}

/// Letters that random tokens (tracking links, DKIM signatures, queue ids)
/// are drawn from: no E, J, Q or X, so no token holds a marker.
const TOKEN_ALPHABET: &[u8] = b"abcdfghiklmnoprstuvwyzABCDFGHIKLMNOPRSTUVWYZ0123456789";

/// The mailbox: `n` messages drawn from `seed`.
pub struct Corpus {
    seed: u64,
    n: usize,
    /// The vocabulary, most frequent first.
    words: Vec<String>,
    /// Cumulative Zipf probabilities of `words`.
    cumulative: Vec<f64>,
    /// Correspondents: display name as written (maybe encoded words) and
    /// address, most frequent first.
    people: Vec<(String, String)>,
    /// Cumulative Zipf probabilities of `people`.
    people_cumulative: Vec<f64>,
}

/// What decides a message's shape, drawn from its own stream.
struct Plan {
    lang: Lang,
    kind: Kind,
    /// Words of its own text.
    words: usize,
    /// The message it answers.
    parent: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    De,
    Fr,
    Ru,
    Ja,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Alternative,
    Newsletter,
    Mixed,
    Related,
    Invitation,
}

/// Independent random streams of one message.
#[derive(Clone, Copy)]
enum Stream {
    Plan = 1,
    Body,
    Subject,
    Head,
    Parts,
    From,
}

impl Corpus {
    /// The mailbox of `n` messages for `seed`.
    pub fn new(seed: u64, n: usize) -> Corpus {
        let words = vocabulary();
        let cumulative = zipf(words.len(), 1.15, 2.7);
        let people = people();
        let people_cumulative = zipf(people.len(), 1.0, 1.0);
        for m in &MARKERS {
            assert!(
                m.word.chars().any(|c| "ejqx".contains(c)),
                "{}: every marker needs a letter that tokens lack",
                m.word
            );
            let foreign = FOREIGN.iter().flat_map(|(_, w)| w.iter().copied());
            let names = FIRST.iter().chain(&LAST).chain(&DOMAINS).chain(&NEWSLETTERS).copied();
            for w in words.iter().map(String::as_str).chain(foreign).chain(names) {
                assert!(
                    !w.to_lowercase().contains(m.word),
                    "the vocabulary word {w} holds the marker {}",
                    m.word
                );
            }
        }
        Corpus {
            seed,
            n,
            words,
            cumulative,
            people,
            people_cumulative,
        }
    }

    /// The number of messages.
    pub fn len(&self) -> usize {
        self.n
    }

    /// The index of the first message that carries `marker`, and so every
    /// `period`-th after it.
    fn offset(&self, marker: &Marker) -> usize {
        let index = MARKERS.iter().position(|m| m.word == marker.word).unwrap_or(0) as u64;
        (mix(self.seed ^ mix(index + 1)) as usize) % marker.period.min(self.n.max(1))
    }

    /// Whether message `i` carries `marker`.
    pub fn carries(&self, marker: &Marker, i: usize) -> bool {
        i % marker.period == self.offset(marker)
    }

    /// The messages that carry `marker`, ascending.
    pub fn carriers(&self, marker: &Marker) -> Vec<usize> {
        (self.offset(marker)..self.n).step_by(marker.period).collect()
    }

    fn rng(&self, i: usize, stream: Stream) -> Rng {
        Rng::new(mix(self.seed ^ mix(i as u64 ^ ((stream as u64) << 56))))
    }

    fn plan(&self, i: usize) -> Plan {
        let mut r = self.rng(i, Stream::Plan);
        let lang = match r.below(100) {
            0..=83 => Lang::En,
            84..=89 => Lang::De,
            90..=93 => Lang::Fr,
            94..=96 => Lang::Ru,
            _ => Lang::Ja,
        };
        let kind = match r.below(100) {
            0..=34 => Kind::Plain,
            35..=71 => Kind::Alternative,
            72..=79 => Kind::Newsletter,
            80..=92 => Kind::Mixed,
            93..=97 => Kind::Related,
            _ => Kind::Invitation,
        };
        let words = match kind {
            Kind::Newsletter => 400 + r.below(1600),
            Kind::Invitation => 20 + r.below(60),
            _ => (r.lognormal(4.6, 0.9) as usize).clamp(5, 5000),
        };
        let parent = (i > 0 && kind != Kind::Newsletter && r.chance(45)).then(|| i - 1 - r.below(i.min(300)));
        Plan { lang, kind, words, parent }
    }

    /// The first message of `i`'s thread.
    fn root(&self, mut i: usize) -> usize {
        while let Some(p) = self.plan(i).parent {
            i = p;
        }
        i
    }

    fn message_id(&self, i: usize) -> String {
        let host = [
            "mail.example.net",
            "mx.example.org",
            "example.com",
            "corp.example",
            "news.example.com",
        ][i % 5];
        format!("<{:x}.{i}.{:08x}@{host}>", self.seed & 0xffff, mix(self.seed ^ i as u64) as u32)
    }

    /// A thread's subject, as its first message has it (no markers).
    fn base_subject(&self, root: usize) -> String {
        let mut r = self.rng(root, Stream::Subject);
        let n = 2 + r.below(7);
        let mut words: Vec<String> = (0..n).map(|_| self.word(&mut r).to_string()).collect();
        let lang = self.plan(root).lang;
        if let Some((_, foreign)) = FOREIGN.iter().find(|(l, _)| *l == lang).filter(|_| r.chance(60)) {
            let at = r.below(words.len() + 1);
            words.insert(at, foreign[r.below(foreign.len())].to_string());
        }
        if r.chance(20) {
            words.push(r.below(10_000).to_string());
        }
        capitalise(&words.join(" "))
    }

    fn word<'c>(&'c self, r: &mut Rng) -> &'c str {
        let u = r.unit();
        let at = self.cumulative.partition_point(|&c| c < u).min(self.words.len() - 1);
        &self.words[at]
    }

    /// Who wrote message `i` (before markers and newsletters).
    fn sender(&self, i: usize) -> (String, String) {
        self.person(&mut self.rng(i, Stream::From)).clone()
    }

    fn person(&self, r: &mut Rng) -> &(String, String) {
        let u = r.unit();
        &self.people[self.people_cumulative.partition_point(|&c| c < u).min(self.people.len() - 1)]
    }

    /// `count` words of message `i`'s own text, in sentences and
    /// paragraphs (lines of at most 72 columns, `\n` ends, an empty line
    /// between paragraphs), with `extra` words spliced in at random places.
    fn prose(&self, i: usize, lang: Lang, count: usize, extra: &[&str]) -> String {
        let mut r = self.rng(i, Stream::Body);
        let foreign = FOREIGN.iter().find(|(l, _)| *l == lang).map(|(_, w)| *w);
        let mut words: Vec<String> = Vec::with_capacity(count + extra.len());
        for _ in 0..count {
            let w = if r.chance(3) {
                r.below(100_000).to_string()
            } else if let Some(f) = foreign.filter(|_| r.chance(30)) {
                f[r.below(f.len())].to_string()
            } else {
                self.word(&mut r).to_string()
            };
            words.push(w);
        }
        let mut placed = Rng::new(mix(r.next()));
        for e in extra {
            let at = placed.below(words.len() + 1);
            words.insert(at, e.to_string());
        }
        let mut out = String::with_capacity(count * 7);
        let mut line = 0;
        let (mut sentence, mut sentences) = (0, 0);
        let mut sentence_len = 5 + r.below(16);
        for (k, w) in words.iter().enumerate() {
            let mut w = if sentence == 0 { capitalise(w) } else { w.clone() };
            sentence += 1;
            let last = k + 1 == words.len();
            if sentence == sentence_len || last {
                w.push(if r.chance(10) { '?' } else { '.' });
                sentence = 0;
                sentences += 1;
                sentence_len = 5 + r.below(16);
            } else if r.chance(6) {
                w.push(',');
            }
            let width = w.chars().count();
            if line > 0 && line + 1 + width > 72 {
                out.push('\n');
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(&w);
            line += width;
            if sentence == 0 && sentences % (3 + r.below(4)) == 0 && !last {
                out.push_str("\n\n");
                line = 0;
            }
        }
        out.push('\n');
        out
    }

    /// Message `i` (0-based), CRLF line ends.
    pub fn message(&self, i: usize) -> Vec<u8> {
        let plan = self.plan(i);
        let mut r = self.rng(i, Stream::Head);
        let root = self.root(i);
        let cs = charset(plan.lang, &mut r);

        // Subject: the thread's, with reply prefixes, and markers.
        let mut subject = self.base_subject(root);
        if plan.parent.is_some() {
            let prefix = ["Re: ", "Re: ", "Re: ", "RE: ", "AW: ", "Re: Re: ", "Fwd: ", "[team] Re: "][r.below(8)];
            subject = format!("{prefix}{subject}");
        }
        for m in MARKERS.iter().filter(|m| m.place == Place::Subject && self.carries(m, i)) {
            subject = format!("{subject} {}", m.word);
        }
        let subject = if !subject.is_ascii() || (cs == Cs::Utf8 && r.chance(10)) {
            // In the message's charset where it has every character.
            let lossless = encode(cs, &subject).iter().filter(|&&b| b == b'?').count() == subject.matches('?').count();
            let subject_cs = if lossless && cs != Cs::Ascii { cs } else { Cs::Utf8 };
            ew(if r.chance(50) { 'Q' } else { 'B' }, subject_cs, &subject)
        } else {
            subject
        };

        // From: a correspondent (a marker surname for marker messages).
        let (mut from_name, mut from_addr) = self.sender(i);
        if plan.kind == Kind::Newsletter {
            let k = r.below(NEWSLETTERS.len());
            from_name = NEWSLETTERS[k].to_string();
            from_addr = format!("news@{}", newsletter_domain(k));
        }
        for m in MARKERS.iter().filter(|m| m.place == Place::FromName && self.carries(m, i)) {
            from_name = format!("{} {}", FIRST[r.below(FIRST.len())], capitalise(m.word));
        }
        let from = if from_name.is_empty() {
            format!("<{from_addr}>")
        } else {
            format!("{from_name} <{from_addr}>")
        };
        let from_domain = from_addr.split('@').nth(1).unwrap_or("example.net").to_string();

        let t = date_of(i, self.n);
        let offset = OFFSETS[r.below(OFFSETS.len())];
        let mut h = Vec::with_capacity(4096);
        let mut field = |name: &str, value: &str| {
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value.as_bytes());
            h.extend_from_slice(b"\r\n");
        };
        field("Return-Path", &format!("<{from_addr}>"));
        field("Delivered-To", "dave@example.com");
        let hops = 2 + r.below(2);
        for hop in 0..hops {
            let when = rfc5322(t + 3 * (hops - hop) as i64, 0);
            let id = token(&mut r, 12);
            let value = if hop == 0 {
                format!(
                    "from mx1.example.com (mx1.example.com [192.0.2.25])\r\n\tby imap.example.com (Dovecot) with LMTP id {id}\r\n\tfor <dave@example.com>; {when}"
                )
            } else {
                let ip = format!("203.0.113.{}", 1 + r.below(250));
                format!(
                    "from out{hop}.{from_domain} (out{hop}.{from_domain} [{ip}])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby mx1.example.com (Postfix) with ESMTPS id {id}\r\n\tfor <dave@example.com>; {when}"
                )
            };
            field("Received", &value);
        }
        if r.chance(45) {
            field(
                "Authentication-Results",
                &format!("mx1.example.com;\r\n\tdkim=pass (2048-bit key) header.d={from_domain} header.i=@{from_domain};\r\n\tspf=pass smtp.mailfrom={from_domain}"),
            );
            let signature: Vec<String> = (0..5).map(|_| token(&mut r, 68)).collect();
            field(
                "DKIM-Signature",
                &format!(
                    "v=1; a=rsa-sha256; c=relaxed/relaxed; d={from_domain}; s=s{}; t={};\r\n\th=from:to:subject:date:message-id:mime-version;\r\n\tbh={}=;\r\n\tb={}",
                    2019 + r.below(6),
                    t,
                    token(&mut r, 43),
                    signature.join("\r\n\t ")
                ),
            );
        }
        field("Date", &rfc5322(t, offset));
        field("From", &from);
        let mut to = vec!["Dave <dave@example.com>".to_string()];
        for _ in 0..r.below(3) {
            to.push(self.address(&mut r));
        }
        field("To", &to.join(",\r\n "));
        if r.chance(25) {
            let cc: Vec<String> = (0..1 + r.below(3)).map(|_| self.address(&mut r)).collect();
            field("Cc", &cc.join(",\r\n "));
        }
        field("Subject", &fold(&subject));
        field("Message-ID", &self.message_id(i));
        if let Some(parent) = plan.parent {
            field("In-Reply-To", &self.message_id(parent));
            let mut chain = vec![parent];
            while chain.len() < 10 {
                match self.plan(*chain.last().expect("not empty")).parent {
                    Some(p) => chain.push(p),
                    None => break,
                }
            }
            let ids: Vec<String> = chain.iter().rev().map(|&a| self.message_id(a)).collect();
            field("References", &ids.join("\r\n "));
        }
        match r.below(10) {
            0..=2 => field("X-Mailer", "Microsoft Outlook 16.0"),
            3..=4 => field(
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.1",
            ),
            5 => field("X-Mailer", "Apple Mail (2.3774.500.171.1.1)"),
            _ => {}
        }
        if plan.kind == Kind::Newsletter {
            field(
                "List-Unsubscribe",
                &format!("<https://{from_domain}/unsubscribe?u={}>", token(&mut r, 32)),
            );
            field("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
            field("X-Campaign", ["spring-sale", "weekly-digest", "product-news"][r.below(3)]);
            field("Precedence", "bulk");
        }
        for m in MARKERS.iter().filter(|m| matches!(m.place, Place::Header(_)) && self.carries(m, i)) {
            if let Place::Header(name) = m.place {
                field(name, &format!("{}-{}", m.word, r.below(10_000)));
            }
        }
        if r.chance(10) {
            field("X-Priority", "3 (Normal)");
        }

        // Body.
        let mut extra: Vec<&str> = MARKERS
            .iter()
            .filter(|m| m.place == Place::Body && self.carries(m, i))
            .map(|m| m.word)
            .collect();
        extra.sort_unstable();
        let mut text = self.prose(i, plan.lang, plan.words, &extra);
        if let Some(parent) = plan.parent {
            let p = self.plan(parent);
            let quoted = self.prose(parent, p.lang, p.words.min(120), &[]);
            let (pname, paddr) = self.sender(parent);
            let who = if pname.is_empty() || pname.starts_with("=?") {
                paddr
            } else {
                pname
            };
            text.push_str(&format!("\nOn {}, {who} wrote:\n", rfc5322(date_of(parent, self.n), 0)));
            for line in quoted.lines() {
                text.push_str(if line.is_empty() { ">" } else { "> " });
                text.push_str(line);
                text.push('\n');
            }
        }
        if r.chance(60) {
            let (name, addr) = self.person(&mut r);
            let name = if name.starts_with("=?") || name.is_empty() { "Dave" } else { name };
            text.push_str(&format!("\n-- \n{name}\n{addr}\n+1 555 {:04}\n", r.below(10_000)));
        }
        let mut parts = self.rng(i, Stream::Parts);
        let body = match plan.kind {
            Kind::Plain => text_part(&mut parts, "plain", cs, &text),
            Kind::Alternative => self.alternative(&mut parts, cs, &text),
            Kind::Newsletter => {
                let html = newsletter_html(&mut parts, &text, &from_domain);
                let plain = text_part(&mut parts, "plain", cs, &text);
                let html = text_part(&mut parts, "html", Cs::Utf8, &html);
                multipart(&mut parts, "alternative", vec![plain, html])
            }
            Kind::Mixed => {
                let first = if parts.chance(50) {
                    self.alternative(&mut parts, cs, &text)
                } else {
                    text_part(&mut parts, "plain", cs, &text)
                };
                let mut all = vec![first];
                for _ in 0..1 + parts.below(3) {
                    all.push(self.attachment(&mut parts, i));
                }
                multipart(&mut parts, "mixed", all)
            }
            Kind::Related => {
                let alternative = self.alternative(&mut parts, cs, &text);
                let size = 2_000 + parts.below(40_000);
                let name = format!("image{:03}.png", parts.below(1000));
                let image = binary_part(&mut parts, "image/png", &name, size, true);
                multipart(&mut parts, "related", vec![alternative, image])
            }
            Kind::Invitation => {
                let plain = text_part(&mut parts, "plain", cs, &text);
                let ics = format!(
                    "BEGIN:VCALENDAR\nMETHOD:REQUEST\nPRODID:Microsoft Exchange Server 2016\nVERSION:2.0\nBEGIN:VEVENT\n\
                     ORGANIZER;CN=Dave:mailto:dave@example.com\nSUMMARY:{}\nDTSTART:20240{}1{}T090000Z\nDTEND:20240{}1{}T100000Z\n\
                     UID:{}\nLOCATION:Room {}\nEND:VEVENT\nEND:VCALENDAR\n",
                    self.base_subject(root),
                    1 + parts.below(9),
                    parts.below(10),
                    1 + parts.below(9),
                    parts.below(10),
                    token(&mut parts, 40),
                    parts.below(500)
                );
                let mut calendar = text_part(&mut parts, "calendar", Cs::Utf8, &ics);
                calendar.fields =
                    b"Content-Type: text/calendar; charset=\"utf-8\"; method=REQUEST\r\nContent-Transfer-Encoding: 7bit\r\n".to_vec();
                multipart(&mut parts, "alternative", vec![plain, calendar])
            }
        };
        let mut out = h;
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        out.extend_from_slice(&body.fields);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body.body);
        debug_assert!(well_formed(&out), "message {i} is malformed");
        out
    }

    /// A recipient: a correspondent, written in `cs` when not ASCII.
    fn address(&self, r: &mut Rng) -> String {
        let (name, addr) = self.person(r);
        if name.is_empty() {
            addr.clone()
        } else {
            format!("{name} <{addr}>")
        }
    }

    /// text/plain with an HTML alternative of the same text.
    fn alternative(&self, r: &mut Rng, cs: Cs, text: &str) -> Entity {
        let html_cs = if cs == Cs::Iso2022jp { Cs::Utf8 } else { cs };
        // Outlook's HTML (a style sheet, MsoNormal paragraphs) or a plainer one.
        let outlook = r.chance(40);
        let mut html = format!(
            "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset={}\">\n{}</head>\n<body>\n",
            html_cs.name(),
            if outlook { OUTLOOK_STYLE } else { "" }
        );
        html.push_str(if outlook {
            "<div class=\"WordSection1\">\n"
        } else {
            "<div dir=\"ltr\" style=\"font-family: Calibri, Arial, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);\">\n"
        });
        for paragraph in text.split("\n\n") {
            html.push_str(if outlook { "<p class=\"MsoNormal\">" } else { "<p>" });
            html.push_str(&wrap_html(&escape_html(paragraph)));
            html.push_str(if outlook { "<o:p></o:p></p>\n" } else { "</p>\n" });
        }
        html.push_str("</div>\n</body>\n</html>\n");
        let plain = text_part(r, "plain", cs, text);
        let html = text_part(r, "html", html_cs, &html);
        multipart(r, "alternative", vec![plain, html])
    }

    fn attachment(&self, r: &mut Rng, i: usize) -> Entity {
        let size = (r.lognormal(10.8, 1.2) as usize).clamp(2_000, 3_000_000);
        match r.below(20) {
            0..=5 => binary_part(r, "application/pdf", &format!("Report-{}.pdf", 2015 + i % 10), size, false),
            6..=9 => {
                let name = format!("IMG_{:04}.jpg", r.below(10_000));
                binary_part(r, "image/jpeg", &name, size, false)
            }
            10..=11 => binary_part(r, "image/png", "screenshot.png", size / 2, false),
            12..=13 => binary_part(
                r,
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "Draft.docx",
                size / 2,
                false,
            ),
            14 => binary_part(r, "application/zip", "archive.zip", size, false),
            15..=16 => {
                let notes = self.prose(i.wrapping_add(1 << 40), Lang::En, 50 + r.below(400), &[]);
                let mut e = text_part(r, "plain", Cs::Utf8, &notes);
                e.fields
                    .extend_from_slice(b"Content-Disposition: attachment; filename=\"notes.txt\"\r\n");
                e
            }
            17..=18 => {
                let mut csv = String::from("date,account,amount,item\n");
                for _ in 0..10 + r.below(300) {
                    csv.push_str(&format!(
                        "2021-{:02}-{:02},{},{}.{:02},{}\n",
                        1 + r.below(12),
                        1 + r.below(28),
                        r.below(100_000),
                        r.below(5000),
                        r.below(100),
                        self.word(r)
                    ));
                }
                let mut e = text_part(r, "csv", Cs::Utf8, &csv);
                e.fields
                    .extend_from_slice(b"Content-Disposition: attachment; filename=\"figures.csv\"\r\n");
                e
            }
            _ => {
                // A forwarded message: an earlier one of the mailbox, whole
                // (its markers included, so only messages without any).
                let earlier = (0..i)
                    .rev()
                    .take(50)
                    .find(|&k| !MARKERS.iter().any(|m| self.carries(m, k)) && self.plan(k).kind != Kind::Mixed);
                match earlier {
                    Some(k) => Entity {
                        fields: b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"forwarded.eml\"\r\n".to_vec(),
                        body: self.message(k),
                    },
                    None => binary_part(r, "application/pdf", "scan.pdf", size, false),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

/// splitmix64's finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
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
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// exp(N(mu, sigma)).
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * normal).exp()
    }
}

fn token(r: &mut Rng, len: usize) -> String {
    (0..len).map(|_| TOKEN_ALPHABET[r.below(TOKEN_ALPHABET.len())] as char).collect()
}

/// Cumulative probabilities of ranks 0..n under Zipf-Mandelbrot,
/// p(k) ∝ 1 / (k + 1 + q)^s.
fn zipf(n: usize, s: f64, q: f64) -> Vec<f64> {
    let weights: Vec<f64> = (0..n).map(|k| 1.0 / (k as f64 + 1.0 + q).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Words and people
// ---------------------------------------------------------------------------

/// The most frequent words, in rough order of frequency in business mail.
const CORE: &str = "the to and of a in for is you on that this be with it we are have your i will at as or not \
    from by if can please thanks all me our an do be was has would any so let know us but there they what about \
    meeting today get just one more time new also should need here some my up out which when been were could like \
    next week tomorrow see team project report attached update now call email review back send sent help work \
    please information first regards best hi hello dear question questions issue check confirm available office \
    their them other into than then only very over after before good make made may these its how well year day \
    days month monday tuesday wednesday thursday friday following document documents file files draft version \
    schedule budget invoice payment order price contract client customer service support account data system \
    server access change changes note notes agenda discuss discussed plan planning share shared list group \
    sales market product products cost costs amount total number date time meeting minutes call conference room \
    travel trip hotel flight booking approve approved approval request requested required deadline end start \
    open close closed done complete completed status progress issue issues problem problems fix fixed test testing \
    release feature features design draft final comments feedback thank looking forward hope great sure yes no \
    people person manager director department company business office home working available appreciate asap \
    attached attachment link below above following reply forward message receive received let know kind \
    regards cheers morning afternoon evening weekend holiday vacation";

/// Syllables the made-up words are built of: no E, J, Q, X in onsets and
/// codas keeps most of them clear of marker words; the assertion in
/// [`Corpus::new`] checks the rest.
const ONSETS: [&str; 30] = [
    "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "br", "cr", "dr", "fr", "gr", "pr", "tr", "st", "sp", "ch", "sh",
    "th", "pl", "cl", "bl", "w",
];
const VOWELS: [&str; 9] = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee"];
const CODAS: [&str; 13] = ["", "n", "r", "s", "t", "l", "nd", "nt", "st", "rt", "ck", "ng", "m"];
const SUFFIXES: [&str; 10] = ["", "ing", "ed", "er", "s", "tion", "ly", "ment", "ness", "able"];

/// The vocabulary: the core words, then made-up words to 40,000.
fn vocabulary() -> Vec<String> {
    let mut seen = HashSet::new();
    let mut words: Vec<String> = Vec::with_capacity(40_000);
    for w in CORE.split_whitespace() {
        if seen.insert(w.to_string()) {
            words.push(w.to_string());
        }
    }
    let mut r = Rng::new(mix(0x0709_0c4b));
    while words.len() < 40_000 {
        let mut w = String::new();
        let syllables = match r.below(20) {
            0..=8 => 1,
            9..=17 => 2,
            _ => 3,
        };
        for _ in 0..syllables {
            w.push_str(ONSETS[r.below(ONSETS.len())]);
            w.push_str(VOWELS[r.below(VOWELS.len())]);
            w.push_str(CODAS[r.below(CODAS.len())]);
        }
        if r.chance(40) {
            w.push_str(SUFFIXES[r.below(SUFFIXES.len())]);
        }
        if w.len() >= 3 && !MARKERS.iter().any(|m| w.contains(m.word)) && seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// Words of other languages, mixed into their messages' text.
const FOREIGN: [(Lang, &[&str]); 4] = [
    (
        Lang::De,
        &[
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
            "Grüße",
            "Besprechung",
            "Straße",
            "Rückmeldung",
            "Tschüss",
            "bitte",
            "danke",
            "und",
            "nicht",
            "über",
        ],
    ),
    (
        Lang::Fr,
        &[
            "café", "naïve", "déjà", "réunion", "élève", "crème", "être", "très", "année", "reçu", "bientôt", "où", "merci", "bonjour",
            "août", "€", "œuvre", "Noël",
        ],
    ),
    (
        Lang::Ru,
        &[
            "отчёт",
            "встреча",
            "неделя",
            "проект",
            "бюджет",
            "команда",
            "Москва",
            "спасибо",
            "привет",
            "здравствуйте",
            "документ",
            "вопрос",
            "сегодня",
            "завтра",
            "пожалуйста",
        ],
    ),
    (
        Lang::Ja,
        &[
            "会議",
            "資料",
            "確認",
            "予算",
            "報告書",
            "週末",
            "検索",
            "新年度",
            "東京",
            "日本語",
            "です",
            "ください",
            "こんにちは",
            "山田太郎",
            "件",
            "中",
            "はい",
        ],
    ),
];

const FIRST: [&str; 32] = [
    "Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert",
    "Sybil", "Trent", "Victor", "Walter", "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Hannah", "Isaac", "Laura", "Martin", "Nora",
    "Oscar", "Paul",
];
const LAST: [&str; 40] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Martin",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Hill", "Green",
    "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Roberts", "Turner", "Phillips", "Campbell", "Parker", "Evans", "Edwards", "Collins",
];
const DOMAINS: [&str; 16] = [
    "example.com",
    "example.net",
    "example.org",
    "mail.example.de",
    "corp.example",
    "example.co.uk",
    "university.example.edu",
    "example.fr",
    "example.ru",
    "example.jp",
    "partner.example.com",
    "vendor.example",
    "bank.example",
    "shop.example",
    "example.io",
    "lists.example.org",
];
/// Display names that need encoded words, in the charset they are sent in.
const NON_ASCII_NAMES: [(&str, Cs, char); 8] = [
    ("Zoë Ångström", Cs::Utf8, 'Q'),
    ("François Lévesque", Cs::Latin1, 'Q'),
    ("Jürgen Groß", Cs::Latin1, 'Q'),
    ("Анна Петрова", Cs::Utf8, 'B'),
    ("Сергей Смирнов", Cs::Koi8r, 'B'),
    ("山田太郎", Cs::Iso2022jp, 'B'),
    ("“Smart” Quotes", Cs::Win1252, 'Q'),
    ("Chloé Dupré", Cs::Win1252, 'Q'),
];
/// The style sheet Outlook puts in the HTML of every message.
const OUTLOOK_STYLE: &str = "<meta name=\"Generator\" content=\"Microsoft Word 15 (filtered medium)\">\n<style><!--\n\
/* Font Definitions */\n@font-face\n\t{font-family:\"Cambria Math\";\n\tpanose-1:2 4 5 3 5 4 6 3 2 4;}\n\
@font-face\n\t{font-family:Calibri;\n\tpanose-1:2 15 5 2 2 2 4 3 2 4;}\n\
/* Style Definitions */\np.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;\n\tfont-size:11.0pt;\n\tfont-family:\"Calibri\",sans-serif;}\n\
a:link, span.MsoHyperlink\n\t{mso-style-priority:99;\n\tcolor:#0563C1;\n\ttext-decoration:underline;}\n\
span.EmailStyle17\n\t{mso-style-type:personal-compose;\n\tfont-family:\"Calibri\",sans-serif;\n\tcolor:windowtext;}\n\
.MsoChpDefault\n\t{mso-style-type:export-only;\n\tfont-family:\"Calibri\",sans-serif;}\n\
@page WordSection1\n\t{size:612.0pt 792.0pt;\n\tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}\n\
div.WordSection1\n\t{page:WordSection1;}\n--></style>\n";

const NEWSLETTERS: [&str; 6] = [
    "Example Weekly",
    "Shop Example Deals",
    "The Daily Brief",
    "Example Cloud Updates",
    "Travel Offers",
    "Community Digest",
];

fn newsletter_domain(k: usize) -> &'static str {
    [
        "weekly.example.com",
        "shop.example",
        "brief.example.net",
        "cloud.example.io",
        "travel.example",
        "lists.example.org",
    ][k % 6]
}

/// 3,000 correspondents, most frequent first.
fn people() -> Vec<(String, String)> {
    (0..3000)
        .map(|p| {
            let first = FIRST[p % FIRST.len()];
            let last = LAST[(p / FIRST.len() + p * 7) % LAST.len()];
            let domain = DOMAINS[(p * 13 + p / 7) % DOMAINS.len()];
            let addr = format!("{}.{}{}@{domain}", first.to_lowercase(), last.to_lowercase(), p / 1280);
            let name = match p % 23 {
                0 => String::new(),
                5 => {
                    let (n, cs, kind) = NON_ASCII_NAMES[(p / 23) % NON_ASCII_NAMES.len()];
                    ew(kind, cs, n)
                }
                7 => format!("\"{last}, {first}\""),
                _ => format!("{first} {last}"),
            };
            (name, addr)
        })
        .collect()
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const OFFSETS: [i64; 8] = [0, 60, 120, -300, -240, -480, 330, 540];
/// 2015-01-01 and ten years on.
const FIRST_DATE: i64 = 1_420_070_400;
const SPAN: i64 = 10 * 365 * 86_400;

/// Message `i`'s date: the mailbox in arrival order over ten years.
fn date_of(i: usize, n: usize) -> i64 {
    FIRST_DATE + (SPAN as f64 * i as f64 / n.max(1) as f64) as i64 + (mix(i as u64) % 3600) as i64
}

fn rfc5322(t: i64, offset: i64) -> String {
    let local = t + offset * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        offset.abs() / 60,
        offset.abs() % 60
    )
}

// ---------------------------------------------------------------------------
// Charsets and encodings
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cs {
    Ascii,
    Utf8,
    Latin1,
    Win1252,
    Koi8r,
    Iso2022jp,
    ShiftJis,
}

impl Cs {
    fn name(self) -> &'static str {
        match self {
            Cs::Ascii => "us-ascii",
            Cs::Utf8 => "UTF-8",
            Cs::Latin1 => "ISO-8859-1",
            Cs::Win1252 => "windows-1252",
            Cs::Koi8r => "KOI8-R",
            Cs::Iso2022jp => "ISO-2022-JP",
            Cs::ShiftJis => "Shift_JIS",
        }
    }
}

fn charset(lang: Lang, r: &mut Rng) -> Cs {
    match lang {
        Lang::En if r.chance(30) => Cs::Ascii,
        Lang::En => Cs::Utf8,
        Lang::De if r.chance(50) => Cs::Latin1,
        Lang::Fr if r.chance(50) => Cs::Win1252,
        Lang::Ru if r.chance(50) => Cs::Koi8r,
        Lang::Ja => [Cs::Iso2022jp, Cs::ShiftJis, Cs::Utf8][r.below(3)],
        _ => Cs::Utf8,
    }
}

/// windows-1252 0x80..0x9F (`\0` where undefined).
const WIN1252_HIGH: [char; 32] = [
    '€', '\0', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\0', 'Ž', '\0', '\0', '‘', '’', '“', '”', '•', '–', '—', '˜', '™',
    'š', '›', 'œ', '\0', 'ž', 'Ÿ',
];
/// KOI8-R 0xC0..0xFF.
const KOI8R_HIGH: &str = "юабцдефгхийклмнопярстужвьызшэщчъЮАБЦДЕФГХИЙКЛМНОПЯРСТУЖВЬЫЗШЭЩЧЪ";
/// JIS X 0208 codes of the kanji and kana used.
const JIS: [(char, u16); 43] = [
    ('で', 0x2447),
    ('す', 0x2439),
    ('。', 0x2123),
    ('し', 0x2437),
    ('て', 0x2446),
    ('く', 0x242f),
    ('だ', 0x2440),
    ('さ', 0x2435),
    ('い', 0x2424),
    ('日', 0x467c),
    ('本', 0x4b5c),
    ('語', 0x386c),
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

fn jis(c: char) -> Option<(u8, u8)> {
    let code = JIS.iter().find(|(k, _)| *k == c)?.1;
    Some(((code >> 8) as u8, code as u8))
}

/// `text` in `cs`; a character `cs` lacks becomes `?`.
fn encode(cs: Cs, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    match cs {
        Cs::Utf8 => out.extend_from_slice(text.as_bytes()),
        Cs::Ascii => out.extend(text.chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' })),
        Cs::Latin1 => out.extend(text.chars().map(|c| if (c as u32) < 0x100 { c as u32 as u8 } else { b'?' })),
        Cs::Win1252 => {
            for c in text.chars() {
                if let Some(i) = WIN1252_HIGH.iter().position(|&w| w == c && c != '\0') {
                    out.push(0x80 + i as u8);
                } else if (c as u32) < 0x100 && !(0x80..0xa0).contains(&(c as u32)) {
                    out.push(c as u32 as u8);
                } else {
                    out.push(b'?');
                }
            }
        }
        Cs::Koi8r => {
            for c in text.chars() {
                match c {
                    _ if c.is_ascii() => out.push(c as u8),
                    'ё' => out.push(0xa3),
                    'Ё' => out.push(0xb3),
                    _ => out.push(KOI8R_HIGH.chars().position(|k| k == c).map_or(b'?', |i| 0xc0 + i as u8)),
                }
            }
        }
        Cs::Iso2022jp => {
            let mut in_jis = false;
            for c in text.chars() {
                match jis(c) {
                    Some((a, b)) => {
                        if !in_jis {
                            out.extend_from_slice(b"\x1b$B");
                            in_jis = true;
                        }
                        out.extend_from_slice(&[a, b]);
                    }
                    None => {
                        if in_jis {
                            out.extend_from_slice(b"\x1b(B");
                            in_jis = false;
                        }
                        out.push(if c.is_ascii() { c as u8 } else { b'?' });
                    }
                }
            }
            if in_jis {
                out.extend_from_slice(b"\x1b(B");
            }
        }
        Cs::ShiftJis => {
            for c in text.chars() {
                match jis(c) {
                    Some((j1, j2)) => {
                        let s1 = ((j1 + 1) >> 1) + if j1 <= 0x5e { 0x70 } else { 0xb0 };
                        let s2 = if j1 % 2 == 1 {
                            j2 + if j2 >= 0x60 { 0x20 } else { 0x1f }
                        } else {
                            j2 + 0x7e
                        };
                        out.extend_from_slice(&[s1, s2]);
                    }
                    None => out.push(if c.is_ascii() { c as u8 } else { b'?' }),
                }
            }
        }
    }
    out
}

/// `text` (lines ending `\n`) in `cs`, lines ending CRLF (ISO-2022-JP
/// returns to ASCII before each line end, as `encode` line by line does).
fn text_bytes(cs: Cs, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 30);
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n');
        out.extend(encode(cs, bare.unwrap_or(line)));
        if bare.is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// RFC 2047 encoded words for `text` in `cs`, split into words of a legal
/// length on character boundaries, joined by folding white space.
fn ew(kind: char, cs: Cs, text: &str) -> String {
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
            'B' => encode(cs, chunk.as_str()).len() * 4 / 3,
            _ => q_encode(&encode(cs, chunk.as_str())).len(),
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

/// A header value folded before 78 columns where it has spaces (encoded
/// words are already folded).
fn fold(value: &str) -> String {
    if value.contains("\r\n") || value.len() < 70 {
        return value.to_string();
    }
    let mut out = String::new();
    let mut line = 9;
    for (k, w) in value.split(' ').enumerate() {
        if k > 0 {
            if line + 1 + w.len() > 76 {
                out.push_str("\r\n ");
                line = 1;
            } else {
                out.push(' ');
                line += 1;
            }
        }
        out.push_str(w);
        line += w.len();
    }
    out
}

/// Quoted-printable of CRLF-separated lines, soft breaks before 76.
fn qp_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 11 / 10);
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    for (n, raw) in lines.iter().enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let last_line = n + 1 == lines.len();
        if last_line && line.is_empty() {
            break;
        }
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            col += width;
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------
// MIME entities
// ---------------------------------------------------------------------------

/// A MIME entity: its Content-* fields and its body.
struct Entity {
    fields: Vec<u8>,
    body: Vec<u8>,
}

/// A text part of `subtype` in `cs`, with a transfer encoding fitting the
/// charset.
fn text_part(r: &mut Rng, subtype: &str, cs: Cs, text: &str) -> Entity {
    let bytes = text_bytes(cs, text);
    let ascii = bytes.is_ascii();
    let cte = match cs {
        Cs::Iso2022jp => "7bit",
        _ if ascii && r.chance(70) => "7bit",
        Cs::Koi8r | Cs::ShiftJis => {
            if r.chance(60) {
                "base64"
            } else {
                "8bit"
            }
        }
        _ => match r.below(10) {
            0..=4 => "quoted-printable",
            5..=6 => "base64",
            _ => "8bit",
        },
    };
    let body = match cte {
        "quoted-printable" => qp_encode(&bytes),
        "base64" => base64_lines(&bytes),
        _ => bytes,
    };
    // A line over 998 octets needs an encoding (long HTML lines).
    let (cte, body) = if cte != "base64" && cte != "quoted-printable" && body.split(|&b| b == b'\n').any(|l| l.len() > 990) {
        ("quoted-printable", qp_encode(&text_bytes(cs, text)))
    } else {
        (cte, body)
    };
    Entity {
        fields: format!(
            "Content-Type: text/{subtype}; charset=\"{}\"\r\nContent-Transfer-Encoding: {cte}\r\n",
            cs.name()
        )
        .into_bytes(),
        body,
    }
}

/// A base64 attachment (or an inline part) of `size` random bytes.
fn binary_part(r: &mut Rng, content_type: &str, name: &str, size: usize, inline: bool) -> Entity {
    let mut data = vec![0u8; size];
    for chunk in data.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let disposition = if inline {
        format!(
            "Content-Disposition: inline; filename=\"{name}\"\r\nContent-ID: <{}@example.com>\r\n",
            token(r, 16)
        )
    } else {
        format!("Content-Disposition: attachment; filename=\"{name}\"; size={size}\r\n")
    };
    Entity {
        fields: format!("Content-Type: {content_type}; name=\"{name}\"\r\n{disposition}Content-Transfer-Encoding: base64\r\n").into_bytes(),
        body: base64_lines(&data),
    }
}

fn multipart(r: &mut Rng, subtype: &str, parts: Vec<Entity>) -> Entity {
    let boundary = format!(
        "----=_Part_{}_{}.{}",
        r.below(1_000_000),
        r.below(1_000_000_000),
        r.below(1_000_000)
    );
    let mut body = Vec::new();
    if r.chance(40) {
        body.extend_from_slice(b"This is a multi-part message in MIME format.\r\n");
    }
    for part in parts {
        body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        body.extend_from_slice(&part.fields);
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.body.strip_suffix(b"\r\n").unwrap_or(&part.body));
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Entity {
        fields: format!("Content-Type: multipart/{subtype};\r\n boundary=\"{boundary}\"\r\n").into_bytes(),
        body,
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Text on lines of at most about 76 columns, `<br>` where it had line
/// ends.
fn wrap_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 10);
    let mut line = 0;
    for (k, l) in text.lines().enumerate() {
        if k > 0 {
            out.push_str("<br>\n");
            line = 0;
        }
        for w in l.split(' ') {
            if line > 0 && line + w.len() > 76 {
                out.push('\n');
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(w);
            line += w.len();
        }
    }
    out
}

/// A newsletter's HTML: a table layout with inline styles, images and a
/// tracking link in every block.
fn newsletter_html(r: &mut Rng, text: &str, domain: &str) -> String {
    let mut html = String::from(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n\
         <style type=\"text/css\">\nbody { margin: 0; padding: 0; } table { border-collapse: collapse; }\n\
         @media only screen and (max-width: 600px) { .wrapper { width: 100% !important; } .column { display: block !important; } }\n\
         </style>\n</head>\n<body style=\"margin:0;padding:0;background-color:#f4f4f4;\">\n\
         <table role=\"presentation\" class=\"wrapper\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" align=\"center\">\n",
    );
    for paragraph in text.split("\n\n") {
        let link = format!("https://click.{domain}/ls/click?upn={}", token(r, 90));
        let image = format!("https://img.{domain}/assets/{}/{}.png", token(r, 12), token(r, 20));
        html.push_str(&format!(
            "<tr>\n<td class=\"column\" style=\"padding:16px 24px;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#333333;\">\n\
             <img src=\"{image}\" width=\"552\" alt=\"\" style=\"display:block;border:0;\">\n<p style=\"margin:0 0 12px 0;\">{}</p>\n\
             <a href=\"{link}\" style=\"color:#1a73e8;text-decoration:underline;font-weight:bold;\" target=\"_blank\">Read more</a>\n</td>\n</tr>\n",
            wrap_html(&escape_html(paragraph))
        ));
    }
    html.push_str(&format!(
        "<tr><td style=\"padding:24px;font-size:11px;color:#999999;\">You receive this because you subscribed.\n\
         <a href=\"https://{domain}/unsubscribe?u={}\" style=\"color:#999999;\">Unsubscribe</a></td></tr>\n</table>\n\
         <img src=\"https://open.{domain}/o/{}.gif\" width=\"1\" height=\"1\" alt=\"\">\n</body>\n</html>\n",
        token(r, 32),
        token(r, 48)
    ));
    html
}

/// CRLF only, no NUL, no line over 998 octets.
fn well_formed(message: &[u8]) -> bool {
    let lines: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
    !message.contains(&0)
        && lines.last() == Some(&&b""[..])
        && lines[..lines.len() - 1]
            .iter()
            .all(|l| l.len() <= 999 && l.ends_with(b"\r") && !l[..l.len() - 1].contains(&b'\r'))
}
