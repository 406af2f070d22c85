//! One complete IMAP command or response held as it arrived: its lines and
//! the literals between them (large literals spooled to disk), plus a
//! cursor that walks the IMAP value syntax across those pieces. Used only
//! for the messages the proxy must read whole (FETCH responses it may
//! rewrite, FETCH and APPEND commands); everything else streams.

use std::io::{Read, Write};
use std::path::Path;

use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::framer::{read_segment, FrameError, Literal};
use crate::spool::{Spool, DEFAULT_THRESHOLD};

/// A complete command or response.
pub struct Wire {
    /// Its pieces in order; only the last has no literal.
    pub parts: Vec<Part>,
}

/// One line (with its CRLF and any literal announcement) and the literal
/// that follows it.
pub struct Part {
    /// The line as received.
    pub line: Vec<u8>,
    /// The literal the line announces.
    pub literal: Option<Spool>,
}

/// How much one message may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Octets per line.
    pub line: usize,
    /// Octets per literal (checked before a synchronizing one is invited).
    pub literal: u64,
    /// Lines (each but the last followed by a literal).
    pub parts: usize,
}

/// Where to send `+` for synchronizing literals, when the sender waits for
/// one from us.
pub enum Continuations<'a, W> {
    /// The peer is a server or uses non-synchronizing literals only.
    None,
    /// Answer each synchronizing literal with `+` on this writer.
    Send(&'a tokio::sync::Mutex<W>),
}

impl Wire {
    /// Reads the rest of a message whose first line is `first` (which
    /// announced `literal`), within `limits`. Literals beyond the spool
    /// threshold go to files in `spool_dir`.
    pub async fn read<R, W>(
        reader: &mut R,
        first: Vec<u8>,
        mut literal: Option<Literal>,
        spool_dir: &Path,
        limits: Limits,
        mut continuations: Continuations<'_, W>,
    ) -> Result<Wire, FrameError>
    where
        R: AsyncBufRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut parts = Vec::new();
        let mut line = first;
        loop {
            let Some(announced) = literal else {
                parts.push(Part { line, literal: None });
                return Ok(Wire { parts });
            };
            if parts.len() + 1 >= limits.parts {
                return Err(FrameError::TooManyParts(limits.parts));
            }
            if announced.size > limits.literal {
                return Err(FrameError::LiteralTooLarge(announced.size));
            }
            if !announced.non_synchronizing {
                if let Continuations::Send(writer) = &mut continuations {
                    let mut w = writer.lock().await;
                    w.write_all(b"+ Ready for literal data\r\n").await?;
                    w.flush().await?;
                }
            }
            let mut spool = Spool::new(spool_dir, DEFAULT_THRESHOLD);
            let mut remaining = announced.size;
            let mut buf = vec![0u8; 64 * 1024];
            while remaining > 0 {
                let want = remaining.min(buf.len() as u64) as usize;
                let n = reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(FrameError::Truncated);
                }
                spool.write_all(&buf[..n])?;
                remaining -= n as u64;
            }
            parts.push(Part {
                line,
                literal: Some(spool),
            });
            let mut next = Vec::new();
            literal = read_segment(reader, limits.line, &mut next).await?;
            if next.is_empty() {
                return Err(FrameError::Truncated);
            }
            line = next;
        }
    }

    /// A message of one line.
    pub fn line(line: Vec<u8>) -> Wire {
        Wire {
            parts: vec![Part { line, literal: None }],
        }
    }

    /// The first line.
    pub fn first_line(&self) -> &[u8] {
        &self.parts[0].line
    }

    /// Writes the message exactly as it arrived.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, out: &mut W) -> std::io::Result<()> {
        self.write_span(Pos::START, self.end(), out).await
    }

    /// The position just past the last byte.
    pub fn end(&self) -> Pos {
        let last = self.parts.len() - 1;
        Pos {
            part: last,
            at: self.parts[last].line.len(),
        }
    }

    /// Writes the bytes from `from` to `to`, literals included.
    pub async fn write_span<W: AsyncWrite + Unpin>(&self, from: Pos, to: Pos, out: &mut W) -> std::io::Result<()> {
        let mut pos = from;
        while pos.part < to.part {
            let part = &self.parts[pos.part];
            out.write_all(&part.line[pos.at..]).await?;
            if let Some(literal) = &part.literal {
                write_spool(literal, out).await?;
            }
            pos = Pos { part: pos.part + 1, at: 0 };
        }
        out.write_all(&self.parts[to.part].line[pos.at..to.at]).await
    }

    /// The bytes from `from` to `to` in memory, exactly as on the wire.
    /// `None` when that would exceed `max` octets.
    pub fn bytes(&self, from: Pos, to: Pos, max: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos.part < to.part {
            let part = &self.parts[pos.part];
            out.extend_from_slice(&part.line[pos.at..]);
            if let Some(literal) = &part.literal {
                if out.len() as u64 + literal.len() > max as u64 {
                    return None;
                }
                out.extend_from_slice(&literal.to_vec().ok()?);
            }
            pos = Pos { part: pos.part + 1, at: 0 };
        }
        out.extend_from_slice(&self.parts[to.part].line[pos.at..to.at]);
        (out.len() <= max).then_some(out)
    }

    /// A cursor at the start.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            wire: self,
            pos: Pos::START,
        }
    }
}

async fn write_spool<W: AsyncWrite + Unpin>(spool: &Spool, out: &mut W) -> std::io::Result<()> {
    let mut reader = spool.reader_at(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).await?;
    }
}

/// A position in a [`Wire`]: a line and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Index of the part.
    pub part: usize,
    /// Offset in its line.
    pub at: usize,
}

impl Pos {
    /// The first byte.
    pub const START: Pos = Pos { part: 0, at: 0 };
}

/// A value found by [`Cursor::value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Its first byte.
    pub from: Pos,
    /// Just past its last byte.
    pub to: Pos,
}

/// Walks IMAP syntax (atoms, quoted strings, literals, lists) across the
/// parts of a [`Wire`]. It never looks past the end of a line except
/// through a literal.
#[derive(Clone)]
pub struct Cursor<'w> {
    wire: &'w Wire,
    /// Where it stands.
    pub pos: Pos,
}

impl<'w> Cursor<'w> {
    /// The current line without its line ending.
    fn line(&self) -> &'w [u8] {
        let line = &self.wire.parts[self.pos.part].line;
        line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line)
    }

    /// The next byte on this line, if any.
    pub fn peek(&self) -> Option<u8> {
        self.line().get(self.pos.at).copied()
    }

    /// Moves past `byte` if it is next.
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos.at += 1;
            true
        } else {
            false
        }
    }

    /// Skips spaces.
    pub fn skip_spaces(&mut self) {
        while self.eat(b' ') {}
    }

    /// True at the end of the line and of the message.
    pub fn at_end(&self) -> bool {
        self.pos.part + 1 == self.wire.parts.len() && self.peek().is_none()
    }

    /// Reads an atom-like token: everything up to a space, parenthesis or
    /// the end of the line, with bracketed parts (`BODY[HEADER.FIELDS (A
    /// B)]`) taken whole.
    pub fn token(&mut self) -> &'w [u8] {
        let line = self.line();
        let start = self.pos.at;
        let mut depth = 0usize;
        while let Some(&b) = line.get(self.pos.at) {
            match b {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' if depth == 0 => break,
                _ => {}
            }
            self.pos.at += 1;
        }
        &line[start..self.pos.at]
    }

    /// If a literal starts here (`{n}` or `{n+}` or `~{n}` ending the
    /// line, its data in the part), moves past it and returns the part
    /// index holding the data.
    fn literal(&mut self) -> Option<usize> {
        let line = self.line();
        let rest = &line[self.pos.at..];
        let rest = rest.strip_prefix(b"~").unwrap_or(rest);
        let inner = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
        let inner = inner.strip_suffix(b"+").unwrap_or(inner);
        if inner.is_empty() || !inner.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let part = self.pos.part;
        self.wire.parts[part].literal.as_ref()?;
        self.pos = Pos { part: part + 1, at: 0 };
        Some(part)
    }

    /// Moves past one value (atom, number, NIL, quoted string, literal or
    /// parenthesised list, nested to any depth up to 100) and returns its
    /// span. `None` on malformed input.
    pub fn value(&mut self) -> Option<Span> {
        let from = self.pos;
        self.skip_value(0)?;
        Some(Span { from, to: self.pos })
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > 100 {
            return None;
        }
        match self.peek()? {
            b'(' => {
                self.pos.at += 1;
                loop {
                    self.skip_spaces();
                    match self.peek()? {
                        b')' => {
                            self.pos.at += 1;
                            return Some(());
                        }
                        _ => self.skip_value(depth + 1)?,
                    }
                }
            }
            b'"' => self.quoted().map(|_| ()),
            b'{' | b'~' if self.literal().is_some() => Some(()),
            b')' => None,
            _ => (!self.token().is_empty()).then_some(()),
        }
    }

    /// Reads a quoted string, returning its unescaped content.
    pub fn quoted(&mut self) -> Option<Vec<u8>> {
        let line = self.line();
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        while let Some(&b) = line.get(self.pos.at) {
            self.pos.at += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(*line.get(self.pos.at)?);
                    self.pos.at += 1;
                }
                _ => out.push(b),
            }
        }
        None
    }

    /// Reads an astring (atom, quoted string or literal) and returns its
    /// content; literal contents up to `max` octets.
    pub fn astring(&mut self, max: usize) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' | b'~' => {
                let part = self.literal()?;
                let spool = self.wire.parts[part].literal.as_ref()?;
                if spool.len() > max as u64 {
                    return None;
                }
                spool.to_vec().ok()
            }
            _ => {
                let t = self.token();
                (!t.is_empty()).then(|| t.to_vec())
            }
        }
    }

    /// The literal data behind a span that is exactly one literal.
    pub fn literal_of(wire: &'w Wire, span: Span) -> Option<&'w Spool> {
        let mut c = Cursor { wire, pos: span.from };
        let part = c.literal()?;
        (c.pos == span.to).then(|| wire.parts[part].literal.as_ref()).flatten()
    }
}

/// Decodes an IMAP value held in memory (an item such as BODYSTRUCTURE,
/// literals inline as on the wire) into a tree, for the few places that
/// must understand one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NIL.
    Nil,
    /// An atom or number.
    Atom(Vec<u8>),
    /// A quoted string or literal.
    String(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Value>),
}

impl Value {
    /// Parses one value from `bytes`. `None` if malformed.
    pub fn parse(bytes: &[u8]) -> Option<Value> {
        let mut pos = 0;
        let value = parse_value(bytes, &mut pos, 0)?;
        Some(value)
    }

    /// The string or atom content, if this is one.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(s) | Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// True when this is a string or atom equal to `s`, ignoring ASCII case.
    pub fn is(&self, s: &str) -> bool {
        self.text().is_some_and(|t| t.eq_ignore_ascii_case(s.as_bytes()))
    }

    /// The list items, if this is a list.
    pub fn list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
}

fn parse_value(b: &[u8], pos: &mut usize, depth: usize) -> Option<Value> {
    if depth > 100 {
        return None;
    }
    while b.get(*pos) == Some(&b' ') {
        *pos += 1;
    }
    match *b.get(*pos)? {
        b'(' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                while b.get(*pos) == Some(&b' ') {
                    *pos += 1;
                }
                if *b.get(*pos)? == b')' {
                    *pos += 1;
                    return Some(Value::List(items));
                }
                items.push(parse_value(b, pos, depth + 1)?);
            }
        }
        b'"' => {
            *pos += 1;
            let mut out = Vec::new();
            loop {
                let c = *b.get(*pos)?;
                *pos += 1;
                match c {
                    b'"' => return Some(Value::String(out)),
                    b'\\' => {
                        out.push(*b.get(*pos)?);
                        *pos += 1;
                    }
                    _ => out.push(c),
                }
            }
        }
        b'{' | b'~' => {
            let open = b[*pos..].iter().position(|&c| c == b'{')? + *pos;
            let close = b[open..].iter().position(|&c| c == b'}')? + open;
            let digits = b[open + 1..close].strip_suffix(b"+").unwrap_or(&b[open + 1..close]);
            let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
            let mut start = close + 1;
            if b.get(start) == Some(&b'\r') {
                start += 1;
            }
            if b.get(start) != Some(&b'\n') {
                return None;
            }
            start += 1;
            let end = start.checked_add(n)?;
            let data = b.get(start..end)?.to_vec();
            *pos = end;
            Some(Value::String(data))
        }
        _ => {
            let start = *pos;
            while let Some(&c) = b.get(*pos) {
                if matches!(c, b' ' | b'(' | b')' | b'\r' | b'\n') {
                    break;
                }
                *pos += 1;
            }
            if start == *pos {
                return None;
            }
            let atom = &b[start..*pos];
            Some(if atom.eq_ignore_ascii_case(b"NIL") {
                Value::Nil
            } else {
                Value::Atom(atom.to_vec())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: Limits = Limits {
        line: 1 << 20,
        literal: u64::MAX,
        parts: usize::MAX,
    };

    async fn wire(bytes: &[u8]) -> Wire {
        let mut reader = tokio::io::BufReader::new(bytes);
        let mut first = Vec::new();
        let literal = read_segment(&mut reader, 1 << 20, &mut first).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        Wire::read::<_, Vec<u8>>(&mut reader, first, literal, dir.path(), UNLIMITED, Continuations::None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn spans_cross_literals_and_write_back_identically() {
        let raw = b"* 3 FETCH (UID 7 BODY[HEADER.FIELDS (A B)] {5}\r\nhello X-GM-LABELS (\\Inbox \"a b\") ENVELOPE (NIL {2}\r\nhi))\r\n";
        let w = wire(raw).await;
        assert_eq!(w.parts.len(), 3);
        let mut out = Vec::new();
        w.write_to(&mut out).await.unwrap();
        assert_eq!(out, raw);

        let mut c = w.cursor();
        assert_eq!(c.token(), b"*");
        c.skip_spaces();
        assert_eq!(c.token(), b"3");
        c.skip_spaces();
        assert_eq!(c.token(), b"FETCH");
        c.skip_spaces();
        assert!(c.eat(b'('));
        let mut items = Vec::new();
        loop {
            c.skip_spaces();
            if c.eat(b')') {
                break;
            }
            let name = c.token().to_vec();
            c.skip_spaces();
            let span = c.value().unwrap();
            items.push((name, w.bytes(span.from, span.to, 1000).unwrap()));
        }
        assert!(c.at_end());
        let names: Vec<&[u8]> = items.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"UID"[..], b"BODY[HEADER.FIELDS (A B)]", b"X-GM-LABELS", b"ENVELOPE"]);
        assert_eq!(items[1].1, b"{5}\r\nhello");
        assert_eq!(items[3].1, b"(NIL {2}\r\nhi)");
        let env = Value::parse(&items[3].1).unwrap();
        assert_eq!(env, Value::List(vec![Value::Nil, Value::String(b"hi".to_vec())]));
        let lit = Cursor::literal_of(&w, {
            let mut c = w.cursor();
            c.pos = Pos {
                part: 0,
                at: raw.iter().position(|&b| b == b'{').unwrap(),
            };
            c.value().unwrap()
        })
        .unwrap();
        assert_eq!(lit.to_vec().unwrap(), b"hello");
    }

    #[test]
    fn values_parse_and_reject_garbage() {
        let v = Value::parse(b"((\"text\" \"plain\" NIL) \"mixed\")").unwrap();
        let list = v.list().unwrap();
        assert!(list[1].is("MIXED"));
        assert!(Value::parse(b"(unclosed").is_none());
        assert!(Value::parse(b"{99}\r\nshort").is_none());
        assert!(Value::parse(&[b'('; 500]).is_none());
    }
}
