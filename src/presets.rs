//! Provider presets: the servers, ports and security of well-known mail
//! providers, for `sealpost init`. The presets are the files in
//! `config/providers/` (format in `config/providers/README.md`), compiled
//! into the binary so that an installed `sealpost` needs no data files.
//!
//! This module owns reading the presets, choosing one by name or by the
//! address's domain, and turning one into an `[[account]]`. It does not
//! connect anywhere.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::AccountConfig;
use crate::tls::TrustMode;

/// Every preset file, by the name `--provider` takes (the file's stem).
const FILES: [(&str, &str); 9] = [
    ("gmail", include_str!("../config/providers/gmail.toml")),
    ("outlook", include_str!("../config/providers/outlook.toml")),
    ("fastmail", include_str!("../config/providers/fastmail.toml")),
    ("icloud", include_str!("../config/providers/icloud.toml")),
    ("yahoo", include_str!("../config/providers/yahoo.toml")),
    ("posteo", include_str!("../config/providers/posteo.toml")),
    ("mailbox-org", include_str!("../config/providers/mailbox-org.toml")),
    ("gmx", include_str!("../config/providers/gmx.toml")),
    ("generic", include_str!("../config/providers/generic.toml")),
];

/// How a mail client (through Sealpost) logs in at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// The account's own password works.
    Password,
    /// The provider wants an app-specific password for mail clients.
    AppPassword,
    /// The provider allows OAuth2 sign-in only.
    #[serde(rename = "oauth2")]
    OAuth2,
}

/// One provider preset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The name `--provider` takes (the file's stem); not in the file.
    #[serde(skip)]
    pub name: &'static str,
    /// The provider's name for people.
    pub title: String,
    /// Address domains the preset is picked for (lower case, exact).
    pub domains: Vec<String>,
    /// The IMAP server, as in the configuration (`imaps://host:993`);
    /// absent in the generic preset.
    pub imap: Option<String>,
    /// The submission server (`smtps://host:465`, `smtp://host:587`).
    pub smtp: Option<String>,
    /// How clients log in.
    pub auth: Auth,
    /// The provider's page on setting up mail clients or app passwords.
    pub help: Option<String>,
    /// Anything else the user needs to know.
    pub note: Option<String>,
}

/// Why no usable preset was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    /// A compiled-in preset file does not parse (a build defect, caught by
    /// the unit tests).
    #[error("the built-in preset {name} is damaged: {reason}")]
    Damaged {
        /// The preset.
        name: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// `--provider` named no preset.
    #[error("there is no provider preset '{name}'; the presets are: {known}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// Every preset, for the user to choose from.
        known: String,
    },
    /// No preset covers the address's domain.
    #[error(
        "no provider preset covers '{domain}'; pass --provider NAME (one of: {known}), or --provider generic with --imap URL and --smtp URL for your own server"
    )]
    NoDomain {
        /// The address's domain.
        domain: String,
        /// Every preset.
        known: String,
    },
    /// The generic preset was chosen without naming the servers.
    #[error("the preset {name} names no servers; give them as --imap imaps://HOST:993 and/or --smtp smtp://HOST:587")]
    NoServers {
        /// The preset.
        name: &'static str,
    },
}

/// Every preset, in the order of [`FILES`].
pub fn all() -> Result<Vec<Preset>, PresetError> {
    FILES
        .iter()
        .map(|&(name, text)| {
            let mut preset: Preset = toml::from_str(text).map_err(|e| PresetError::Damaged {
                name,
                reason: e.to_string(),
            })?;
            preset.name = name;
            Ok(preset)
        })
        .collect()
}

/// The preset names, comma-separated, for messages and prompts.
pub fn listing() -> String {
    FILES.iter().map(|&(name, _)| name).collect::<Vec<_>>().join(", ")
}

/// The preset called `name` (case-insensitive).
pub fn named(name: &str) -> Result<Preset, PresetError> {
    all()?
        .into_iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| PresetError::Unknown {
            name: name.to_string(),
            known: listing(),
        })
}

/// The preset whose domains include `address`'s domain.
pub fn for_address(address: &str) -> Result<Preset, PresetError> {
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(address)
        .trim()
        .to_ascii_lowercase();
    all()?
        .into_iter()
        .find(|p| p.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)))
        .ok_or_else(|| PresetError::NoDomain { domain, known: listing() })
}

impl Preset {
    /// The `[[account]]` for `address` at this provider: the login is the
    /// address, the servers the preset's unless `imap`/`smtp` replace
    /// them, trust on first use (the keys `init` records).
    pub fn account(
        &self,
        address: &str,
        imap: Option<&str>,
        smtp: Option<&str>,
        ca_file: Option<PathBuf>,
    ) -> Result<AccountConfig, PresetError> {
        let imap = imap.map(str::to_string).or_else(|| self.imap.clone());
        let smtp = smtp.map(str::to_string).or_else(|| self.smtp.clone());
        if imap.is_none() && smtp.is_none() {
            return Err(PresetError::NoServers { name: self.name });
        }
        Ok(AccountConfig {
            login: address.to_string(),
            address: None,
            smtp,
            imap,
            ca_file,
            trust: TrustMode::Tofu,
            pins: Vec::new(),
            policy: None,
        })
    }

    /// What the user must do about logging in, with the provider's link;
    /// nothing for a plain password without a note.
    pub fn login_advice(&self) -> Option<String> {
        let help = self.help.as_deref().map(|h| format!(" See {h}")).unwrap_or_default();
        let advice = match self.auth {
            Auth::Password => self.note.as_ref().map(|_| format!("Log in with your {} password.{help}", self.title)),
            Auth::AppPassword => Some(format!(
                "{} needs an app password for mail clients: create one and give it to your mail client as its password (Sealpost passes it on and never stores it).{help}",
                self.title
            )),
            // Sealpost relays XOAUTH2 and OAUTHBEARER but has no OAuth2
            // sign-in of its own; saying less would promise a set-up that
            // cannot log in.
            Auth::OAuth2 => Some(format!(
                "{} allows OAuth2 sign-in only. Sealpost does not sign in with OAuth2 itself: it passes XOAUTH2/OAUTHBEARER on when the mail client sends them, but mail clients offer OAuth2 only for the provider's own server names, not for Sealpost on 127.0.0.1. Expect logins to fail unless your administrator allows app passwords or password logins (IMAP and SMTP AUTH).{help}",
                self.title
            )),
        };
        match (advice, &self.note) {
            (Some(advice), Some(note)) => Some(format!("{note}\n{advice}")),
            (advice, _) => advice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, Config};

    #[test]
    fn every_preset_gives_a_configuration_that_check_accepts() {
        let presets = all().unwrap();
        assert_eq!(presets.len(), FILES.len());
        let dir = tempfile::tempdir().unwrap();
        for preset in presets {
            let address = format!("someone@{}", preset.domains.first().map(String::as_str).unwrap_or("example.org"));
            let account = if preset.imap.is_none() && preset.smtp.is_none() {
                assert_eq!(
                    preset.account(&address, None, None, None),
                    Err(PresetError::NoServers { name: preset.name })
                );
                preset
                    .account(&address, Some("imaps://mail.example.org"), Some("smtp://mail.example.org"), None)
                    .unwrap()
            } else {
                assert!(preset.imap.is_some() && preset.smtp.is_some(), "{} names both servers", preset.name);
                assert!(preset.help.as_deref().is_some_and(|h| h.starts_with("https://")), "{}", preset.name);
                preset.account(&address, None, None, None).unwrap()
            };
            let config = Config {
                data_dir: dir.path().to_path_buf(),
                accounts: vec![account],
                ..Config::default()
            };
            assert_eq!(validate(&config), Vec::new(), "preset {}", preset.name);
            for domain in &preset.domains {
                assert_eq!(domain, &domain.to_ascii_lowercase(), "{}", preset.name);
                assert_eq!(for_address(&format!("x@{}", domain.to_uppercase())).unwrap().name, preset.name);
            }
        }
    }

    #[test]
    fn every_file_in_the_directory_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/providers");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| entry.unwrap().file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut built_in: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in, "list every preset file in presets::FILES");
    }

    #[test]
    fn picked_by_name_or_domain_else_a_clear_error() {
        assert_eq!(named("Gmail").unwrap().imap.as_deref(), Some("imaps://imap.gmail.com:993"));
        assert_eq!(for_address("someone@icloud.com").unwrap().name, "icloud");
        let unknown = named("aol").unwrap_err().to_string();
        assert!(unknown.contains("'aol'") && unknown.contains("gmail, outlook"), "{unknown}");
        let no_domain = for_address("me@example.org").unwrap_err().to_string();
        assert!(
            no_domain.contains("example.org") && no_domain.contains("--provider generic"),
            "{no_domain}"
        );
    }

    #[test]
    fn oauth2_and_app_passwords_are_spelled_out() {
        let outlook = named("outlook").unwrap().login_advice().unwrap();
        assert!(
            outlook.contains("does not sign in with OAuth2") && outlook.contains("https://support.microsoft.com"),
            "{outlook}"
        );
        let gmail = named("gmail").unwrap().login_advice().unwrap();
        assert!(
            gmail.contains("app password") && gmail.contains("https://support.google.com"),
            "{gmail}"
        );
        assert_eq!(named("posteo").unwrap().login_advice(), None);
    }
}
