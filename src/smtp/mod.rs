//! The SMTP submission proxy: mail clients submit to Sealpost as they would
//! to their provider; Sealpost signs and encrypts, then relays to the
//! provider's submission server over verified TLS.
//!
//! Layout: [`command`] and [`reply`] parse the protocol, [`data`] reads
//! bounded lines and message data, [`policy`] decides per recipient and per
//! message, [`upstream`] talks to the provider, [`session`] is the state
//! machine ([`crate::listener`] accepts connections). This module never writes
//! OpenPGP itself: it calls [`crate::message`].

pub mod command;
pub mod data;
pub mod policy;
pub mod reply;
pub mod session;
pub mod upstream;
