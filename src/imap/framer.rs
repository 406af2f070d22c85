//! Literal-aware IMAP framing (RFC 9051 §4.3, RFC 7888, RFC 3516).
//!
//! An IMAP command or response is one or more CRLF-terminated segments; a
//! segment that ends with a literal announcement (`{n}`, `{n+}` or `~{n}`
//! right before the CRLF; LITERAL- uses the `{n+}` form too, RFC 7888) is followed by exactly `n` octets of
//! literal data, then the next segment of the same message. The framer
//! finds those announcements (ignoring braces inside quoted strings) and
//! streams literal data without holding it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite};

/// How a literal was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    /// Octets that follow the segment.
    pub size: u64,
    /// `{n+}` (LITERAL+ / LITERAL-): the sender does not wait for a `+`
    /// continuation.
    pub non_synchronizing: bool,
    /// `~{n}` (BINARY): the data may contain NUL.
    pub binary: bool,
}

/// Why a stream could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A segment longer than the limit.
    #[error("line longer than {0} octets")]
    LineTooLong(usize),
    /// A literal announcement that is not a number (or too large).
    #[error("malformed literal announcement")]
    BadLiteral,
    /// More literals in one command or response than the proxy accepts.
    #[error("more than {0} lines and literals in one message")]
    TooManyParts(usize),
    /// A literal larger than the proxy accepts here.
    #[error("literal of {0} octets is over the limit")]
    LiteralTooLarge(u64),
    /// The peer closed the connection mid-message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The literal a complete segment (ending in CRLF or LF) announces, if
/// any. Braces inside a quoted string are not announcements.
pub fn announced_literal(segment: &[u8]) -> Result<Option<Literal>, FrameError> {
    let line = segment
        .strip_suffix(b"\r\n")
        .or_else(|| segment.strip_suffix(b"\n"))
        .unwrap_or(segment);
    if !line.ends_with(b"}") || ends_inside_quotes(line) {
        return Ok(None);
    }
    let open = match line.iter().rposition(|&b| b == b'{') {
        Some(i) => i,
        None => return Ok(None),
    };
    let mut inner = &line[open + 1..line.len() - 1];
    let non_synchronizing = inner.ends_with(b"+");
    if non_synchronizing {
        inner = &inner[..inner.len() - 1];
    }
    if inner.is_empty() || !inner.iter().all(u8::is_ascii_digit) || inner.len() > 19 {
        return Err(FrameError::BadLiteral);
    }
    let size = std::str::from_utf8(inner)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(FrameError::BadLiteral)?;
    Ok(Some(Literal {
        size,
        non_synchronizing,
        binary: open > 0 && line[open - 1] == b'~',
    }))
}

/// True when `line` ends inside an unterminated quoted string.
fn ends_inside_quotes(line: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &b in line {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => quoted = false,
            (false, _, b'"') => quoted = true,
            _ => {}
        }
    }
    quoted
}

/// Reads one segment (up to and including its LF, at most `max` octets)
/// into `out`, returning the literal it announces. `Ok(None)` with an
/// empty `out` means a clean end of stream.
pub async fn read_segment<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize, out: &mut Vec<u8>) -> Result<Option<Literal>, FrameError> {
    out.clear();
    let n = (&mut *reader).take(max as u64).read_until(b'\n', out).await?;
    if n == 0 {
        return Ok(None);
    }
    if !out.ends_with(b"\n") {
        return Err(if out.len() >= max {
            FrameError::LineTooLong(max)
        } else {
            FrameError::Truncated
        });
    }
    announced_literal(out)
}

/// Copies a literal of `size` octets from `reader` to `writer` in bounded
/// pieces. The caller flushes (so a literal and the line after it can
/// share a write).
pub async fn copy_literal<R, W>(reader: &mut R, size: u64, writer: &mut W) -> Result<(), FrameError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut (&mut *reader).take(size), writer).await?;
    if copied < size {
        return Err(FrameError::Truncated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(size: u64, non_synchronizing: bool, binary: bool) -> Option<Literal> {
        Some(Literal {
            size,
            non_synchronizing,
            binary,
        })
    }

    #[test]
    fn announcements_of_every_kind() {
        assert_eq!(announced_literal(b"A1 LOGIN {5}\r\n").unwrap(), literal(5, false, false));
        assert_eq!(
            announced_literal(b"A2 APPEND Drafts {310+}\r\n").unwrap(),
            literal(310, true, false)
        );
        assert!(announced_literal(b"A3 APPEND x {4-}\r\n").is_err(), "no such form in RFC 7888");
        assert_eq!(announced_literal(b"A4 APPEND x ~{12}\r\n").unwrap(), literal(12, false, true));
        assert_eq!(announced_literal(b"* 1 FETCH (BODY[] {0}\r\n").unwrap(), literal(0, false, false));
        assert_eq!(announced_literal(b"* 1 FETCH (UID 5)\r\n").unwrap(), None);
    }

    #[test]
    fn braces_that_are_not_announcements() {
        assert_eq!(
            announced_literal(b"A1 SEARCH SUBJECT \"{5}\r\n").unwrap(),
            None,
            "inside a quoted string"
        );
        assert_eq!(
            announced_literal(b"A1 SEARCH SUBJECT \"a\\\"{5}\r\n").unwrap(),
            None,
            "escaped quote"
        );
        assert_eq!(
            announced_literal(b"A1 SEARCH SUBJECT \"x\" {5}\r\n").unwrap(),
            literal(5, false, false)
        );
        assert_eq!(announced_literal(b"A1 NOOP {5} x\r\n").unwrap(), None, "not at the end");
        assert!(announced_literal(b"A1 X {5a}\r\n").is_err());
        assert!(announced_literal(b"A1 X {}\r\n").is_err());
        assert!(announced_literal(b"A1 X {99999999999999999999}\r\n").is_err());
    }

    #[tokio::test]
    async fn segments_and_literals_stream_through_unchanged() {
        let wire = b"A1 LOGIN {5}\r\nalice {3}\r\npw!\r\nA2 NOOP\r\n";
        let mut reader = tokio::io::BufReader::new(&wire[..]);
        let mut out = Vec::new();
        let mut copied = Vec::new();
        let mut segment = Vec::new();
        loop {
            let announced = read_segment(&mut reader, 1000, &mut segment).await.unwrap();
            if segment.is_empty() {
                break;
            }
            copied.extend_from_slice(&segment);
            if let Some(lit) = announced {
                copy_literal(&mut reader, lit.size, &mut out).await.unwrap();
                copied.extend_from_slice(&out);
                out.clear();
            }
        }
        assert_eq!(copied, wire.to_vec());
    }

    #[tokio::test]
    async fn limits_and_truncation() {
        let long = [vec![b'a'; 50], b"\r\n".to_vec()].concat();
        let mut reader = tokio::io::BufReader::new(&long[..]);
        assert!(matches!(
            read_segment(&mut reader, 10, &mut Vec::new()).await,
            Err(FrameError::LineTooLong(10))
        ));
        let mut reader = tokio::io::BufReader::new(&b"A1 X {10}\r\nshort"[..]);
        let lit = read_segment(&mut reader, 100, &mut Vec::new()).await.unwrap().unwrap();
        assert!(matches!(
            copy_literal(&mut reader, lit.size, &mut Vec::new()).await,
            Err(FrameError::Truncated)
        ));
    }

    proptest::proptest! {
        #[test]
        fn scanning_never_panics(segment in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = announced_literal(&segment);
        }

        #[test]
        fn announced_sizes_round_trip(prefix in "[A-Za-z0-9 ()\\[\\]]{0,40}", size in 0u64..u64::MAX / 2, plus in proptest::bool::ANY) {
            let segment = format!("{prefix} {{{size}{}}}\r\n", if plus { "+" } else { "" });
            let found = announced_literal(segment.as_bytes()).unwrap().unwrap();
            proptest::prop_assert_eq!(found.size, size);
            proptest::prop_assert_eq!(found.non_synchronizing, plus);
        }
    }
}
