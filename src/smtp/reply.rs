//! SMTP replies (RFC 5321 §4.2): what we send to clients and what we read
//! from upstream servers.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest reply line accepted from an upstream server.
const MAX_REPLY_LINE: usize = 4096;
/// The most lines in one upstream reply.
const MAX_REPLY_LINES: usize = 128;

/// A reply: a three-digit code and one or more text lines (the enhanced
/// status code, when there is one, is part of the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 200–599.
    pub code: u16,
    /// The text lines, without code or separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (more input expected).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: the client should retry later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The text on one line, for logs and composite messages.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The bytes on the wire, each line CRLF-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            return write!(f, "{}\r\n", self.code);
        }
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{}{}\r\n", self.code, sep, line)?;
        }
        Ok(())
    }
}

/// Why an upstream reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The connection closed.
    #[error("the server closed the connection")]
    Closed,
    /// Not an SMTP reply.
    #[error("malformed reply from the server: {0:?}")]
    Malformed(String),
    /// I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReplyError> {
    let mut lines = Vec::new();
    let mut code = None;
    loop {
        let mut raw = Vec::new();
        let n = (&mut *reader).take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut raw).await?;
        if n == 0 {
            return Err(ReplyError::Closed);
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let malformed = || ReplyError::Malformed(line.chars().take(80).collect());
        if !raw.ends_with(b"\n") || line.len() < 3 {
            return Err(malformed());
        }
        // Byte checks first: the text may hold any bytes (lossily decoded),
        // and slicing must stay on ASCII.
        let digits = line.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        let this: u16 = match line.get(..3) {
            Some(code) if digits => code.parse().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
            return Err(malformed());
        }
        code = Some(this);
        let (more, text) = match line.as_bytes().get(3) {
            None => (false, ""),
            Some(b' ') => (false, &line[4..]),
            Some(b'-') => (true, &line[4..]),
            Some(_) => return Err(malformed()),
        };
        lines.push(text.to_string());
        if !more {
            return Ok(Reply { code: this, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(malformed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &[u8]) -> Result<Reply, ReplyError> {
        let mut reader = tokio::io::BufReader::new(input);
        read_reply(&mut reader).await
    }

    #[tokio::test]
    async fn multi_line_replies() {
        let r = parse(b"250-mail.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n").await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mail.example", "PIPELINING", "SIZE 100"]);
        assert_eq!(r.to_string(), "250-mail.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
        assert_eq!(
            parse(b"354\r\n").await.unwrap(),
            Reply {
                code: 354,
                lines: vec![String::new()]
            }
        );
    }

    proptest::proptest! {
        /// Whatever a server sends, reading a reply ends with a reply or an
        /// error; nothing panics.
        #[test]
        fn any_server_bytes_end_cleanly(input in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let outcome = runtime.block_on(parse(&input));
            if let Ok(reply) = outcome {
                proptest::prop_assert!((200..600).contains(&reply.code));
            }
        }
    }

    #[tokio::test]
    async fn junk_is_refused() {
        for bad in [&b"hello\r\n"[..], b"250-a\r\n251 b\r\n", b"999 x\r\n", b"250", b"250x\r\n", b""] {
            assert!(parse(bad).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"250 ".as_slice(), &vec![b'a'; 5000], b"\r\n"].concat();
        assert!(parse(&long).await.is_err());
    }
}
