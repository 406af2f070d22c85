//! COMPRESS (RFC 4978): refused, so both streams stay readable to the
//! proxy; the client carries on uncompressed, as the RFC allows.

use super::Next;
use crate::imap::state::{send, ClientWriter, SessionError};

/// Answers the COMPRESS tagged `tag` with a refusal.
pub async fn refuse(client: &ClientWriter, tag: &[u8]) -> Result<Next, SessionError> {
    let reply = [tag, b" NO [CANNOT] Sealpost does not relay COMPRESS; continuing uncompressed\r\n"].concat();
    send(client, &reply).await?;
    Ok(Next::ReadCommand)
}
