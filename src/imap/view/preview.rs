//! `PREVIEW` (RFC 8970): up to 200 characters of the message's text, as a
//! client shows under the subject in a message list. RFC 8970 leaves the
//! text to the server (at most 256 characters, no markup); this follows
//! what Dovecot 2.3 answers, so that a client sees the same kind of
//! preview for encrypted and plain messages:
//!
//! - The text is the first text part, depth first, not looking inside
//!   attached messages (message/rfc822); in a multipart/alternative its
//!   text/plain alternative is preferred. A part without Content-Type is
//!   text/plain. Content-Type and Content-Transfer-Encoding are read even
//!   without MIME-Version (the first Content-Type and the last encoding
//!   field win). The first text part is taken even when it is empty.
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
//! charset only up to its first byte that is not UTF-8; it treats a
//! multipart/digest part without Content-Type as text (it is
//! message/rfc822, skipped here); its HTML reader differs in details of
//! markup this one does not model (unterminated tags, `<br>` inside
//! quoted lines).

use super::decode::{base64, quoted_printable, BadEscapes, Cte};
use super::header::unfolded_fields;
use super::part::FLAG_RFC822;
use super::rfc822::{rfc2231_parse, Rfc822};
use super::MessageView;

/// The longest preview, in characters (Dovecot's; RFC 8970 allows 256).
const PREVIEW_CHARS: usize = 200;

/// How a part's body is to be read, from its header.
struct Reading {
    cte: Cte,
    /// `type/subtype`, lower-cased; `None` without a usable Content-Type.
    content_type: Option<String>,
    charset: Option<Vec<u8>>,
}

impl Reading {
    fn is_text(&self) -> bool {
        self.content_type.as_deref().is_none_or(|ct| ct.starts_with("text/"))
    }

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
        let part = &self.parts[idx];
        let reading = self.reading(idx);
        let start = (part.pos + part.hdr_len).min(self.bytes.len());
        let body = &self.bytes[start..(start + part.body_len).min(self.bytes.len())];
        let decoded = match reading.cte {
            Cte::Identity => body.to_vec(),
            Cte::QuotedPrintable => quoted_printable(body, BadEscapes::Keep).unwrap_or_default(),
            Cte::Base64 => base64(body).0,
            Cte::Unknown => Vec::new(),
        };
        let text = to_utf8(&decoded, reading.charset.as_deref());
        if reading.content_type.as_deref() == Some("text/html") {
            snippet(&html_to_text(&text))
        } else {
            snippet(&text)
        }
    }

    /// The part whose text the preview shows, at or under `idx`.
    fn preview_part(&self, idx: usize) -> Option<usize> {
        let part = &self.parts[idx];
        if part.has(FLAG_RFC822) {
            return None;
        }
        if part.children.is_empty() {
            return self.reading(idx).is_text().then_some(idx);
        }
        let alternative = part
            .data
            .content_subtype
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(b"alternative"));
        let plain = || {
            part.children
                .iter()
                .copied()
                .find(|&c| self.parts[c].children.is_empty() && !self.parts[c].has(FLAG_RFC822) && self.reading(c).is_plain())
        };
        alternative
            .then(plain)
            .flatten()
            .or_else(|| part.children.iter().find_map(|&c| self.preview_part(c)))
    }

    /// How the body of part `idx` reads, from the fields of its header.
    fn reading(&self, idx: usize) -> Reading {
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
                if p.parse_content_type(&mut ct) >= 0 {
                    reading.content_type = Some(String::from_utf8_lossy(&ct).to_ascii_lowercase());
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

/// `bytes` in `charset` as UTF-8 text. US-ASCII, UTF-8 and charsets not
/// known are read as UTF-8, as Dovecot does; a run of bytes that do not
/// decode becomes a single U+FFFD.
fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let as_utf8 = |c: &[u8]| {
        [&b"us-ascii"[..], b"ascii", b"utf-8", b"utf8"]
            .iter()
            .any(|u| c.eq_ignore_ascii_case(u))
    };
    let decoder = charset
        .filter(|c| !as_utf8(c))
        .and_then(mail_parser::decoders::charsets::map::charset_decoder);
    let text = match decoder {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let repeated = c == char::REPLACEMENT_CHARACTER && out.ends_with(char::REPLACEMENT_CHARACTER);
        if !repeated && c != '\0' && c != '\u{feff}' {
            out.push(c);
        }
    }
    out
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
        let empty_first = multipart(
            "mixed",
            &["Content-Type: text/plain\r\n\r\n", "Content-Type: text/plain\r\n\r\nsecond"],
        );
        assert_eq!(preview(&empty_first), "");
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
