//! Sealpost: a transparent encrypting mail proxy.
//!
//! The library holds everything the `sealpost` binary, the tests and the
//! benchmarks share. Modules, from the bottom up:
//! - [`mime`]: byte-preserving reading of MIME structure;
//! - [`pgp`]: keys and OpenPGP operations;
//! - [`message`]: PGP/MIME encryption, signing and decryption of whole mail;
//! - [`config`]: the configuration file and its validation;
//! - [`logging`]: tracing output (never secrets or message bodies).

pub mod config;
pub mod logging;
pub mod message;
pub mod mime;
pub mod pgp;
