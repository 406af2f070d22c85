//! A raw line client over plain TCP, for tests that compare what a client
//! sends and receives byte for byte (IMAP and SMTP on the proxy's loopback
//! listeners, where login before STARTTLS is allowed).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A connected client with the greeting read.
pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The server's greeting line.
    pub greeting: String,
}

impl Raw {
    /// Connects to `addr` and reads the greeting line.
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            greeting: String::new(),
        };
        raw.greeting = raw.line();
        raw
    }

    /// The next line ("" once the connection is closed).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends an IMAP `command` and returns every line up to the tagged one.
    pub fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until(tag)
    }

    /// Lines up to and including the one tagged `tag`.
    pub fn until(&mut self, tag: &str) -> String {
        let mut out = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed; got so far:\n{out}");
            out.push_str(&l);
            if l.starts_with(&format!("{tag} ")) {
                return out;
            }
        }
    }

    /// Sends an SMTP command line and returns the whole (multi-line) reply.
    pub fn smtp(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        self.smtp_reply()
    }

    /// One whole SMTP reply (its last line has a space after the code).
    pub fn smtp_reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed; got so far:\n{out}");
            out.push_str(&l);
            if l.as_bytes().get(3) == Some(&b' ') {
                return out;
            }
        }
    }

    /// Everything until the peer closes the connection.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.reader.read_to_end(&mut out).unwrap();
        out
    }
}
