//! Where secret-key passphrases come from: `SEALPOST_PASSPHRASE`, a
//! passphrase file, or an interactive prompt on the terminal.

use std::path::PathBuf;

use sequoia_openpgp::crypto::Password;

use super::KeyError;

/// A passphrase held in memory that sequoia zeroes when dropped; it never
/// appears in `Debug` output or logs.
pub type Passphrase = Password;

/// The configured source of passphrases, in the order the user expects:
/// the environment, then a file, then asking on the terminal.
#[derive(Debug, Clone, Default)]
pub enum PassphraseSource {
    /// `SEALPOST_PASSPHRASE` (read once at start).
    Env(String),
    /// A file whose first line is the passphrase.
    File(PathBuf),
    /// Ask on the controlling terminal (`/dev/tty`), not on stdin, which
    /// carries the message.
    Prompt,
    /// No source: locked keys stay locked.
    #[default]
    None,
}

impl PassphraseSource {
    /// Picks the source from the environment and the configured file.
    pub fn from_env_or(file: Option<PathBuf>) -> PassphraseSource {
        match std::env::var("SEALPOST_PASSPHRASE") {
            Ok(p) => PassphraseSource::Env(p),
            Err(_) => match file {
                Some(f) => PassphraseSource::File(f),
                None if std::io::IsTerminal::is_terminal(&std::io::stderr()) => PassphraseSource::Prompt,
                None => PassphraseSource::None,
            },
        }
    }

    /// The passphrase for the key `fingerprint` (`purpose` is shown when
    /// prompting). `confirm` asks twice, for new keys.
    pub fn get(&self, fingerprint: &str, purpose: &str, confirm: bool) -> Result<Passphrase, KeyError> {
        let locked = |reason: String| KeyError::Locked {
            fingerprint: fingerprint.to_string(),
            reason,
        };
        match self {
            PassphraseSource::Env(p) => Ok(p.as_str().into()),
            PassphraseSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| locked(format!("cannot read passphrase_file {}: {e}", path.display())))?;
                Ok(text.lines().next().unwrap_or("").into())
            }
            PassphraseSource::Prompt => {
                let first = rpassword::prompt_password(format!("Passphrase for {purpose}: "))
                    .map_err(|e| locked(format!("cannot prompt for the passphrase: {e}")))?;
                if confirm {
                    let again = rpassword::prompt_password("Repeat the passphrase: ")
                        .map_err(|e| locked(format!("cannot prompt for the passphrase: {e}")))?;
                    if again != first {
                        return Err(locked("the two passphrases differ".into()));
                    }
                }
                Ok(first.as_str().into())
            }
            PassphraseSource::None => Err(locked(
                "no passphrase available; set SEALPOST_PASSPHRASE, set passphrase_file in the config, or run on a terminal".into(),
            )),
        }
    }
}
