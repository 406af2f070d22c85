//! Bounded reading of command lines and message data, and dot-stuffing for
//! sending. A client can never make Sealpost hold more than the configured
//! message size, nor one unbounded line.

use std::io::Write;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

use crate::spool::Spool;

/// How message data is read in pieces.
const DATA_CHUNK: u64 = 64 * 1024;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Longer than allowed; the rest of the line was discarded.
    #[error("line too long")]
    TooLong,
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line of at most `max` octets (line ending excluded) and
/// returns it without the line ending. An over-long line is consumed to its
/// end and reported as [`ReadError::TooLong`], so the session can answer
/// and go on.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let n = (&mut *reader).take(max as u64 + 2).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if !line.ends_with(b"\n") {
        if line.len() < max + 2 {
            return Err(ReadError::Closed); // EOF in the middle of a line
        }
        let mut discard = Vec::new();
        loop {
            discard.clear();
            let n = (&mut *reader).take(DATA_CHUNK).read_until(b'\n', &mut discard).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            if discard.ends_with(b"\n") {
                return Err(ReadError::TooLong);
            }
        }
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    if line.len() > max {
        return Err(ReadError::TooLong);
    }
    Ok(line)
}

/// How a message transfer ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// The whole message is in the buffer.
    Complete,
    /// It exceeded the limit; the data was read and dropped.
    TooLarge,
}

/// Reads DATA content up to the terminating `.` line, undoing dot-stuffing
/// (RFC 5321 §4.5.2), into `out`. Beyond `max` octets the rest is read and
/// dropped, so the client hears a 552 instead of a broken connection.
pub async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R, max: u64, out: &mut Spool) -> Result<DataEnd, ReadError> {
    let mut at_line_start = true;
    let mut too_large = false;
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        let n = (&mut *reader).take(DATA_CHUNK).read_until(b'\n', &mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let mut piece = &chunk[..];
        if at_line_start {
            if piece == b".\r\n" || piece == b".\n" {
                return Ok(if too_large { DataEnd::TooLarge } else { DataEnd::Complete });
            }
            if piece.starts_with(b".") {
                piece = &piece[1..];
            }
        }
        at_line_start = chunk.ends_with(b"\n");
        if !too_large {
            if out.len() + piece.len() as u64 > max {
                too_large = true;
                out.clear();
            } else {
                out.write_all(piece)?;
            }
        }
    }
}

/// Reads one BDAT chunk of exactly `size` octets, appending to `out`
/// unless that would pass `max` (then the octets are read and dropped).
pub async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, size: u64, max: u64, out: &mut Spool) -> Result<DataEnd, ReadError> {
    let fits = out.len() + size <= max;
    let mut remaining = size;
    let mut buf = vec![0u8; DATA_CHUNK.min(size.max(1)) as usize];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = reader.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        if fits {
            out.write_all(&buf[..n])?;
        }
        remaining -= n as u64;
    }
    if fits {
        Ok(DataEnd::Complete)
    } else {
        out.clear();
        Ok(DataEnd::TooLarge)
    }
}

/// Dot-stuffing (RFC 5321 §4.5.2) applied chunk by chunk, so a spooled
/// message goes out without being loaded whole.
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    ends_with_crlf: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            ends_with_crlf: false,
        }
    }
}

impl DotStuffer {
    /// Appends `chunk` to `out`, doubling dots that start a line.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.ends_with_crlf = b == b'\n' && (out.len() >= 2 && out[out.len() - 2] == b'\r');
            self.at_line_start = b == b'\n';
        }
        if !chunk.is_empty() && !chunk.ends_with(b"\n") {
            self.ends_with_crlf = false;
        }
    }

    /// The end: a final line ending if the message lacked one, then the
    /// terminating `.` line.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.ends_with_crlf {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The whole message as DATA content (for small messages and tests).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut stuffer = DotStuffer::default();
    stuffer.push(message, &mut out);
    stuffer.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_recoverable() {
        let input = [b"EHLO x\r\n".as_slice(), &vec![b'a'; 2000], b"\r\nNOOP\r\n"].concat();
        let mut r = tokio::io::BufReader::new(&input[..]);
        assert_eq!(read_line(&mut r, 1000).await.unwrap(), b"EHLO x");
        assert!(matches!(read_line(&mut r, 1000).await, Err(ReadError::TooLong)));
        assert_eq!(read_line(&mut r, 1000).await.unwrap(), b"NOOP");
        assert!(matches!(read_line(&mut r, 1000).await, Err(ReadError::Closed)));
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), 16);
        (dir, spool)
    }

    #[test]
    fn stuffing_in_chunks_equals_stuffing_at_once() {
        let message = b"a\r\n.b\r\n..c\r\nend";
        for split in 0..message.len() {
            let mut out = Vec::new();
            let mut stuffer = DotStuffer::default();
            stuffer.push(&message[..split], &mut out);
            stuffer.push(&message[split..], &mut out);
            stuffer.finish(&mut out);
            assert_eq!(out, dot_stuff(message), "split at {split}");
        }
        assert_eq!(dot_stuff(b"x\r\n"), b"x\r\n.\r\n".to_vec());
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_round_trips_with_dot_stuff() {
        let message = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nend\r\n";
        let wire = dot_stuff(message);
        assert_eq!(wire, b"Subject: x\r\n\r\n..leading dot\r\n...two\r\nend\r\n.\r\n".to_vec());
        let mut r = tokio::io::BufReader::new(&wire[..]);
        let (_d, mut out) = spool();
        assert_eq!(read_data(&mut r, 1000, &mut out).await.unwrap(), DataEnd::Complete);
        assert!(out.on_disk(), "past the threshold the data is on disk");
        assert_eq!(out.to_vec().unwrap(), message.to_vec());
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n".to_vec());
    }

    #[tokio::test]
    async fn oversized_data_is_drained_then_refused() {
        let wire = [vec![b'x'; 3000], b"\r\n.\r\nQUIT\r\n".to_vec()].concat();
        let mut r = tokio::io::BufReader::new(&wire[..]);
        let (_d, mut out) = spool();
        assert_eq!(read_data(&mut r, 100, &mut out).await.unwrap(), DataEnd::TooLarge);
        assert!(out.is_empty());
        assert_eq!(read_line(&mut r, 100).await.unwrap(), b"QUIT");
    }

    #[tokio::test]
    async fn bdat_chunks_are_exact() {
        let wire = b"0123456789NOOP\r\n";
        let mut r = tokio::io::BufReader::new(&wire[..]);
        let (_d, mut out) = spool();
        assert_eq!(read_chunk(&mut r, 10, 100, &mut out).await.unwrap(), DataEnd::Complete);
        assert_eq!(out.to_vec().unwrap(), b"0123456789");
        assert_eq!(read_line(&mut r, 100).await.unwrap(), b"NOOP");
        let mut r = tokio::io::BufReader::new(&wire[..]);
        let (_d2, mut small) = spool();
        assert_eq!(read_chunk(&mut r, 10, 5, &mut small).await.unwrap(), DataEnd::TooLarge);
    }
}
