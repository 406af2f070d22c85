//! Sealpost: a transparent encrypting mail proxy.
//!
//! The library holds everything the `sealpost` binary, the tests and the
//! benchmarks share. Modules, from the bottom up:
//! - [`mime`]: byte-preserving reading of MIME structure;
//! - [`pgp`]: keys and OpenPGP operations;
//! - [`message`]: PGP/MIME encryption, signing and decryption of whole mail;
//! - [`tls`]: the local certificate and verified upstream TLS;
//! - [`discovery`]: finding recipients' keys over HTTPS (WKD, keyserver);
//! - [`upstream`]: what both proxies' provider connections share (TCP, errors);
//! - [`account`]: configured accounts with their unlocked keys;
//! - [`smtp`]: the submission proxy;
//! - [`imap`]: the IMAP proxy;
//! - [`search`]: the text rules of SEARCH over mail the server cannot read (normalisation, criteria);
//! - [`sasl`]: the SASL mechanisms both proxies relay, and the user name a response names;
//! - [`learn`]: correspondents' keys learnt from incoming mail (Autocrypt);
//! - [`listener`]: accepting connections for either proxy;
//! - [`store`]: the proxies' data at rest (the decrypted-message cache);
//! - [`serve`]: starting and stopping the proxies;
//! - [`reload`]: what a configuration reload (SIGHUP) may change;
//! - [`pidfile`]: the running `serve`'s process id, for `reload` and `doctor`;
//! - [`presets`]: the built-in provider presets (`config/providers/`);
//! - [`doctor`]: the checks of `sealpost doctor`, one line each;
//! - [`setup`]: what `sealpost init` writes and records (config file, first-contact pins, client settings);
//! - [`shutdown`]: the phases of a shutdown that sessions watch;
//! - [`metrics`]: Prometheus counters;
//! - [`config`]: the configuration file and its validation;
//! - [`url`]: the URLs the configuration names (mail servers, HTTPS);
//! - [`logging`]: tracing output (never secrets or message bodies).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod account;
pub mod config;
pub mod discovery;
pub mod doctor;
pub mod files;
pub mod imap;
pub mod learn;
pub mod listener;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod mime;
pub mod pgp;
pub mod pidfile;
pub mod presets;
pub mod reload;
pub mod sasl;
pub mod search;
pub mod serve;
pub mod setup;
pub mod shutdown;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod url;
