//! The commands the proxy handles itself rather than relaying byte for
//! byte, parsed once into a [`Command`] and handed to their module:
//! [`login`] (everything before login), [`append`] (uploads, encrypted),
//! [`fetch`] (content FETCHes, extended to reveal encrypted messages),
//! [`select`] (which mailbox is open), [`search`] (answered over the
//! decrypted messages), [`compress`] (refused). Anything
//! else after login is [`Command::Relayed`] by [`super::relay`].

pub mod append;
pub mod compress;
pub mod fetch;
pub mod login;
pub mod search;
pub mod select;

use super::command::{head, mailbox_key, Fetch, Head};
use super::framer::Literal;
use super::wire::{Pos, Wire};

/// Longest command line from a logged-in client (UID sets can be long).
pub const MAX_COMMAND_LINE: usize = 1024 * 1024;

/// Longest mailbox name read from a SELECT or EXAMINE line.
const MAX_MAILBOX_NAME: usize = 64 * 1024;

/// What the relay does once a handler returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the client's next command.
    ReadCommand,
    /// Relay the command byte for byte (the handler only took note).
    Relay,
    /// End the session (the client has been told why).
    EndSession,
}

/// A logged-in client's command, as the relay dispatches it.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// APPEND: the proxy reads the messages whole and encrypts them.
    Append,
    /// A FETCH whose answer depends on message content.
    Fetch(Fetch),
    /// SELECT or EXAMINE, with the mailbox it opens (`None` when the name
    /// cannot be read; the server's answer still decides).
    Select(Option<Vec<u8>>),
    /// SEARCH, SORT or THREAD: answered by the proxy when it reads
    /// message content (SORT and THREAD always do).
    Search,
    /// CLOSE or UNSELECT: no mailbox open afterwards.
    Close,
    /// COMPRESS: refused, the proxy reads both streams.
    Compress,
    /// Anything else: byte for byte to the server (the name, upper case,
    /// still tells the session state about IDLE and LOGOUT).
    Relayed(String),
}

impl Command {
    /// Reads the first line of a command (`literal`: what it announces at
    /// its end). `None` for a line that is no command (`DONE` ending IDLE,
    /// a continuation); such lines are relayed as they are.
    pub fn parse(line: &[u8], literal: Option<Literal>) -> Option<(Head<'_>, Command)> {
        let h = head(line)?;
        let command = match h.name.as_str() {
            "APPEND" => Command::Append,
            "FETCH" if literal.is_none() => match Fetch::parse(&line[h.args..]).filter(Fetch::depends_on_content) {
                Some(fetch) => Command::Fetch(fetch),
                None => Command::Relayed(h.name.clone()),
            },
            "SELECT" | "EXAMINE" if literal.is_none() => {
                let wire = Wire::line(line.to_vec());
                let mut args = wire.cursor();
                args.pos = Pos { part: 0, at: h.args };
                Command::Select(args.astring(MAX_MAILBOX_NAME).map(|m| mailbox_key(&m)))
            }
            "SEARCH" => Command::Search,
            "CLOSE" | "UNSELECT" => Command::Close,
            "COMPRESS" => Command::Compress,
            "SORT" | "THREAD" => Command::Search,
            _ => Command::Relayed(h.name.clone()),
        };
        Some((h, command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[u8]) -> Option<Command> {
        Command::parse(line, None).map(|(_, c)| c)
    }

    #[test]
    fn commands_are_told_apart_once() {
        assert_eq!(parse(b"a APPEND Drafts {12}\r\n"), Some(Command::Append));
        assert!(matches!(parse(b"a UID FETCH 1:* (BODY.PEEK[])\r\n"), Some(Command::Fetch(_))));
        // FETCH of flags only does not depend on content: relayed.
        assert_eq!(parse(b"a FETCH 1 (FLAGS)\r\n"), Some(Command::Relayed("FETCH".into())));
        assert_eq!(
            parse(b"a select \"My Drafts\"\r\n"),
            Some(Command::Select(Some(b"My Drafts".to_vec())))
        );
        assert_eq!(parse(b"a EXAMINE inbox\r\n"), Some(Command::Select(Some(b"INBOX".to_vec()))));
        assert_eq!(parse(b"a UNSELECT\r\n"), Some(Command::Close));
        assert_eq!(parse(b"a COMPRESS DEFLATE\r\n"), Some(Command::Compress));
        assert_eq!(parse(b"a IDLE\r\n"), Some(Command::Relayed("IDLE".into())));
        assert_eq!(parse(b"DONE\r\n"), None);
        // A FETCH or SELECT with a literal is relayed as written.
        let literal = Some(Literal {
            size: 3,
            non_synchronizing: false,
            binary: false,
        });
        assert_eq!(
            Command::parse(b"a SELECT {3}\r\n", literal).map(|(_, c)| c),
            Some(Command::Relayed("SELECT".into()))
        );
    }
}
