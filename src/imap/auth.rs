//! What an IMAP client logs in with: LOGIN's user name and password, or a
//! SASL mechanism's response (read by [`crate::sasl`]). The proxy
//! reads only the user name, to choose the account; the credentials go to
//! the provider as they are, and are kept in memory (never logged) so the
//! side connection that fetches messages for decryption can log in too.

use crate::sasl::{user_name, SaslError};

/// Credentials as the client gave them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The LOGIN command (or SASL LOGIN, which carries the same two).
    Login {
        /// User name.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// A one-step SASL mechanism and its (decoded) initial response.
    Sasl {
        /// PLAIN, XOAUTH2 or OAUTHBEARER.
        mechanism: String,
        /// The decoded response.
        response: Vec<u8>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Login { .. } => f.write_str("Credentials::Login(redacted)"),
            Credentials::Sasl { mechanism, .. } => write!(f, "Credentials::Sasl({mechanism}, redacted)"),
        }
    }
}

impl Credentials {
    /// The user name that selects the account.
    pub fn user(&self) -> Result<String, SaslError> {
        match self {
            Credentials::Login { user, .. } => Ok(String::from_utf8_lossy(user).into_owned()),
            Credentials::Sasl { mechanism, response } => user_name(mechanism, response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: &str, response: &[u8]) -> Credentials {
        Credentials::Sasl {
            mechanism: mechanism.into(),
            response: response.to_vec(),
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Credentials::Login {
            user: b"u".to_vec(),
            password: b"hunter2".to_vec(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", sasl("PLAIN", b"\0u\0hunter2")).contains("hunter2"));
    }
}
