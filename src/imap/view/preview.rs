//! `PREVIEW` (RFC 8970): up to 200 characters of the message's text, as a
//! client shows under the subject in a message list. RFC 8970 leaves the
//! text to the server (at most 256 characters, no markup); this follows
//! what Dovecot 2.3 answers, so that a client sees the same kind of
//! preview for encrypted and plain messages:
//!
//! - The text is the first text part, depth first, not looking inside
//!   attached messages (message/rfc822); of a multipart/alternative only
//!   the text parts directly in it count, text/plain first (a nested
//!   multipart alternative is passed over). A text part is one the MIME
//!   parser calls text (`text/...`, a bare `text`, no Content-Type); a
//!   part of a multipart/digest without Content-Type is taken as text
//!   too, as Dovecot's preview reads it. The body is then read by its
//!   own fields, even without MIME-Version (the first Content-Type and the
//!   last encoding field win): HTML, other `text/...` or no Content-Type
//!   give text, anything else (such as a bare `text`) gives an empty
//!   preview. The first text part is taken even when it is empty.
//! - The body is decoded forgivingly: base64 up to the first bad
//!   character, quoted-printable keeping a bad `=` as text; a body in an
//!   unknown encoding gives no text. It is converted to UTF-8 from its
//!   charset (unknown charsets are read as UTF-8; a run of bad bytes
//!   becomes one U+FFFD); NULs and byte-order marks are dropped.
//! - HTML becomes text: tags and comments go (each tag separates words),
//!   `<style>`, `<script>` and `<blockquote>` go with their content,
//!   character references are decoded and unknown ones dropped.
//! - Lines that start with `>` are quoted text and left out; when there is
//!   nothing else, the preview is `>` followed by the quoted text.
//! - Runs of white space (space, tab, CR, LF, VT, FF) become one space;
//!   leading and trailing white space goes.
//!
//! Where this differs from Dovecot 2.3.19 (edge cases, none of them in the
//! differential test's corpus): Dovecot reads a text part of an unknown
//! charset only up to its first byte that is not UTF-8; its HTML reader
//! differs in details of markup this one does not model (unterminated
//! tags, entities without `;`, a `>` after a tag at the start of a line).

use super::decode::{base64, quoted_printable, BadEscapes, Cte};
use super::header::unfolded_fields;
use super::part::{FLAG_RFC822, FLAG_TEXT};
use super::rfc822::{rfc2231_parse, Rfc822};
use super::MessageView;

/// The longest preview, in characters (Dovecot's; RFC 8970 allows 256).
const PREVIEW_CHARS: usize = 200;

/// How a part's body is to be read, from its header.
pub(super) struct Reading {
    cte: Cte,
    /// `type/subtype`, lower-cased, or what of it could be read; `None`
    /// without a Content-Type field.
    pub(super) content_type: Option<String>,
    charset: Option<Vec<u8>>,
}

impl Reading {
    fn is_plain(&self) -> bool {
        self.content_type.as_deref().is_none_or(|ct| ct == "text/plain")
    }
}

impl MessageView<'_> {
    /// The text of `PREVIEW`: at most 200 characters, empty when the
    /// message has no text part.
    pub fn preview(&self) -> String {
        let Some(idx) = self.preview_part(0) else {
            return String::new();
        };
        let reading = self.reading(idx);
        let html = match reading.content_type.as_deref() {
            Some("text/html") => true,
            Some(ct) if !ct.starts_with("text/") => return String::new(),
            _ => false,
        };
        let text = self.body_text(idx, &reading);
        if html {
            snippet(&html_to_text(&text))
        } else {
            snippet(&text)
        }
    }

    /// The body of part `idx` as text: its transfer encoding undone (an
    /// unknown one gives nothing, a broken one what decoded before the
    /// damage) and its charset read as Dovecot reads it.
    pub(super) fn body_text(&self, idx: usize, reading: &Reading) -> String {
        let part = &self.parts[idx];
        let start = (part.pos + part.hdr_len).min(self.bytes.len());
        let body = &self.bytes[start..(start + part.body_len).min(self.bytes.len())];
        let decoded = match reading.cte {
            Cte::Identity => body.to_vec(),
            Cte::QuotedPrintable => quoted_printable(body, BadEscapes::Keep).unwrap_or_default(),
            Cte::Base64 => base64(body).0,
            Cte::Unknown => Vec::new(),
        };
        to_utf8(&decoded, reading.charset.as_deref())
    }

    /// The part whose text the preview shows, at or under `idx`.
    fn preview_part(&self, idx: usize) -> Option<usize> {
        let part = &self.parts[idx];
        if part.has(FLAG_RFC822) {
            // A digest's part is a message only by default.
            return self.reading(idx).content_type.is_none().then_some(idx);
        }
        if part.children.is_empty() {
            return part.has(FLAG_TEXT).then_some(idx);
        }
        let alternative = part
            .data
            .content_subtype
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(b"alternative"));
        if !alternative {
            return part.children.iter().find_map(|&c| self.preview_part(c));
        }
        // Of the alternatives only text parts count, text/plain first;
        // nested multiparts are passed over.
        let texts: Vec<usize> = part
            .children
            .iter()
            .copied()
            .filter(|&c| self.parts[c].children.is_empty() && self.parts[c].has(FLAG_TEXT))
            .collect();
        texts
            .iter()
            .copied()
            .find(|&c| self.reading(c).is_plain())
            .or(texts.first().copied())
    }

    /// How the body of part `idx` reads, from the fields of its header.
    pub(super) fn reading(&self, idx: usize) -> Reading {
        let mut reading = Reading {
            cte: Cte::Identity,
            content_type: None,
            charset: None,
        };
        let mut seen_type = false;
        for (name, value) in unfolded_fields(&self.bytes, self.parts[idx].pos) {
            if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
                reading.cte = Cte::parse(&value);
            } else if name.eq_ignore_ascii_case(b"Content-Type") && !seen_type {
                seen_type = true;
                let mut p = Rfc822::new(&value);
                p.skip_lwsp();
                let mut ct = Vec::new();
                let parsed = p.parse_content_type(&mut ct) >= 0;
                reading.content_type = Some(String::from_utf8_lossy(&ct).to_ascii_lowercase());
                if parsed {
                    reading.charset = rfc2231_parse(&mut p)
                        .into_iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
                        .map(|(_, v)| v);
                }
            }
        }
        reading
    }
}

/// `bytes` in `charset` as UTF-8 text, as Dovecot's iconv-based reading
/// gives it: US-ASCII, UTF-8 and charsets not known are read as UTF-8
/// (a multi-byte sequence cut short at the end is dropped, as Dovecot
/// waits for its end), ISO-8859-1 byte for byte (not as Windows-1252), a
/// run of bytes that do not decode becomes a single U+FFFD.
pub(super) fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let text = charset
        .and_then(|c| from_charset(bytes, c))
        .unwrap_or_else(|| String::from_utf8_lossy(without_cut_sequence(bytes)).into_owned());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let repeated = c == char::REPLACEMENT_CHARACTER && out.ends_with(char::REPLACEMENT_CHARACTER);
        if !repeated && c != '\0' && c != '\u{feff}' {
            out.push(c);
        }
    }
    out
}

/// `bytes` in `charset` converted to UTF-8; `None` when the charset is
/// UTF-8 or US-ASCII (nothing to convert) or not known.
pub fn from_charset(bytes: &[u8], charset: &[u8]) -> Option<String> {
    let named = |names: &[&str]| names.iter().any(|n| charset.eq_ignore_ascii_case(n.as_bytes()));
    if named(&["iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1"]) {
        return Some(bytes.iter().map(|&b| char::from(b)).collect());
    }
    if named(&["us-ascii", "ascii", "utf-8", "utf8"]) {
        return None;
    }
    mail_parser::decoders::charsets::map::charset_decoder(charset).map(|decode| decode(bytes))
}

/// `bytes` without a UTF-8 sequence that its last bytes start but do not
/// finish (and whatever follows its lead byte).
fn without_cut_sequence(bytes: &[u8]) -> &[u8] {
    let tail = bytes.len().saturating_sub(3);
    let Some(lead) = (tail..bytes.len()).rev().find(|&i| (0xc0..0xf8).contains(&bytes[i])) else {
        return bytes;
    };
    let needs = match bytes[lead] {
        0xf0..0xf8 => 4,
        0xe0.. => 3,
        _ => 2,
    };
    if lead + needs > bytes.len() {
        &bytes[..lead]
    } else {
        bytes
    }
}

/// HTML as text: tags and comments become line breaks, `<style>`,
/// `<script>` and `<blockquote>` elements go with their content, character
/// references are decoded (unknown ones dropped, a `&` without `;` too).
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut quoted = 0usize;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            rest = match rest.strip_prefix("<!--") {
                Some(comment) => comment.find("-->").map_or("", |end| &comment[end + 3..]),
                None => skip_tag(rest, &mut quoted),
            };
            out.push('\n');
        } else if c == '&' {
            let name_len = rest[1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
                .take(32)
                .count();
            if rest[1 + name_len..].starts_with(';') {
                if quoted == 0 {
                    push_reference(&mut out, &rest[..name_len + 2]);
                }
                rest = &rest[name_len + 2..];
            } else {
                rest = &rest[1..];
            }
        } else {
            if quoted == 0 {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// What follows the tag at the start of `html` (and, for `<style>` and
/// `<script>`, its content and end tag); counts `<blockquote>` nesting.
fn skip_tag<'h>(html: &'h str, quoted: &mut usize) -> &'h str {
    let Some(end) = html.find('>') else { return "" };
    let tag = &html[1..end];
    let closing = tag.starts_with('/');
    let name: String = tag
        .trim_start_matches('/')
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let rest = &html[end + 1..];
    match name.as_str() {
        "blockquote" if closing => *quoted = quoted.saturating_sub(1),
        "blockquote" => *quoted += 1,
        "style" | "script" if !closing => {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            return match lower.find(&close) {
                Some(at) => rest[at..].find('>').map_or("", |gt| &rest[at + gt + 1..]),
                None => "",
            };
        }
        _ => {}
    }
    rest
}

/// Appends what the character reference `&...;` stands for; nothing for
/// one that is not known.
fn push_reference(out: &mut String, reference: &str) {
    let mut decoded = String::new();
    mail_parser::decoders::html::add_html_token(&mut decoded, reference.as_bytes(), false);
    // mail-parser gives an unknown reference back as it is.
    if decoded != reference {
        out.push_str(&decoded);
    }
}

/// Up to [`PREVIEW_CHARS`] characters of `text` with white space runs made
/// single spaces and quoted lines (starting with `>`) left out.
fn snippet(text: &str) -> String {
    let mut own = Collector::new(PREVIEW_CHARS);
    let mut quoted = Collector::new(PREVIEW_CHARS - 1);
    let (mut line_start, mut in_quote) = (true, false);
    for c in text.chars() {
        if own.full {
            break;
        }
        if line_start && c == '>' {
            in_quote = true;
            line_start = false;
            continue;
        }
        line_start = c == '\n';
        if line_start {
            in_quote = false;
            own.space();
            quoted.space();
            continue;
        }
        let target = if in_quote { &mut quoted } else { &mut own };
        if c == '\0' {
            // A NUL character reference in HTML: nothing to show.
        } else if matches!(c, ' ' | '\t' | '\r' | '\u{b}' | '\u{c}') {
            target.space();
        } else {
            target.push(c);
        }
    }
    if own.text.is_empty() && !quoted.text.is_empty() {
        format!(">{}", quoted.text)
    } else {
        own.text
    }
}

/// Text gathered up to a number of characters, white space collapsed.
struct Collector {
    text: String,
    chars: usize,
    limit: usize,
    /// White space was seen since the last character.
    space: bool,
    /// The next character did not fit: nothing more is taken.
    full: bool,
}

impl Collector {
    fn new(limit: usize) -> Collector {
        Collector {
            text: String::new(),
            chars: 0,
            limit,
            space: false,
            full: false,
        }
    }

    fn space(&mut self) {
        self.space = true;
    }

    fn push(&mut self, c: char) {
        let space = self.space && self.chars > 0;
        if self.full || self.chars + usize::from(space) + 1 > self.limit {
            self.full = true;
            return;
        }
        if space {
            self.text.push(' ');
            self.chars += 1;
        }
        self.text.push(c);
        self.chars += 1;
        self.space = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(content_type: &str, cte: &str, body: &[u8]) -> Vec<u8> {
        let mut m = format!("MIME-Version: 1.0\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").into_bytes();
        m.extend_from_slice(body);
        m
    }

    fn preview(message: &[u8]) -> String {
        MessageView::parse(message).preview()
    }

    fn multipart(subtype: &str, parts: &[&str]) -> Vec<u8> {
        let mut m = format!("MIME-Version: 1.0\r\nContent-Type: multipart/{subtype}; boundary=a\r\n\r\n");
        for p in parts {
            m.push_str(&format!("--a\r\n{p}\r\n"));
        }
        m.push_str("--a--\r\n");
        m.into_bytes()
    }

    #[test]
    fn text_as_dovecot_previews_it() {
        assert_eq!(
            preview(&leaf("text/plain", "7bit", b"   \r\n  hello  world \r\n\t x")),
            "hello world x"
        );
        assert_eq!(
            preview(&leaf(
                "text/plain",
                "7bit",
                b"> quoted line\r\n>> more\r\nreply here\r\n > not quote\r\n"
            )),
            "reply here > not quote"
        );
        assert_eq!(preview(&leaf("text/plain", "7bit", b"> a\r\n> > b\r\n>c\r\n")), ">a > b c");
        assert_eq!(preview(&leaf("text/plain", "7bit", b"a\tb\x0bc\x0cd\0e")), "a b c de");
        assert_eq!(
            preview(&leaf("text/plain", "quoted-printable", b"Gr=C3=BC=C3=9Fe=\r\n soft\r\nline")),
            "Grüße soft line"
        );
        assert_eq!(preview(&leaf("text/plain", "base64", b"aGVs bG8gd29y!bGQ=")), "hello wor");
        assert_eq!(preview(&leaf("text/plain", "quoted-printable", b"a=ZZb=41")), "a=ZZbA");
        assert_eq!(preview(&leaf("text/plain", "x-uue", b"text")), "");
        assert_eq!(preview(&leaf("text/plain; charset=iso-8859-1", "8bit", b"Gr\xfc\xdfe")), "Grüße");
        assert_eq!(preview(&leaf("text/plain; charset=utf-8", "8bit", b"a\xff\xfeb")), "a\u{fffd}b");
        assert_eq!(
            preview(&leaf("text/plain; charset=utf-8", "8bit", b"a\x89\x9e\xb5\xecm")),
            "a\u{fffd}",
            "a cut sequence at the end"
        );
        assert_eq!(
            preview(&leaf("text/plain; charset=ISO-8859-1", "8bit", b"\x9f\xe4")),
            "\u{9f}\u{e4}"
        );
        assert_eq!(preview(&leaf("text/plain; charset=windows-1252", "8bit", b"\x9f")), "\u{178}");
        assert_eq!(
            preview(&leaf("text/plain; charset=ISO-2022-JP", "7bit", b"\x1b$B$3$s$K$A$O\x1b(B")),
            "こんにちは"
        );
        assert_eq!(
            preview(b"Content-Transfer-Encoding: base64\r\nSubject: x\r\n\r\naGVsbG8=\r\n"),
            "hello"
        );
        assert_eq!(preview(&leaf("application/pdf", "7bit", b"%PDF")), "");
    }

    #[test]
    fn at_most_200_characters_without_a_trailing_space() {
        let long = |body: Vec<u8>| preview(&leaf("text/plain", "7bit", &body)).chars().count();
        assert_eq!(long([b"x".repeat(199), b" yz".to_vec()].concat()), 199);
        assert_eq!(long([b"x".repeat(198), b" yz".to_vec()].concat()), 200);
        assert_eq!(long("ä".repeat(300).into_bytes()), 200);
    }

    #[test]
    fn which_part() {
        let alt = multipart(
            "alternative",
            &[
                "Content-Type: text/html\r\n\r\n<p>html</p>",
                "Content-Type: text/plain\r\n\r\nplain",
            ],
        );
        assert_eq!(preview(&alt), "plain");
        let mixed = multipart(
            "mixed",
            &[
                "Content-Type: text/html\r\n\r\n<p>html</p>",
                "Content-Type: text/plain\r\n\r\nplain",
            ],
        );
        assert_eq!(preview(&mixed), "html");
        let attached = multipart(
            "mixed",
            &[
                "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner",
                "Content-Type: application/pdf\r\n\r\nx",
                "\r\nouter",
            ],
        );
        assert_eq!(preview(&attached), "outer");
        let nested = multipart(
            "alternative",
            &["Content-Type: multipart/signed; boundary=b\r\n\r\n--b\r\n\r\nsigned\r\n--b--"],
        );
        assert_eq!(preview(&nested), "", "a nested multipart alternative is passed over");
        let empty_first = multipart(
            "mixed",
            &["Content-Type: text/plain\r\n\r\n", "Content-Type: text/plain\r\n\r\nsecond"],
        );
        assert_eq!(preview(&empty_first), "");
        let broken = multipart(
            "mixed",
            &["Content-Type: text/plain garbage\r\n\r\na", "Content-Type: text/plain\r\n\r\nb"],
        );
        assert_eq!(preview(&broken), "b", "not text to the MIME parser: skipped");
        let bare = multipart("mixed", &["Content-Type: text\r\n\r\na", "Content-Type: text/plain\r\n\r\nb"]);
        assert_eq!(preview(&bare), "", "text to the MIME parser, but not to the body reader");
        let digest = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n";
        assert_eq!(preview(digest), "Subject: one first");
    }

    #[test]
    fn html_as_text() {
        let html = |s: &str| preview(&leaf("text/html", "7bit", s.as_bytes()));
        assert_eq!(
            html("<html><head><style>x{}</style><title>T</title></head><body><p>Hello &amp; <b>world</b>&nbsp;&lt;x&gt; &#228;&euro;</p><blockquote>q</blockquote>after<br>line<script>s()</script></body></html>"),
            "T Hello & world \u{a0}<x> ä€ after line"
        );
        assert_eq!(
            html("a&nbsp;&nbsp;b &unknown; &#x41; &amp;amp; <!-- c --> d<img alt=x>e"),
            "a\u{a0}\u{a0}b A &amp; d e"
        );
        assert_eq!(html("a &amp b &#9; c &#0; d &#xZZ; e"), "a amp b c d e");
        assert_eq!(html("a<blockquote>b<blockquote>c</blockquote>d</blockquote>e"), "a e");
        assert_eq!(html("a < b > c"), "a c");
        assert_eq!(html("<p>&gt; not quoted</p>\r\n> raw gt"), ">not quoted raw gt");
    }
}
