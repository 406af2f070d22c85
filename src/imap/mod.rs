//! The IMAP proxy (in progress, issue #4). So far only the framing layer:
//! a literal-aware scanner that splits either direction of an IMAP
//! connection into CRLF-terminated segments and literals, so that the
//! proxy can pass everything through byte for byte and parse only what it
//! must transform. It owns no sockets and no session state.

pub mod framer;
