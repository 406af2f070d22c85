//! The IMAP proxy: mail clients read their provider's mailboxes through
//! Sealpost and see encrypted messages decrypted; what they upload is
//! encrypted before the provider sees it.
//!
//! Layout: [`framer`] splits either direction into lines and literals,
//! [`wire`] holds the few messages read whole and walks their syntax,
//! [`command`] reads client commands (their FETCH items as [`item`]s,
//! with [`section`]s), [`response`] recognises the server responses the
//! relay reads, [`capability`] filters capability lists,
//! [`auth`] reads login credentials, [`upstream`] talks to the provider.
//! [`session`] serves a connection: [`op::login`] until the client has
//! logged in, then [`relay`] both directions over the [`state`] they
//! share, handing the commands the proxy treats itself to [`op`].
//! [`fetch`] rewrites FETCH answers about encrypted messages (with
//! [`view`] answering items from a decrypted message, [`emit`] writing
//! IMAP values and [`sidefetch`] fetching what the client's command did
//! not carry); [`op::append`] encrypts uploads (or restores the
//! ciphertext of what [`served`] says was shown). Everything not named
//! here passes byte for byte. This module never does OpenPGP itself: it
//! calls [`crate::message`].

pub mod auth;
pub mod capability;
pub mod command;
pub mod emit;
pub mod fetch;
pub mod framer;
pub mod indexer;
#[cfg(test)]
mod inprocess;
pub mod item;
pub mod op;
pub mod relay;
mod response;
pub mod searchkey;
pub mod section;
pub mod served;
pub mod session;
pub mod sidefetch;
pub mod state;
pub mod upstream;
pub mod view;
pub mod wire;
