//! A FETCH whose answer depends on message content goes to the server
//! with the items the proxy needs to recognise encrypted messages added
//! (UID, BODYSTRUCTURE, the start of the text); the answers are rewritten
//! on the way back by [`crate::imap::fetch::Rewriter`], which removes the
//! additions again.

use tokio::io::AsyncWriteExt;

use std::sync::Mutex as SyncMutex;

use super::Next;
use crate::imap::command::{Fetch, Head};
use crate::imap::state::{InFlight, SessionError, State, UpstreamWriter};

/// Sends the extended FETCH and notes what the client asked for.
pub async fn extend(state: &SyncMutex<State>, upstream: &mut UpstreamWriter, head: &Head<'_>, fetch: Fetch) -> Result<Next, SessionError> {
    let added = fetch.additions(head.uid);
    let rewritten = fetch.rewrite(head, &added);
    {
        let mut s = state.lock().expect("state lock");
        s.sent(head.tag, "FETCH");
        s.fetches.push(InFlight {
            tag: head.tag.to_vec(),
            fetch,
            added,
        });
    }
    upstream.write_all(&rewritten).await?;
    upstream.flush().await?;
    Ok(Next::ReadCommand)
}
