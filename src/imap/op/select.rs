//! SELECT, EXAMINE, CLOSE and UNSELECT: relayed as written, but the
//! session notes which mailbox the client is opening, so that FETCH
//! answers and the decrypted-message cache know where a UID belongs. The
//! server's tagged answer (see [`crate::imap::state::State::complete`])
//! decides whether the mailbox is open.

use std::sync::Mutex as SyncMutex;

use super::Next;
use crate::imap::state::State;

/// The SELECT or EXAMINE tagged `tag` opens `mailbox` if the server says
/// OK; the UIDVALIDITY it announces belongs to that mailbox.
pub fn opening(state: &SyncMutex<State>, tag: &[u8], mailbox: Option<Vec<u8>>) -> Next {
    let mut s = state.lock().expect("state lock");
    s.uidvalidity = None;
    s.selecting.push((tag.to_vec(), mailbox));
    Next::Relay
}

/// The CLOSE or UNSELECT tagged `tag` leaves no mailbox open.
pub fn closing(state: &SyncMutex<State>, tag: &[u8]) -> Next {
    state.lock().expect("state lock").selecting.push((tag.to_vec(), None));
    Next::Relay
}
