//! PGP/MIME, inline PGP or multipart/signed → what a mail client shows,
//! with a `Sealpost-Status` header that says what was checked.

use super::payload::{SelfCopy, SELF_COPY_NOTATION};
use super::STATUS_HEADER;
use crate::mime::{addresses, split_multipart, to_crlf, Entity};
use crate::pgp::{self, Keystore, SignatureCheck, SignatureStatus, UnlockedKey};

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const ARMOR_END: &[u8] = b"-----END PGP MESSAGE-----";

/// What Sealpost found and checked, rendered as the `Sealpost-Status`
/// header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not OpenPGP-protected at all.
    NotProtected,
    /// Decrypted; the signatures inside and any warnings.
    Decrypted {
        /// Signatures found inside the encryption.
        signatures: SignatureCheck,
        /// Inline PGP rather than PGP/MIME.
        inline: bool,
        /// Problems a reader should know about (spoofing signals).
        warnings: Vec<String>,
    },
    /// A multipart/signed message that was only verified.
    Signed {
        /// The detached signature's result.
        signatures: SignatureCheck,
        /// Problems a reader should know about.
        warnings: Vec<String>,
    },
    /// Protected, but it could not be decrypted or verified.
    Failed {
        /// Why, in words the user can act on.
        reason: String,
    },
}

impl Status {
    /// The header value, e.g. `decrypted; signature=good; signer=ABCD…`.
    pub fn header_value(&self) -> String {
        let (mut out, check, warnings) = match self {
            Status::NotProtected => return "not-protected".into(),
            Status::Failed { reason } => return format!("failed; reason=\"{}\"", quote(reason)),
            Status::Decrypted {
                signatures,
                inline: true,
                warnings,
            } => ("decrypted; format=inline".to_string(), signatures, warnings),
            Status::Decrypted {
                signatures,
                inline: false,
                warnings,
            } => ("decrypted".to_string(), signatures, warnings),
            Status::Signed { signatures, warnings } => ("signed".to_string(), signatures, warnings),
        };
        match check.best() {
            None => out.push_str("; signature=none"),
            Some(SignatureStatus::Good { signer, .. }) => out.push_str(&format!("; signature=good; signer={signer}")),
            Some(SignatureStatus::UnknownKey { issuer }) => out.push_str(&format!("; signature=unknown-key; issuer={issuer}")),
            Some(SignatureStatus::Bad { reason }) => out.push_str(&format!("; signature=bad; reason=\"{}\"", quote(reason))),
        }
        for w in warnings {
            out.push_str(&format!("; warning=\"{}\"", quote(w)));
        }
        out
    }

    /// True when the message was protected but could not be opened.
    pub fn is_failure(&self) -> bool {
        matches!(self, Status::Failed { .. })
    }
}

/// A good signature by a key that does not carry the From address is a
/// spoofing signal: anyone can sign with their own key.
fn signer_warning(from: Option<&String>, signatures: &SignatureCheck) -> Option<String> {
    match (from, signatures.best()) {
        (Some(from), Some(SignatureStatus::Good { signer_emails, .. })) if !signer_emails.contains(from) => {
            Some(format!("the signing key does not belong to the From address <{from}>"))
        }
        _ => None,
    }
}

/// A header parameter value: quotes and backslashes escaped, every control
/// character (line breaks, ESC, NUL) turned into a space, so nothing a
/// sender controls can break the line or reach a terminal raw.
fn quote(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// The result of [`decrypt_message`].
#[derive(Debug)]
pub struct DecryptOutcome {
    /// The message to show: decrypted with protected headers restored, or
    /// the original bytes, with one `Sealpost-Status` header; or, for a
    /// copy the account sealed for itself, exactly what it sealed.
    pub message: Vec<u8>,
    /// What was found.
    pub status: Status,
    /// The `Autocrypt-Gossip` header values of the encrypted payload's
    /// root (unfolded; not shown to the client, kept for key discovery).
    pub gossip: Vec<String>,
}

/// The OpenPGP form of a message.
enum Form<'a> {
    /// RFC 3156 multipart/encrypted; the armored second part.
    PgpMime(&'a [u8]),
    /// RFC 3156 multipart/signed: signed part, signature.
    Signed(&'a [u8], &'a [u8]),
    /// A single text part holding an armored message.
    Inline,
    Plain,
}

fn classify<'a>(entity: &Entity<'a>) -> Form<'a> {
    let ct = entity.content_type();
    if ct.is("multipart/encrypted") || ct.is("multipart/mixed") {
        // multipart/mixed covers PGP/MIME that Exchange rewrote: the same
        // two parts under the wrong type.
        if let Some(parts) = entity.parts() {
            let control = parts
                .iter()
                .position(|p| Entity::parse(p).content_type().is("application/pgp-encrypted"));
            if let Some(i) = control {
                if let Some(data) = parts.get(i + 1) {
                    let data = Entity::parse(data);
                    if find(data.body, ARMOR_BEGIN).is_some() {
                        return Form::PgpMime(data.body);
                    }
                }
            }
        }
    }
    if ct.is("multipart/signed")
        && ct
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"))
    {
        if let Some(parts) = ct.param("boundary").and_then(|b| split_multipart(entity.body, b)) {
            if parts.len() == 2 {
                return Form::Signed(parts[0], Entity::parse(parts[1]).body);
            }
        }
    }
    if ct.mime_type.starts_with("text/") {
        let armored = find(entity.body, ARMOR_BEGIN).is_some()
            || (entity.transfer_encoding() == "base64" && find(&decoded_body(entity), ARMOR_BEGIN).is_some());
        if armored {
            return Form::Inline;
        }
    }
    Form::Plain
}

/// True for input that already carries OpenPGP protection.
pub(super) fn is_protected(entity: &Entity<'_>) -> bool {
    !matches!(classify(entity), Form::Plain)
}

/// True for input that is already encrypted (PGP/MIME or inline PGP).
pub(super) fn is_encrypted(entity: &Entity<'_>) -> bool {
    matches!(classify(entity), Form::PgpMime(_) | Form::Inline)
}

/// The OpenPGP protection a message already carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// None: plain mail.
    None,
    /// Signed (multipart/signed) but readable by anyone.
    Signed,
    /// Encrypted (PGP/MIME or inline PGP).
    Encrypted,
}

/// Tells plain, signed and encrypted mail apart, as the submission proxy
/// must before it touches a message.
pub fn protection(message: &[u8]) -> Protection {
    match classify(&Entity::parse(message)) {
        Form::Plain => Protection::None,
        Form::Signed(..) => Protection::Signed,
        Form::PgpMime(_) | Form::Inline => Protection::Encrypted,
    }
}

/// Decrypts and verifies `message` with our unlocked `keys`; signer
/// certificates come from `keystore`. Never fails: when the message cannot
/// be opened the original bytes come back untouched with a status saying
/// why. Any `Sealpost-Status` the message arrived with is removed, so a
/// sender cannot forge one. A message one of `keys` sealed for itself
/// (see [`super::seal_for_self`]) comes back as it was sealed, with no
/// status: the account's own upload, byte for byte.
pub fn decrypt_message(message: &[u8], keys: &[UnlockedKey], keystore: &Keystore) -> DecryptOutcome {
    let entity = Entity::parse(message);
    let no_gossip = |(body, status)| (body, status, Vec::new());
    let result = match classify(&entity) {
        Form::Plain => Err(Status::NotProtected),
        Form::PgpMime(armored) => open_pgp_mime(&entity, armored, keys, keystore),
        Form::Signed(signed, signature) => verify_signed(&entity, message, signed, signature, keystore).map(no_gossip),
        Form::Inline => open_inline(&entity, keys, keystore).map(no_gossip),
    };
    let status = match &result {
        Ok((_, status, _)) | Err(status) => status,
    };
    // The status names fingerprints and reasons, never content.
    tracing::debug!(status = %status.header_value(), "opened message");
    match result {
        Ok((body, status, gossip)) => DecryptOutcome {
            message: body,
            status,
            gossip,
        },
        Err(status) => DecryptOutcome {
            message: with_status(&entity, message, &status),
            status,
            gossip: Vec::new(),
        },
    }
}

/// The original message with any forged status header removed and ours
/// added as the last header field; every other byte as it was.
fn with_status(entity: &Entity<'_>, original: &[u8], status: &Status) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len() + 128);
    for f in &entity.fields {
        if !f.is(STATUS_HEADER) {
            out.extend_from_slice(f.raw);
        }
    }
    push_status(&mut out, status);
    out.extend_from_slice(&original[entity.header.len()..]);
    out
}

/// Appends the status as the header's last field. Last, because a field
/// that follows can never be glued to it: a malformed line starting with
/// white space after it would read as a continuation of our verdict.
fn push_status(out: &mut Vec<u8>, status: &Status) {
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("{STATUS_HEADER}: {}\r\n", status.header_value()).as_bytes());
}

/// A decrypted message, its status and its gossip.
type Opened = (Vec<u8>, Status, Vec<String>);

fn open_pgp_mime(outer: &Entity<'_>, armored: &[u8], keys: &[UnlockedKey], keystore: &Keystore) -> Result<Opened, Status> {
    let decrypted = pgp::decrypt(armored, keys, keystore).map_err(|reason| Status::Failed { reason })?;
    if !decrypted.was_encrypted {
        return Err(Status::Failed {
            reason: "multipart/encrypted message without an encryption layer".into(),
        });
    }
    if let Some(message) = own_copy(&decrypted, keys) {
        let status = Status::Decrypted {
            signatures: decrypted.signatures,
            inline: false,
            warnings: Vec::new(),
        };
        return Ok((message, status, Vec::new()));
    }
    let plaintext = match to_crlf(&decrypted.plaintext) {
        std::borrow::Cow::Borrowed(_) => decrypted.plaintext,
        std::borrow::Cow::Owned(converted) => converted,
    };
    let mut signatures = decrypted.signatures;
    let mut payload = Entity::parse(&plaintext);
    // RFC 3156 §6.1: a multipart/signed inside the encryption.
    if let Form::Signed(signed, signature) = classify(&payload) {
        match pgp::verify_detached(signed, signature, keystore) {
            Ok(check) => signatures.signatures.extend(check.signatures),
            Err(reason) => signatures.signatures.push(SignatureStatus::Bad { reason }),
        }
        payload = Entity::parse(signed);
    }
    // pEp and RFC 8551 wrap the whole message as message/rfc822.
    let ct = payload.content_type();
    let gossip: Vec<String> = payload
        .fields
        .iter()
        .filter(|f| f.is("Autocrypt-Gossip"))
        .map(|f| f.value())
        .collect();
    let (header, status, body) = if ct.is("message/rfc822") && ct.param("hp").is_none() && ct.param("protected-headers").is_none() {
        let inner = Entity::parse(payload.body);
        let (header, status) = render(outer, &inner, true, signatures, false, Vec::new());
        (header, status, range_within(&plaintext, inner.body))
    } else {
        let marked = ct.param("protected-headers").is_some() || ct.param("hp").is_some();
        let (header, status) = render(outer, &payload, marked, signatures, false, Vec::new());
        (header, status, range_within(&plaintext, payload.body))
    };
    Ok((assemble(header, plaintext, body), status, gossip))
}

/// The message a copy sealed for itself restores, when `decrypted` is
/// one: a good signature by one of our own `keys` carries the self-copy
/// notation. The notation is inside the signature, so only the holder of
/// the secret key can have written it: no one else can make mail show as
/// the account's own upload, and the account's mail to others (signed
/// without it) never does either.
fn own_copy(decrypted: &pgp::Decrypted, keys: &[UnlockedKey]) -> Option<Vec<u8>> {
    let own = |signer: &String| keys.iter().any(|k| k.cert.fingerprint().to_hex() == *signer);
    decrypted
        .notations
        .iter()
        .filter(|(signer, notation)| notation.name == SELF_COPY_NOTATION && own(signer))
        .find_map(|(_, notation)| SelfCopy::restore(&decrypted.plaintext, &notation.value))
}

/// Where `part` (a sub-slice) lies within `buffer`.
fn range_within(buffer: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - buffer.as_ptr() as usize;
    debug_assert!(start + part.len() <= buffer.len());
    start..start + part.len()
}

/// `header` followed by `buffer[body]`, built in `buffer`'s own memory:
/// a large decrypted body is moved, not copied.
fn assemble(header: Vec<u8>, mut buffer: Vec<u8>, body: std::ops::Range<usize>) -> Vec<u8> {
    buffer.truncate(body.end);
    buffer.splice(0..body.start, header);
    buffer
}

/// Builds the header section a client sees, blank line included: outer
/// fields not replaced by protected ones, then the protected fields, then
/// the payload's own content fields, then the status. The payload's body
/// follows it unchanged.
fn render(
    outer: &Entity<'_>,
    payload: &Entity<'_>,
    has_protected_headers: bool,
    signatures: SignatureCheck,
    inline: bool,
    mut warnings: Vec<String>,
) -> (Vec<u8>, Status) {
    let protected: Vec<_> = if has_protected_headers {
        payload
            .fields
            .iter()
            .filter(|f| {
                !f.is_structural() && !f.name().is_empty() && !f.is("HP-Outer") && !f.is("Autocrypt-Gossip") && !f.is(STATUS_HEADER)
            })
            .collect()
    } else {
        Vec::new()
    };
    let outer_from = addresses(outer.header, &["From"]);
    let protected_header: Vec<u8> = protected.iter().flat_map(|f| f.raw.iter().copied()).collect();
    let protected_from = addresses(&protected_header, &["From"]);
    if !protected_from.is_empty() && !outer_from.is_empty() && protected_from != outer_from {
        warnings.push(format!(
            "protected From <{}> differs from outer From <{}>",
            protected_from.join(", "),
            outer_from.join(", ")
        ));
    }
    warnings.extend(signer_warning(protected_from.first().or(outer_from.first()), &signatures));
    let status = Status::Decrypted {
        signatures,
        inline,
        warnings,
    };

    let mut out = Vec::with_capacity(outer.header.len() + payload.header.len() + 512);
    for f in &outer.fields {
        let replaced = protected.iter().any(|p| p.name().eq_ignore_ascii_case(f.name()));
        let keep = !replaced && !f.is(STATUS_HEADER) && (!f.is_structural() || f.is("MIME-Version"));
        if keep {
            out.extend_from_slice(&to_crlf(f.raw));
        }
    }
    for f in &protected {
        out.extend_from_slice(&to_crlf(f.raw));
    }
    for f in payload.fields.iter().filter(|f| f.is_structural() && !f.is("MIME-Version")) {
        out.extend_from_slice(&to_crlf(f.raw));
    }
    push_status(&mut out, &status);
    out.extend_from_slice(b"\r\n");
    (out, status)
}

fn verify_signed(
    entity: &Entity<'_>,
    original: &[u8],
    signed: &[u8],
    signature: &[u8],
    keystore: &Keystore,
) -> Result<(Vec<u8>, Status), Status> {
    // The signature covers the part with CRLF line endings (RFC 3156 §5).
    let canonical = to_crlf(signed);
    let signatures = match pgp::verify_detached(&canonical, signature, keystore) {
        Ok(check) => check,
        Err(reason) => SignatureCheck {
            signatures: vec![SignatureStatus::Bad { reason }],
        },
    };
    let warnings = signer_warning(addresses(entity.header, &["From"]).first(), &signatures)
        .into_iter()
        .collect();
    let status = Status::Signed { signatures, warnings };
    let message = with_status(entity, original, &status);
    Ok((message, status))
}

/// Inline PGP: only the armored block is decrypted, and the result replaces
/// the whole body. Text around the block is not merged with the decrypted
/// text, so an attacker cannot wrap ciphertext in their own markup (EFAIL).
fn open_inline(entity: &Entity<'_>, keys: &[UnlockedKey], keystore: &Keystore) -> Result<(Vec<u8>, Status), Status> {
    let text = decoded_body(entity);
    let start = find(&text, ARMOR_BEGIN).ok_or_else(|| Status::Failed {
        reason: "inline PGP block not found after transfer decoding".into(),
    })?;
    let end = find(&text[start..], ARMOR_END)
        .map(|i| start + i + ARMOR_END.len())
        .ok_or_else(|| Status::Failed {
            reason: "the inline PGP block is truncated (no END line)".into(),
        })?;
    let decrypted = pgp::decrypt(&text[start..end], keys, keystore).map_err(|reason| Status::Failed { reason })?;
    if !decrypted.was_encrypted {
        return Err(Status::Failed {
            reason: "inline PGP block is not encrypted".into(),
        });
    }
    let plaintext = to_crlf(&decrypted.plaintext).into_owned();
    let charset = if std::str::from_utf8(&plaintext).is_ok() {
        "utf-8".to_string()
    } else {
        entity.content_type().param("charset").unwrap_or("utf-8").to_string()
    };
    let mut mixed = Vec::with_capacity(plaintext.len() + 256);
    mixed.extend_from_slice(format!("Content-Type: text/plain; charset=\"{charset}\"\r\nContent-Transfer-Encoding: 8bit\r\n").as_bytes());
    let mut warnings = Vec::new();
    let had_surrounding_text =
        text[..start].iter().any(|b| !b.is_ascii_whitespace()) || text[end..].iter().any(|b| !b.is_ascii_whitespace());
    if had_surrounding_text {
        warnings.push("unencrypted text around the inline PGP block was removed".into());
    }
    mixed.extend_from_slice(b"\r\n");
    mixed.extend_from_slice(&plaintext);
    let payload = Entity::parse(&mixed);
    let (header, status) = render(entity, &payload, false, decrypted.signatures, true, warnings);
    let body = range_within(&mixed, payload.body);
    Ok((assemble(header, mixed, body), status))
}

/// The body after undoing quoted-printable or base64.
fn decoded_body(entity: &Entity<'_>) -> Vec<u8> {
    let mut section = entity.header.to_vec();
    section.extend_from_slice(b"\r\n\r\n");
    section.extend_from_slice(entity.body);
    match entity.transfer_encoding().as_str() {
        "quoted-printable" | "base64" => mail_parser::MessageParser::new()
            .parse(&section)
            .and_then(|m| m.root_part().contents().to_vec().into())
            .unwrap_or_else(|| entity.body.to_vec()),
        _ => entity.body.to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_machine_readable() {
        let good = Status::Decrypted {
            signatures: SignatureCheck {
                signatures: vec![SignatureStatus::Good {
                    signer: "ABCD".into(),
                    signer_emails: vec!["a@x.test".into()],
                }],
            },
            inline: false,
            warnings: Vec::new(),
        };
        assert_eq!(good.header_value(), "decrypted; signature=good; signer=ABCD");
        let spoof = Status::Decrypted {
            signatures: SignatureCheck::default(),
            inline: true,
            warnings: vec!["protected From differs".into()],
        };
        assert_eq!(
            spoof.header_value(),
            "decrypted; format=inline; signature=none; warning=\"protected From differs\""
        );
        let failed = Status::Failed {
            reason: "no \"key\"\r\n".into(),
        };
        assert_eq!(failed.header_value(), "failed; reason=\"no \\\"key\\\"  \"");
    }

    #[test]
    fn forged_status_headers_are_removed_from_plain_mail() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path()).unwrap();
        let msg = b"From: a@x.test\r\nSealpost-Status: decrypted; signature=good\r\n\r\nhello\r\n";
        let out = decrypt_message(msg, &[], &ks);
        assert_eq!(out.status, Status::NotProtected);
        assert_eq!(
            out.message,
            b"From: a@x.test\r\nSealpost-Status: not-protected\r\n\r\nhello\r\n".to_vec()
        );
    }
}
