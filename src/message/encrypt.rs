//! RFC 5322 message → PGP/MIME encrypted and signed copies.

use sequoia_openpgp::Cert;

use super::autocrypt::autocrypt_header;
use std::io::{Read, Write};

use super::payload::{outer_fields, PayloadFrame, Protection, SelfCopy, SELF_COPY_NOTATION};
use super::MessageError;
use crate::mime::{addresses, new_boundary, to_crlf, Entity};
use crate::pgp::{encrypt_and_sign_to, normalize_email, Keystore, Notation, UnlockedKey};

/// Who a message is from and who receives it (the SMTP envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender, whose key signs and who can always decrypt.
    pub sender: String,
    /// Every recipient, visible or Bcc.
    pub recipients: Vec<String>,
}

impl Envelope {
    /// The sender: `explicit` when given, else the message's From.
    pub fn sender(message: &[u8], explicit: Option<&str>) -> Result<String, MessageError> {
        match explicit {
            Some(address) => Ok(normalize_email(address)),
            None => addresses(Entity::parse(message).header, &["From"])
                .into_iter()
                .next()
                .ok_or(MessageError::NoSender),
        }
    }

    /// The envelope: explicit sender and recipients where given, else what
    /// the message's headers say (From; To + Cc + Bcc).
    pub fn resolve(message: &[u8], from: Option<&str>, to: &[String]) -> Result<Envelope, MessageError> {
        let sender = Envelope::sender(message, from)?;
        let recipients = if to.is_empty() {
            addresses(Entity::parse(message).header, &["To", "Cc", "Bcc"])
        } else {
            to.iter().map(|r| normalize_email(r)).collect()
        };
        if recipients.is_empty() {
            return Err(MessageError::NoRecipients);
        }
        Ok(Envelope { sender, recipients })
    }
}

/// One encrypted message ready to send to `recipients`.
#[derive(Debug, Clone)]
pub struct EncryptedCopy {
    /// The envelope recipients of this copy.
    pub recipients: Vec<String>,
    /// True for the separate copy made for one Bcc recipient.
    pub is_bcc: bool,
    /// The complete PGP/MIME message.
    pub message: Vec<u8>,
}

/// Encrypts `message` for the `envelope`: one copy for the recipients
/// visible in To/Cc, and one copy per Bcc recipient (an envelope recipient
/// not named in To/Cc), each encrypted only to its own recipients and the
/// sender, so that no key ID reveals a Bcc recipient. Every copy is signed
/// by `sender`. Fails if any recipient has no usable key.
pub fn encrypt_message(
    message: &[u8],
    envelope: &Envelope,
    sender: &UnlockedKey,
    keystore: &Keystore,
) -> Result<Vec<EncryptedCopy>, MessageError> {
    let message = to_crlf(message);
    let entity = Entity::parse(&message);
    if super::decrypt::is_protected(&entity) {
        return Err(MessageError::AlreadyProtected);
    }
    let sealer = Sealer::new(entity.header, envelope, sender, keystore)?;
    let mut copies = Vec::with_capacity(sealer.copies().len());
    for (index, copy) in sealer.copies().iter().enumerate() {
        let mut out = Vec::with_capacity(message.len() * 4 / 3 + 8192);
        sealer.write_copy(index, &mut &entity.body[..], &mut out)?;
        copies.push(EncryptedCopy {
            recipients: copy.recipients.clone(),
            is_bcc: copy.is_bcc,
            message: out,
        });
    }
    Ok(copies)
}

/// Encrypts `message` to its owner alone, signed by them: for the copies
/// a user keeps on their own server (drafts, sent copies) rather than
/// sends. The payload is the message exactly as given (line endings made
/// CRLF), marked in place ([`SelfCopy`]); the owner's Sealpost shows it
/// back byte for byte. Bcc stays, because only the owner can read it.
/// Signed-only mail is sealed too: anyone could read it otherwise.
pub fn seal_for_self(message: &[u8], owner_address: &str, owner: &UnlockedKey) -> Result<Vec<u8>, MessageError> {
    let message = to_crlf(message);
    let entity = Entity::parse(&message);
    if super::decrypt::is_encrypted(&entity) {
        return Err(MessageError::AlreadyProtected);
    }
    let owner_address = normalize_email(owner_address);
    let mut outer = outer_fields(&entity, true);
    outer.push(autocrypt_header(
        "Autocrypt",
        &owner_address,
        &owner.cert,
        owner.prefer_encrypt_mutual,
    )?);
    let copy = SelfCopy::mark(&message, &Protection::Cipher { outer_fields: &outer });
    let notation = Notation {
        name: SELF_COPY_NOTATION.to_string(),
        value: copy.notation_value(),
    };
    let mut out = Vec::with_capacity(message.len() * 4 / 3 + 8192);
    write_pgp_mime(&outer, &mut &copy.payload[..], &mut out, &[&owner.cert], owner, &[notation])?;
    Ok(out)
}

/// One copy a [`Sealer`] will write.
#[derive(Debug, Clone)]
pub struct CopyPlan<'k> {
    /// Its envelope recipients.
    pub recipients: Vec<String>,
    /// The separate copy for one Bcc recipient.
    pub is_bcc: bool,
    keys: Vec<&'k Cert>,
}

/// Encrypts a message whose header section is known and whose body
/// arrives as a stream (a spool file, for large messages): it decides the
/// copies, the protected and outer headers and the gossip once, then
/// writes each copy from a fresh reader of the body.
pub struct Sealer<'k> {
    outer: Vec<Vec<u8>>,
    frame: PayloadFrame,
    copies: Vec<CopyPlan<'k>>,
    sender: &'k UnlockedKey,
}

impl<'k> Sealer<'k> {
    /// Plans the copies for `envelope` from the message's header section
    /// (CRLF, without the blank line). The body must not be OpenPGP
    /// already (callers check with [`super::protection`]).
    pub fn new(header: &[u8], envelope: &Envelope, sender: &'k UnlockedKey, keystore: &'k Keystore) -> Result<Sealer<'k>, MessageError> {
        let sender_email = normalize_email(&envelope.sender);
        let mut section = header.to_vec();
        section.extend_from_slice(b"\r\n");
        let completed = complete_headers(&section, &sender_email);
        let entity = Entity::parse(&completed);

        let visible_in_headers = addresses(entity.header, &["To", "Cc"]);
        let mut visible: Vec<String> = Vec::new();
        let mut bcc: Vec<String> = Vec::new();
        for r in envelope.recipients.iter().map(|r| normalize_email(r)) {
            let list = if visible_in_headers.contains(&r) { &mut visible } else { &mut bcc };
            if !list.contains(&r) {
                list.push(r);
            }
        }
        if visible.is_empty() && bcc.is_empty() {
            return Err(MessageError::NoRecipients);
        }
        let lookup = |addr: &String| keystore.recipient(addr).map(|c| (addr.clone(), c));
        let visible_keys: Vec<(String, &Cert)> = visible.iter().map(lookup).collect::<Result<_, _>>()?;
        let bcc_keys: Vec<(String, &Cert)> = bcc.iter().map(lookup).collect::<Result<_, _>>()?;

        // Gossip helps recipients reply to all; Thunderbird sends it only
        // when at least two others are visible, and never for Bcc.
        let others: Vec<&(String, &Cert)> = visible_keys.iter().filter(|(a, _)| *a != sender_email).collect();
        let gossip = if others.len() >= 2 {
            others
                .iter()
                .map(|(addr, cert)| autocrypt_header("Autocrypt-Gossip", addr, cert, false))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };

        let mut outer = outer_fields(&entity, true);
        outer.push(autocrypt_header(
            "Autocrypt",
            &sender_email,
            &sender.cert,
            sender.prefer_encrypt_mutual,
        )?);
        let frame = PayloadFrame::new(&entity, &Protection::Cipher { outer_fields: &outer }, &gossip);
        tracing::debug!(
            sender = %sender_email,
            visible = visible_keys.len(),
            bcc = bcc_keys.len(),
            gossip = gossip.len(),
            "encrypting message"
        );

        let plan = |recipients: &[(String, &'k Cert)], is_bcc: bool| {
            let mut keys: Vec<&'k Cert> = vec![&sender.cert];
            for (_, cert) in recipients {
                if !keys.iter().any(|k| k.fingerprint() == cert.fingerprint()) {
                    keys.push(cert);
                }
            }
            CopyPlan {
                recipients: recipients.iter().map(|(a, _)| a.clone()).collect(),
                is_bcc,
                keys,
            }
        };
        let mut copies = Vec::new();
        if !visible_keys.is_empty() {
            copies.push(plan(&visible_keys, false));
        }
        for one in &bcc_keys {
            copies.push(plan(std::slice::from_ref(one), true));
        }
        Ok(Sealer {
            outer,
            frame,
            copies,
            sender,
        })
    }

    /// The copies to write, visible copy first.
    pub fn copies(&self) -> &[CopyPlan<'k>] {
        &self.copies
    }

    /// Writes copy `index`: the outer header and the two RFC 3156 parts,
    /// the payload (frame, then `body`) signed and encrypted in the second.
    pub fn write_copy(&self, index: usize, body: &mut dyn Read, out: &mut (dyn Write + Send + Sync)) -> Result<(), MessageError> {
        let mut payload = (&self.frame.head[..]).chain(body);
        write_pgp_mime(&self.outer, &mut payload, out, &self.copies[index].keys, self.sender, &[])
    }
}

/// Writes an RFC 3156 multipart/encrypted message: `outer` fields, the
/// version part, and `payload` signed by `signer` (with `notations`) and
/// encrypted to `keys` in the data part.
fn write_pgp_mime(
    outer: &[Vec<u8>],
    payload: &mut dyn Read,
    out: &mut (dyn Write + Send + Sync),
    keys: &[&Cert],
    signer: &UnlockedKey,
    notations: &[Notation],
) -> Result<(), MessageError> {
    let boundary = new_boundary();
    for field in outer {
        out.write_all(field)?;
    }
    out.write_all(
        format!(
            "MIME-Version: 1.0\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{boundary}\"\r\n\
\r\n\
This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
--{boundary}\r\n\
Content-Type: application/pgp-encrypted\r\n\
Content-Description: PGP/MIME version identification\r\n\
\r\n\
Version: 1\r\n\
\r\n\
--{boundary}\r\n\
Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
Content-Description: OpenPGP encrypted message\r\n\
Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
\r\n"
        )
        .as_bytes(),
    )?;
    encrypt_and_sign_to(payload, out, keys, signer, notations)?;
    // The armor ends with a newline; the blank line before the closing
    // delimiter matches what Thunderbird writes.
    out.write_all(format!("\r\n--{boundary}--\r\n").as_bytes())?;
    Ok(())
}

/// Adds `Date` and `Message-ID` when the client left them out, so that the
/// protected copy inside and the outer header agree (a relay adding them
/// later would only touch the outside).
pub(super) fn complete_headers(message: &[u8], sender_email: &str) -> Vec<u8> {
    let entity = Entity::parse(message);
    let mut extra = Vec::new();
    if entity.field("Date").is_none() {
        extra.extend_from_slice(format!("Date: {}\r\n", mail_builder::headers::date::Date::now().to_rfc822()).as_bytes());
    }
    if entity.field("Message-ID").is_none() {
        let domain = sender_email.rsplit_once('@').map(|(_, d)| d).unwrap_or("sealpost.invalid");
        let mut id = Vec::new();
        mail_builder::headers::message_id::generate_message_id_header(&mut id, domain).expect("writing to a Vec cannot fail");
        extra.extend_from_slice(b"Message-ID: ");
        extra.extend_from_slice(&id);
        extra.extend_from_slice(b"\r\n");
    }
    if extra.is_empty() {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len() + extra.len());
    out.extend_from_slice(entity.header);
    out.extend_from_slice(&extra);
    out.extend_from_slice(&message[entity.header.len()..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_from_headers_or_explicit_values() {
        let message = b"From: A <A@x.test>\r\nTo: b@x.test\r\nBcc: c@x.test\r\n\r\n";
        let env = Envelope::resolve(message, None, &[]).unwrap();
        assert_eq!(env.sender, "a@x.test");
        assert_eq!(env.recipients, vec!["b@x.test", "c@x.test"]);
        let explicit = Envelope::resolve(b"Subject: x\r\n\r\n", Some("Me@x.test"), &["You@x.test".to_string()]).unwrap();
        assert_eq!(
            (explicit.sender.as_str(), explicit.recipients[0].as_str()),
            ("me@x.test", "you@x.test")
        );
        let only_to = Envelope::resolve(b"From: a@x.test\r\n\r\n", None, &["d@x.test".to_string()]).unwrap();
        assert_eq!(only_to.recipients, vec!["d@x.test"]);
        assert!(matches!(
            Envelope::resolve(b"To: b@x\r\n\r\n", None, &[]),
            Err(MessageError::NoSender)
        ));
        assert!(matches!(
            Envelope::resolve(b"From: a@x\r\n\r\n", None, &[]),
            Err(MessageError::NoRecipients)
        ));
    }

    #[test]
    fn missing_date_and_message_id_are_added_before_the_body() {
        let out = complete_headers(b"From: a@x.test\r\n\r\nbody\r\n", "a@x.test");
        let e = Entity::parse(&out);
        assert!(e.field("Date").is_some());
        assert!(e.field("Message-ID").unwrap().value().ends_with("@x.test>"));
        assert_eq!(e.body, b"body\r\n");
        let untouched = b"Date: x\r\nMessage-ID: <a@b>\r\n\r\nb";
        assert_eq!(complete_headers(untouched, "a@x"), untouched.to_vec());
    }
}
