//! The commands the proxy handles itself rather than relaying byte for
//! byte, one module each: [`login`] (everything before login),
//! [`append`] (uploads, encrypted), and the commands the relay reads on
//! their way to the server (see [`super::relay`]).

pub mod append;
pub mod login;
