//! The BODYSTRUCTURE, BODY and ENVELOPE writers: Dovecot 2.3's
//! `imap-bodystructure.c` and `imap-envelope.c` over the message tree.

use super::part::{Address, Envelope, Param, PartData, FLAG_DIGEST, FLAG_MULTIPART, FLAG_RFC822};
use super::MessageView;
use crate::imap::emit;

/// The body structure of part `idx` without its outer parentheses, with
/// extension data when `extended` (`BODYSTRUCTURE`) or without (`BODY`).
pub(super) fn structure(view: &MessageView<'_>, out: &mut Vec<u8>, idx: usize, extended: bool) {
    let part = &view.parts[idx];
    let data = &part.data;
    if part.has(FLAG_MULTIPART) {
        if part.children.is_empty() {
            // Dovecot's stand-in for a multipart without parts.
            out.extend_from_slice(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
            if extended {
                out.extend_from_slice(b" NIL NIL NIL NIL");
            }
            out.push(b')');
        }
        for &child in &part.children {
            out.push(b'(');
            structure(view, out, child, extended);
            out.push(b')');
        }
        out.push(b' ');
        emit::string(out, data.content_subtype.as_deref().unwrap_or(b""));
        if extended {
            out.push(b' ');
            write_params(out, &data.type_params, false);
            write_extension_common(out, data);
        }
        return;
    }
    let text;
    if part.has(FLAG_RFC822) {
        out.extend_from_slice(b"\"message\" \"rfc822\"");
        text = false;
    } else if is_truncated(view, idx) {
        // A container Dovecot did not descend into (too deep, too
        // many parts): it calls it application/octet-stream.
        out.extend_from_slice(b"\"application\" \"octet-stream\"");
        text = false;
    } else if let Some(ct) = &data.content_type {
        text = ct.eq_ignore_ascii_case(b"text");
        emit::string(out, ct);
        out.push(b' ');
        emit::string(out, data.content_subtype.as_deref().unwrap_or(b""));
    } else {
        out.extend_from_slice(b"\"text\" \"plain\"");
        text = true;
    }
    out.push(b' ');
    write_params(out, &data.type_params, text);
    out.push(b' ');
    emit::nstring_unfolded(out, data.id.as_deref());
    out.push(b' ');
    emit::nstring_unfolded(out, data.description.as_deref());
    out.push(b' ');
    match &data.transfer_encoding {
        Some(te) => emit::string(out, te),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    out.push(b' ');
    emit::number(out, part.body_len as u64);
    if text {
        out.push(b' ');
        emit::number(out, u64::from(part.body_lines));
    } else if part.has(FLAG_RFC822) {
        if let Some(&child) = part.children.first() {
            out.extend_from_slice(b" (");
            write_envelope(out, view.parts[child].envelope.as_ref());
            out.extend_from_slice(b") (");
            structure(view, out, child, extended);
            out.push(b')');
        }
        out.push(b' ');
        emit::number(out, u64::from(part.body_lines));
    }
    if extended {
        out.push(b' ');
        emit::nstring_unfolded(out, data.md5.as_deref());
        write_extension_common(out, data);
    }
}

/// Dovecot's `part_is_truncated`: a part whose Content-Type says
/// multipart or message/rfc822 (or that defaults to message/rfc822 in
/// a digest) but that was not parsed as one.
fn is_truncated(view: &MessageView<'_>, idx: usize) -> bool {
    let part = &view.parts[idx];
    match &part.data.content_type {
        Some(ct) => {
            let sub = part.data.content_subtype.as_deref().unwrap_or(b"");
            (ct.eq_ignore_ascii_case(b"message") && sub.eq_ignore_ascii_case(b"rfc822")) || ct.eq_ignore_ascii_case(b"multipart")
        }
        None => part.parent.is_some_and(|p| view.parts[p].has(FLAG_DIGEST)),
    }
}

/// Parameters as `("name" "value" ...)`, `NIL` when there are none; text
/// parts get Dovecot's default `"charset" "us-ascii"` when they have no
/// charset parameter.
fn write_params(out: &mut Vec<u8>, params: &[Param], default_charset: bool) {
    if !default_charset && params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if default_charset && name.eq_ignore_ascii_case(b"charset") {
            seen_charset = true;
        }
        emit::string(out, name);
        out.push(b' ');
        emit::string(out, value);
    }
    if default_charset && !seen_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

/// Disposition, language and location, each preceded by a space.
fn write_extension_common(out: &mut Vec<u8>, data: &PartData) {
    out.push(b' ');
    match &data.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            emit::string(out, d);
            out.push(b' ');
            write_params(out, &data.disposition_params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &data.language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => emit::list(out, langs, |o, l| emit::string(o, l)),
    }
    out.push(b' ');
    emit::nstring_unfolded(out, data.location.as_deref());
}

/// The ten envelope fields, without the outer parentheses.
pub(super) fn write_envelope(out: &mut Vec<u8>, env: Option<&Envelope>) {
    let Some(env) = env else {
        out.extend_from_slice(b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL");
        return;
    };
    emit::nstring_unfolded(out, env.date.as_deref());
    out.push(b' ');
    match &env.subject {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => emit::string_for_humans(out, s),
    }
    let from = env.from.as_deref();
    for list in [
        from,
        env.sender.as_deref().or(from),
        env.reply_to.as_deref().or(from),
        env.to.as_deref(),
        env.cc.as_deref(),
        env.bcc.as_deref(),
    ] {
        out.push(b' ');
        write_addresses(out, list);
    }
    out.push(b' ');
    emit::nstring_unfolded(out, env.in_reply_to.as_deref());
    out.push(b' ');
    emit::nstring_unfolded(out, env.message_id.as_deref());
}

/// An ENVELOPE address list: `NIL`, or the addresses in parentheses.
pub(super) fn write_addresses(out: &mut Vec<u8>, list: Option<&[Address]>) {
    let Some(list) = list else {
        out.extend_from_slice(b"NIL");
        return;
    };
    out.push(b'(');
    for a in list {
        out.push(b'(');
        match &a.name {
            None => out.extend_from_slice(b"NIL"),
            Some(n) => emit::string_for_humans(out, n),
        }
        out.push(b' ');
        emit::nstring(out, a.route.as_deref());
        out.push(b' ');
        emit::nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        emit::nstring(out, a.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}
