//! The encryption policy applied to a submission: which recipients must
//! only get encrypted mail (checked at RCPT), and whether a whole message
//! is encrypted, signed only, or passed on as the client protected it.

use super::reply::Reply;
use crate::config::{EncryptMode, OnMissingKey, PolicyConfig};
use crate::message::Protection;
use crate::pgp::{KeyError, Keystore};

/// What happens to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every recipient has a key: sign and encrypt.
    Encrypt,
    /// Sign only; `missing` lists recipients without a usable key (empty
    /// when the policy says never encrypt).
    SignOnly {
        /// Recipients without a usable key.
        missing: Vec<String>,
    },
    /// The client already encrypted (or signed) it: send it untouched.
    PassThrough,
}

/// True when `recipient` must only receive encrypted mail.
pub fn requires_encryption(policy: &PolicyConfig, recipient: &str) -> bool {
    if policy.encrypt == EncryptMode::Always && policy.on_missing_key == OnMissingKey::Reject {
        return true;
    }
    let recipient = recipient.to_ascii_lowercase();
    let domain = recipient.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    policy.require_encryption_for.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.contains('@') {
            entry == recipient
        } else {
            domain == entry || domain.ends_with(&format!(".{entry}"))
        }
    })
}

/// The RCPT-time check: a recipient that requires encryption and has no
/// usable key is refused with a reply that says what to do.
pub fn check_recipient(policy: &PolicyConfig, keystore: &Keystore, recipient: &str) -> Result<(), Reply> {
    if !requires_encryption(policy, recipient) {
        return Ok(());
    }
    match keystore.recipient(recipient) {
        Ok(_) => Ok(()),
        Err(KeyError::NotFound(_)) => Err(Reply::new(
            550,
            format!("5.7.1 <{recipient}>: encryption required but no OpenPGP key found; import one with 'sealpost keys import'"),
        )),
        Err(other) => Err(Reply::new(550, format!("5.7.1 <{recipient}>: encryption required but {other}"))),
    }
}

/// Decides what to do with a message for `recipients`. Mixed delivery is
/// never done: either everyone gets the encrypted message or everyone gets
/// the signed one (a leak to some recipients would defeat it for all).
pub fn plan(policy: &PolicyConfig, keystore: &Keystore, recipients: &[String], existing: Protection) -> Result<Plan, Reply> {
    match existing {
        Protection::Encrypted => return Ok(Plan::PassThrough),
        Protection::Signed => {
            if let Some(r) = recipients.iter().find(|r| requires_encryption(policy, r)) {
                return Err(Reply::new(
                    554,
                    format!("5.7.1 <{r}>: encryption required, but the message is signed by the client without encryption; let Sealpost sign it, or encrypt it in the client"),
                ));
            }
            return Ok(Plan::PassThrough);
        }
        Protection::None => {}
    }
    if policy.encrypt == EncryptMode::Never {
        return Ok(Plan::SignOnly { missing: Vec::new() });
    }
    let missing: Vec<String> = recipients.iter().filter(|r| keystore.recipient(r).is_err()).cloned().collect();
    if missing.is_empty() {
        return Ok(Plan::Encrypt);
    }
    // RCPT already refused recipients that require encryption; finding one
    // here means its key vanished in between: fail closed.
    if let Some(r) = missing.iter().find(|r| requires_encryption(policy, r)) {
        return Err(Reply::new(
            550,
            format!("5.7.1 <{r}>: encryption required but no OpenPGP key found; import one with 'sealpost keys import'"),
        ));
    }
    Ok(Plan::SignOnly { missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(encrypt: EncryptMode, on_missing_key: OnMissingKey, required: &[&str]) -> PolicyConfig {
        PolicyConfig {
            encrypt,
            on_missing_key,
            require_encryption_for: required.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn requirement_matches_domains_subdomains_and_addresses() {
        let p = policy(
            EncryptMode::Opportunistic,
            OnMissingKey::SignOnly,
            &["partner.example", "CEO@corp.example"],
        );
        assert!(requires_encryption(&p, "x@partner.example"));
        assert!(requires_encryption(&p, "x@mail.partner.example"));
        assert!(!requires_encryption(&p, "x@notpartner.example"));
        assert!(requires_encryption(&p, "ceo@Corp.example"));
        assert!(!requires_encryption(&p, "cfo@corp.example"));
        let strict = policy(EncryptMode::Always, OnMissingKey::Reject, &[]);
        assert!(requires_encryption(&strict, "anyone@x.test"));
        let lenient = policy(EncryptMode::Always, OnMissingKey::SignOnly, &[]);
        assert!(!requires_encryption(&lenient, "anyone@x.test"));
    }

    #[test]
    fn plans_follow_keys_and_existing_protection() {
        let dir = tempfile::tempdir().unwrap();
        let mut ks = Keystore::open(dir.path()).unwrap();
        ks.generate("bob@x.test", None, false).unwrap();
        let p = policy(EncryptMode::Opportunistic, OnMissingKey::SignOnly, &["secure.test"]);
        let bob = vec!["bob@x.test".to_string()];
        let both = vec!["bob@x.test".to_string(), "carol@x.test".to_string()];
        assert_eq!(plan(&p, &ks, &bob, Protection::None), Ok(Plan::Encrypt));
        assert_eq!(
            plan(&p, &ks, &both, Protection::None),
            Ok(Plan::SignOnly {
                missing: vec!["carol@x.test".into()]
            })
        );
        assert_eq!(plan(&p, &ks, &both, Protection::Encrypted), Ok(Plan::PassThrough));
        let never = policy(EncryptMode::Never, OnMissingKey::SignOnly, &[]);
        assert_eq!(plan(&never, &ks, &bob, Protection::None), Ok(Plan::SignOnly { missing: vec![] }));
        let secure = vec!["x@secure.test".to_string()];
        assert_eq!(plan(&p, &ks, &secure, Protection::None).unwrap_err().code, 550);
        assert_eq!(plan(&p, &ks, &secure, Protection::Signed).unwrap_err().code, 554);
        let refused = check_recipient(&p, &ks, "x@secure.test").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "550 5.7.1 <x@secure.test>: encryption required but no OpenPGP key found; import one with 'sealpost keys import'\r\n"
        );
        assert!(check_recipient(&p, &ks, "carol@x.test").is_ok());
    }
}
