//! The arguments of SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4, ESEARCH
//! RFC 4731, SEARCHRES RFC 5182, CONDSTORE's MODSEQ, WITHIN, SAVEDATE,
//! OBJECTID) read into a [`Program`]: the criteria Sealpost evaluates
//! itself (those that read the message, [`Criterion`]) and the rest,
//! kept as the client wrote them for the server.
//!
//! A key this parser does not know is refused rather than passed on: its
//! arguments cannot be told from the next keys, and one of them could be
//! a search string that must not reach the server.

use super::view::from_charset;
use super::wire::{Cursor, Span, Wire};
use crate::search::normalize::normalize;
use crate::search::{search_day, Algorithm, Criterion, Field, SortCriterion, SortKey};

/// Longest search string read.
const MAX_STRING: usize = 64 * 1024;
/// Deepest nesting of parentheses, NOT and OR.
const MAX_DEPTH: usize = 64;

/// A SEARCH command's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// `RETURN (...)`: answer with ESEARCH (an empty list means ALL).
    pub returns: Option<Vec<Return>>,
    /// The keys, all of which must hold.
    pub keys: Vec<Key>,
}

/// An ESEARCH result option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
    /// `COUNT`.
    Count,
    /// `ALL`.
    All,
    /// `SAVE` (SEARCHRES): the server keeps the result as `$`.
    Save,
}

/// One search key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A criterion on the message's content, evaluated by Sealpost.
    Local(Criterion),
    /// A criterion the server evaluates (flags, dates of arrival, UIDs,
    /// sequence sets, `$`, MODSEQ...), as the client wrote it.
    Server(Vec<u8>),
    /// `NOT key`.
    Not(Box<Key>),
    /// `OR key key`.
    Or(Box<Key>, Box<Key>),
    /// `(key ...)`.
    And(Vec<Key>),
}

impl Key {
    /// True when no part of the key reads the message's content.
    pub fn server_only(&self) -> bool {
        match self {
            Key::Local(_) => false,
            Key::Server(_) => true,
            Key::Not(k) => k.server_only(),
            Key::Or(a, b) => a.server_only() && b.server_only(),
            Key::And(keys) => keys.iter().all(Key::server_only),
        }
    }

    /// The key as the server reads it (for a server-only key).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Key::Local(_) => unreachable!("local criteria never go to the server"),
            Key::Server(text) => out.extend_from_slice(text),
            Key::Not(k) => {
                out.extend_from_slice(b"NOT ");
                k.write(out);
            }
            Key::Or(a, b) => {
                out.extend_from_slice(b"OR ");
                a.write(out);
                out.push(b' ');
                b.write(out);
            }
            Key::And(keys) => {
                out.push(b'(');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    k.write(out);
                }
                out.push(b')');
            }
        }
    }

    /// True when the key (anywhere inside) is `MODSEQ`.
    pub fn has_modseq(&self) -> bool {
        match self {
            Key::Server(text) => text.len() >= 6 && text[..6].eq_ignore_ascii_case(b"MODSEQ"),
            Key::Local(_) => false,
            Key::Not(k) => k.has_modseq(),
            Key::Or(a, b) => a.has_modseq() || b.has_modseq(),
            Key::And(keys) => keys.iter().any(Key::has_modseq),
        }
    }
}

/// Why the arguments cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// Not SEARCH syntax.
    #[error("{0}")]
    Syntax(String),
    /// `CHARSET` names a charset Sealpost cannot read.
    #[error("unknown charset {0}")]
    BadCharset(String),
    /// A key that only the server could evaluate, which would show it
    /// what the user looks for (Gmail's `X-GM-RAW`).
    #[error("{0}")]
    Refused(String),
}

/// Reads the arguments of a SEARCH command starting at `cursor`.
pub fn parse(wire: &Wire, mut cursor: Cursor<'_>) -> Result<Program, ProgramError> {
    cursor.skip_spaces();
    let returns = returns(&mut cursor)?;
    let mut charset = None;
    if peek_word(&cursor, "CHARSET") {
        cursor.token();
        charset = Some(charset_name(&mut cursor)?);
    }
    keys(wire, cursor, returns, charset.flatten())
}

/// Reads the arguments of a SORT command: `[RETURN (...)] (criteria)
/// charset keys`.
pub fn parse_sort(wire: &Wire, mut cursor: Cursor<'_>) -> Result<(Vec<SortCriterion>, Program), ProgramError> {
    cursor.skip_spaces();
    let returns = returns(&mut cursor)?;
    if !cursor.eat(b'(') {
        return Err(syntax("SORT needs a list of sort criteria"));
    }
    let mut criteria: Vec<SortCriterion> = Vec::new();
    let mut reverse = false;
    loop {
        cursor.skip_spaces();
        if cursor.eat(b')') {
            break;
        }
        let word = String::from_utf8_lossy(cursor.token()).to_ascii_uppercase();
        let key = match word.as_str() {
            "REVERSE" => {
                reverse = true;
                continue;
            }
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            "" => return Err(syntax("unterminated sort criteria")),
            other => return Err(syntax(&format!("unknown sort criterion {other}"))),
        };
        // A repeated key changes nothing (Dovecot ignores it).
        if !criteria.iter().any(|c| c.key == key) {
            criteria.push(SortCriterion { key, reverse });
        }
        reverse = false;
    }
    if reverse || criteria.is_empty() {
        return Err(syntax("sort criteria must name a key (after any REVERSE)"));
    }
    let charset = charset_name(&mut cursor)?;
    Ok((criteria, keys(wire, cursor, returns, charset)?))
}

/// Reads the arguments of a THREAD command: `algorithm charset keys`.
pub fn parse_thread(wire: &Wire, mut cursor: Cursor<'_>) -> Result<(Algorithm, Program), ProgramError> {
    cursor.skip_spaces();
    let word = String::from_utf8_lossy(cursor.token()).to_ascii_uppercase();
    let algorithm = match word.as_str() {
        "ORDEREDSUBJECT" => Algorithm::OrderedSubject,
        "REFERENCES" => Algorithm::References,
        "REFS" => Algorithm::Refs,
        other => return Err(syntax(&format!("unknown threading algorithm {other}"))),
    };
    let charset = charset_name(&mut cursor)?;
    Ok((algorithm, keys(wire, cursor, None, charset)?))
}

/// `RETURN (...)`, if it comes next.
fn returns(cursor: &mut Cursor<'_>) -> Result<Option<Vec<Return>>, ProgramError> {
    if !peek_word(cursor, "RETURN") {
        return Ok(None);
    }
    cursor.token();
    cursor.skip_spaces();
    if !cursor.eat(b'(') {
        return Err(syntax("RETURN needs a list of options"));
    }
    let mut options = Vec::new();
    loop {
        cursor.skip_spaces();
        if cursor.eat(b')') {
            break;
        }
        let word = String::from_utf8_lossy(cursor.token()).to_ascii_uppercase();
        options.push(match word.as_str() {
            "MIN" => Return::Min,
            "MAX" => Return::Max,
            "COUNT" => Return::Count,
            "ALL" => Return::All,
            "SAVE" => Return::Save,
            "" => return Err(syntax("unterminated RETURN options")),
            other => return Err(syntax(&format!("unknown RETURN option {other}"))),
        });
    }
    cursor.skip_spaces();
    Ok(Some(options))
}

/// A charset name: `None` for UTF-8 and US-ASCII (nothing to convert),
/// the name for another one Sealpost reads.
fn charset_name(cursor: &mut Cursor<'_>) -> Result<Option<Vec<u8>>, ProgramError> {
    cursor.skip_spaces();
    let name = cursor.astring(256).ok_or_else(|| syntax("a charset name is missing"))?;
    cursor.skip_spaces();
    if ["UTF-8", "UTF8", "US-ASCII", "ASCII"]
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
    {
        return Ok(None);
    }
    if from_charset(b"", &name).is_none() {
        return Err(ProgramError::BadCharset(String::from_utf8_lossy(&name).into_owned()));
    }
    Ok(Some(name))
}

/// The search keys from `cursor` to the end.
fn keys(wire: &Wire, mut cursor: Cursor<'_>, returns: Option<Vec<Return>>, charset: Option<Vec<u8>>) -> Result<Program, ProgramError> {
    let parser = Parser { wire, charset };
    let mut keys = Vec::new();
    cursor.skip_spaces();
    while !cursor.at_end() {
        keys.push(parser.key(&mut cursor, 0)?);
        cursor.skip_spaces();
    }
    if keys.is_empty() {
        return Err(syntax("at least one search key is needed"));
    }
    Ok(Program { returns, keys })
}

fn syntax(text: &str) -> ProgramError {
    ProgramError::Syntax(text.to_string())
}

fn peek_word(cursor: &Cursor<'_>, word: &str) -> bool {
    let mut probe = cursor.clone();
    let token = probe.token();
    token.eq_ignore_ascii_case(word.as_bytes()) && matches!(probe.peek(), Some(b' '))
}

struct Parser<'w> {
    wire: &'w Wire,
    /// The charset of search strings, when not UTF-8.
    charset: Option<Vec<u8>>,
}

impl Parser<'_> {
    fn key(&self, c: &mut Cursor<'_>, depth: usize) -> Result<Key, ProgramError> {
        if depth > MAX_DEPTH {
            return Err(syntax("search keys nested too deeply"));
        }
        c.skip_spaces();
        if c.eat(b'(') {
            let mut keys = Vec::new();
            loop {
                c.skip_spaces();
                if c.eat(b')') {
                    break;
                }
                if c.at_end() {
                    return Err(syntax("unbalanced parentheses"));
                }
                keys.push(self.key(c, depth + 1)?);
            }
            if keys.is_empty() {
                return Err(syntax("empty parentheses"));
            }
            return Ok(Key::And(keys));
        }
        let start = c.pos;
        let word = c.token();
        if word.is_empty() {
            return Err(syntax("a search key is missing"));
        }
        if word[0].is_ascii_digit() || word[0] == b'*' || word[0] == b'$' {
            return Ok(Key::Server(word.to_vec()));
        }
        let name = String::from_utf8_lossy(word).to_ascii_uppercase();
        let field = |f: Field, s: &Self, c: &mut Cursor<'_>| s.string(c).map(|v| Key::Local(Criterion::Field(f, v)));
        match name.as_str() {
            "ALL" | "ANSWERED" | "DELETED" | "DRAFT" | "FLAGGED" | "NEW" | "OLD" | "RECENT" | "SEEN" | "UNANSWERED" | "UNDELETED"
            | "UNDRAFT" | "UNFLAGGED" | "UNSEEN" | "SAVEDATESUPPORTED" => Ok(Key::Server(word.to_vec())),
            "KEYWORD" | "UNKEYWORD" | "BEFORE" | "ON" | "SINCE" | "UID" | "OLDER" | "YOUNGER" | "SAVEDBEFORE" | "SAVEDON"
            | "SAVEDSINCE" | "EMAILID" | "THREADID" => {
                self.value(c)?;
                Ok(Key::Server(self.written(start, c)?))
            }
            "MODSEQ" => {
                c.skip_spaces();
                let entry = c.peek() == Some(b'"');
                self.value(c)?;
                if entry {
                    // entry-name entry-type mod-sequence
                    self.value(c)?;
                    self.value(c)?;
                }
                Ok(Key::Server(self.written(start, c)?))
            }
            "NOT" => Ok(Key::Not(Box::new(self.key(c, depth + 1)?))),
            "OR" => {
                let a = self.key(c, depth + 1)?;
                let b = self.key(c, depth + 1)?;
                Ok(Key::Or(Box::new(a), Box::new(b)))
            }
            "SUBJECT" => field(Field::Subject, self, c),
            "FROM" => field(Field::From, self, c),
            "TO" => field(Field::To, self, c),
            "CC" => field(Field::Cc, self, c),
            "BCC" => field(Field::Bcc, self, c),
            "BODY" => Ok(Key::Local(Criterion::Body(self.string(c)?))),
            "TEXT" => Ok(Key::Local(Criterion::Text(self.string(c)?))),
            "HEADER" => {
                c.skip_spaces();
                let header = c.astring(MAX_STRING).ok_or_else(|| syntax("HEADER needs a field name"))?;
                let value = self.string(c)?;
                Ok(Key::Local(Criterion::Header(normalize(&header), value)))
            }
            "LARGER" => Ok(Key::Local(Criterion::Larger(self.number(c)?))),
            "SMALLER" => Ok(Key::Local(Criterion::Smaller(self.number(c)?))),
            "SENTBEFORE" => Ok(Key::Local(Criterion::SentBefore(self.day(c)?))),
            "SENTON" => Ok(Key::Local(Criterion::SentOn(self.day(c)?))),
            "SENTSINCE" => Ok(Key::Local(Criterion::SentSince(self.day(c)?))),
            "X-GM-RAW" => Err(ProgramError::Refused(
                "Sealpost does not send X-GM-RAW searches to the server: it would see what you search for, and it holds only ciphertext; search with SUBJECT, BODY, TEXT..."
                    .into(),
            )),
            other => Err(syntax(&format!("unknown search key {other}"))),
        }
    }

    /// The next value (atom, quoted string or literal).
    fn value(&self, c: &mut Cursor<'_>) -> Result<Span, ProgramError> {
        c.skip_spaces();
        if c.at_end() || c.peek() == Some(b')') {
            return Err(syntax("a search key lacks its argument"));
        }
        c.value().ok_or_else(|| syntax("a search key's argument is malformed"))
    }

    /// What the client wrote from `start` to the cursor.
    fn written(&self, start: super::wire::Pos, c: &Cursor<'_>) -> Result<Vec<u8>, ProgramError> {
        self.wire
            .bytes(start, c.pos, MAX_STRING)
            .ok_or_else(|| syntax("a search key is too long"))
    }

    /// A search string in search form.
    fn string(&self, c: &mut Cursor<'_>) -> Result<String, ProgramError> {
        c.skip_spaces();
        let raw = c.astring(MAX_STRING).ok_or_else(|| syntax("a search key lacks its string"))?;
        Ok(match &self.charset {
            Some(charset) => normalize(from_charset(&raw, charset).unwrap_or_default().as_bytes()),
            None => normalize(&raw),
        })
    }

    fn number(&self, c: &mut Cursor<'_>) -> Result<u64, ProgramError> {
        c.skip_spaces();
        let token = c.token();
        std::str::from_utf8(token)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| syntax("LARGER and SMALLER need a number"))
    }

    fn day(&self, c: &mut Cursor<'_>) -> Result<i64, ProgramError> {
        c.skip_spaces();
        let text = c.astring(64).ok_or_else(|| syntax("a date is missing"))?;
        search_day(&text).ok_or_else(|| syntax("a date must be d-Mon-yyyy"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(args: &str) -> Result<Program, ProgramError> {
        let wire = Wire::line(format!("{args}\r\n").into_bytes());
        parse(&wire, wire.cursor())
    }

    fn server(text: &str) -> Key {
        Key::Server(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_content_and_server_keys_apart() {
        let p =
            program("RETURN (MIN COUNT) CHARSET UTF-8 UNDELETED OR SUBJECT \"Grüße\" FROM bob 1:5,7 UID 3:* (KEYWORD $x NOT LARGER 10)")
                .unwrap();
        assert_eq!(p.returns, Some(vec![Return::Min, Return::Count]));
        assert_eq!(
            p.keys,
            vec![
                server("UNDELETED"),
                Key::Or(
                    Box::new(Key::Local(Criterion::Field(Field::Subject, "GRU\u{308}ßE".into()))),
                    Box::new(Key::Local(Criterion::Field(Field::From, "BOB".into())))
                ),
                server("1:5,7"),
                server("UID 3:*"),
                Key::And(vec![server("KEYWORD $x"), Key::Not(Box::new(Key::Local(Criterion::Larger(10))))]),
            ]
        );
        let mut out = Vec::new();
        Key::And(vec![server("SEEN"), Key::Not(Box::new(server("UID 1:2")))]).write(&mut out);
        assert_eq!(out, b"(SEEN NOT UID 1:2)");
    }

    #[test]
    fn sort_and_thread_arguments() {
        let wire = Wire::line(b"RETURN (MIN) (REVERSE DATE subject DATE) UTF-8 SEEN\r\n".to_vec());
        let (criteria, p) = parse_sort(&wire, wire.cursor()).unwrap();
        assert_eq!(
            criteria,
            [
                SortCriterion {
                    key: SortKey::Date,
                    reverse: true
                },
                SortCriterion {
                    key: SortKey::Subject,
                    reverse: false
                }
            ]
        );
        assert_eq!(p.returns, Some(vec![Return::Min]));
        assert_eq!(p.keys, [server("SEEN")]);
        let wire = Wire::line(b"(DATE REVERSE) UTF-8 ALL\r\n".to_vec());
        assert!(parse_sort(&wire, wire.cursor()).is_err());
        let wire = Wire::line(b"(NOSUCHKEY) UTF-8 ALL\r\n".to_vec());
        assert!(parse_sort(&wire, wire.cursor()).is_err());
        let wire = Wire::line(b"refs US-ASCII SUBJECT x\r\n".to_vec());
        let (algorithm, p) = parse_thread(&wire, wire.cursor()).unwrap();
        assert_eq!(algorithm, Algorithm::Refs);
        assert_eq!(p.keys, [Key::Local(Criterion::Field(Field::Subject, "X".into()))]);
    }

    #[test]
    fn modseq_dates_and_charsets() {
        let p = program("MODSEQ \"/flags/\\\\seen\" all 620162338 SENTON 2-Jun-2020 HEADER X-Spam \"\"").unwrap();
        assert_eq!(p.keys[0], server("MODSEQ \"/flags/\\\\seen\" all 620162338"));
        assert!(p.keys[0].has_modseq());
        assert_eq!(p.keys[2], Key::Local(Criterion::Header("X-SPAM".into(), String::new())));
        let latin1 = Wire::line(b"CHARSET ISO-8859-1 BODY \"Gr\xfc\xdfe\"\r\n".to_vec());
        let p = parse(&latin1, latin1.cursor()).unwrap();
        assert_eq!(p.keys[0], Key::Local(Criterion::Body("GRU\u{308}ßE".into())));
        assert!(matches!(program("CHARSET X-NOPE BODY x"), Err(ProgramError::BadCharset(_))));
        assert!(matches!(program("FUZZY BODY x"), Err(ProgramError::Syntax(_))));
        assert!(matches!(program("SUBJECT"), Err(ProgramError::Syntax(_))));
        assert!(matches!(program("(SEEN"), Err(ProgramError::Syntax(_))));
        assert!(matches!(program("SENTON 2020-06-02"), Err(ProgramError::Syntax(_))));
    }
}
