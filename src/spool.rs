//! Message spooling: a message is kept in memory while small and moves to
//! an unnamed temporary file (mode 0600, gone when closed, in a private
//! directory) once it passes a threshold, so that a proxy handling large
//! attachments holds buffers, not whole messages.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Messages up to this size stay in memory.
pub const DEFAULT_THRESHOLD: usize = 1024 * 1024;

/// A growing message, in memory or on disk.
pub struct Spool {
    dir: PathBuf,
    threshold: usize,
    memory: Vec<u8>,
    file: Option<File>,
    len: u64,
}

impl Spool {
    /// An empty spool that moves to a file in `dir` beyond `threshold`
    /// bytes.
    pub fn new(dir: &Path, threshold: usize) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            threshold,
            memory: Vec::new(),
            file: None,
            len: 0,
        }
    }

    /// A spool holding `bytes` (in memory whatever their size: they are in
    /// memory already).
    pub fn from_vec(dir: &Path, bytes: Vec<u8>) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            threshold: usize::MAX,
            len: bytes.len() as u64,
            memory: bytes,
            file: None,
        }
    }

    /// An empty spool for the same directory and threshold.
    pub fn sibling(&self) -> Spool {
        Spool::new(&self.dir, self.threshold)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once the content lives in a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Drops the content (and the file).
    pub fn clear(&mut self) {
        self.memory = Vec::new();
        self.file = None;
        self.len = 0;
    }

    /// A reader from `offset` to the end; several may exist at once.
    pub fn reader_at(&self, offset: u64) -> SpoolReader<'_> {
        SpoolReader { spool: self, pos: offset }
    }

    /// Up to `max` bytes from the start (for reading the header section).
    pub fn head(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(max.min(self.len as usize));
        self.reader_at(0).take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The whole content in memory.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.reader_at(0).read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.memory.len() + buf.len() > self.threshold {
            crate::files::create_private_dir(&self.dir)?;
            let mut file = tempfile::tempfile_in(&self.dir)?;
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(file) => file.write_all(buf)?,
            None => self.memory.extend_from_slice(buf),
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a [`Spool`] with its own position (positional reads on the file).
pub struct SpoolReader<'a> {
    spool: &'a Spool,
    pos: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &self.spool.file {
            Some(file) => {
                let want = buf.len().min(self.spool.len.saturating_sub(self.pos) as usize);
                file.read_at(&mut buf[..want], self.pos)?
            }
            None => {
                let start = (self.pos as usize).min(self.spool.memory.len());
                let rest = &self.spool.memory[start..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_to_a_private_file_past_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::new(&spool_dir, 10);
        spool.write_all(b"0123456").unwrap();
        assert!(!spool.on_disk());
        spool.write_all(b"789abcdef").unwrap();
        assert!(spool.on_disk());
        assert_eq!(spool.len(), 16);
        assert_eq!(spool.to_vec().unwrap(), b"0123456789abcdef");
        assert_eq!(spool.head(4).unwrap(), b"0123");
        let mut tail = String::new();
        spool.reader_at(10).read_to_string(&mut tail).unwrap();
        assert_eq!(tail, "abcdef");
        // Unnamed: nothing is left in the directory to be read by others.
        assert_eq!(std::fs::read_dir(&spool_dir).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&spool_dir).unwrap().permissions().mode() & 0o777, 0o700);
        spool.clear();
        assert!(spool.is_empty() && !spool.on_disk());
    }
}
