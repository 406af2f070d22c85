//! Signed-only PGP/MIME (RFC 3156 §5): multipart/signed with a detached
//! signature over a 7-bit, CRLF-canonical part.

use std::io::Write;

use super::autocrypt::autocrypt_header;
use super::encrypt::complete_headers;
use super::payload::{outer_fields, PayloadFrame, Protection};
use super::MessageError;
use crate::mime::{new_boundary, split_multipart, to_crlf, Entity};
use crate::pgp::{normalize_email, sign_detached, UnlockedKey};

/// Signs `message` as `sender_email` with `sender`'s key. The signed part is
/// the same payload the encrypted form carries (`hp="clear"`), converted to
/// 7-bit transfer encodings where needed so that no relay can alter it.
pub fn sign_message(message: &[u8], sender_email: &str, sender: &UnlockedKey) -> Result<Vec<u8>, MessageError> {
    let message = to_crlf(message);
    if super::decrypt::is_protected(&Entity::parse(&message)) {
        return Err(MessageError::AlreadyProtected);
    }
    let sender_email = normalize_email(sender_email);
    let completed = complete_headers(&message, &sender_email);
    let entity = Entity::parse(&completed);
    let signed_part = seven_bit(&PayloadFrame::new(&entity, &Protection::Clear, &[]).around(entity.body));
    let signature = to_crlf(&sign_detached(&signed_part, sender)?).into_owned();

    let boundary = new_boundary();
    let mut out = Vec::with_capacity(signed_part.len() + signature.len() + 4096);
    for field in outer_fields(&entity, false) {
        out.extend_from_slice(&field);
    }
    out.extend_from_slice(&autocrypt_header(
        "Autocrypt",
        &sender_email,
        &sender.cert,
        sender.prefer_encrypt_mutual,
    )?);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\n\
Content-Type: multipart/signed; micalg=pgp-sha256;\r\n protocol=\"application/pgp-signature\"; boundary=\"{boundary}\"\r\n\
\r\n\
This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n\
--{boundary}\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&signed_part);
    out.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\n\
Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n\
Content-Description: OpenPGP digital signature\r\n\
Content-Disposition: attachment; filename=\"OpenPGP_signature.asc\"\r\n\
\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&signature);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// Re-encodes every leaf whose body a relay might alter (8-bit bytes, lines
/// over 998 octets, trailing white space, lines starting with `From `) as
/// quoted-printable (text) or base64 (anything else). Multiparts and
/// embedded messages are walked; other parts are copied byte for byte.
fn seven_bit(entity_bytes: &[u8]) -> Vec<u8> {
    let entity = Entity::parse(entity_bytes);
    let ct = entity.content_type();
    let header_then = |body: &[u8], skip_cte: bool| -> Vec<u8> {
        let mut out = Vec::with_capacity(entity.header.len() + body.len() + 64);
        for f in &entity.fields {
            if !(skip_cte && f.is("Content-Transfer-Encoding")) {
                out.extend_from_slice(f.raw);
            }
        }
        out
    };
    if ct.is_multipart() {
        if let Some(boundary) = ct.param("boundary") {
            if let Some(parts) = split_multipart(entity.body, boundary) {
                let mut out = header_then(b"", false);
                out.extend_from_slice(b"\r\n");
                for part in parts {
                    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    out.extend_from_slice(&seven_bit(part));
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                return out;
            }
        }
    }
    let identity_encoding = matches!(entity.transfer_encoding().as_str(), "7bit" | "8bit" | "binary");
    if !identity_encoding || !needs_encoding(entity.body) {
        return entity_bytes.to_vec();
    }
    if ct.mime_type.starts_with("message/") {
        let mut out = header_then(b"", false);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&seven_bit(entity.body));
        return out;
    }
    let mut out = header_then(entity.body, true);
    let mut encoded = Vec::with_capacity(entity.body.len() * 3 / 2);
    if ct.mime_type.starts_with("text/") {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        mail_builder::encoders::quoted_printable::quoted_printable_encode(entity.body, &mut encoded, true)
            .expect("writing to a Vec cannot fail");
        encoded = escape_from_lines(&encoded);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        mail_builder::encoders::base64::base64_encode_mime(entity.body, &mut encoded, false).expect("writing to a Vec cannot fail");
    }
    out.write_all(&encoded).expect("writing to a Vec cannot fail");
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn needs_encoding(body: &[u8]) -> bool {
    body.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() > 998
            || line.starts_with(b"From ")
            || line.ends_with(b" ")
            || line.ends_with(b"\t")
            || line.iter().any(|&b| b >= 0x80 || b == 0 || b == b'\r')
    })
}

/// Quoted-printable output may still start a line with `From `, which mbox
/// tools rewrite; encoding the `F` keeps the signature valid.
fn escape_from_lines(qp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(qp.len() + 16);
    let mut at_line_start = true;
    let mut i = 0;
    while i < qp.len() {
        if at_line_start && qp[i..].starts_with(b"From ") {
            out.extend_from_slice(b"=46");
            i += 1;
            at_line_start = false;
            continue;
        }
        at_line_start = qp[i] == b'\n';
        out.push(qp[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_text_becomes_quoted_printable_and_7bit_stays() {
        let part =
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\nFrom here\r\n";
        let out = seven_bit(part);
        assert!(out.iter().all(|&b| b < 0x80));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(!text.contains("8bit"));
        assert!(text.contains("Gr=C3=BC=C3=9Fe"));
        assert!(text.contains("\r\n=46rom here"));
        let plain = b"Content-Type: text/plain\r\n\r\nhello\r\n";
        assert_eq!(seven_bit(plain), plain.to_vec());
    }

    #[test]
    fn binary_attachment_in_multipart_becomes_base64() {
        let msg = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n--b--\r\n";
        let out = seven_bit(msg);
        assert!(out.iter().all(|&b| b < 0x80));
        let e = Entity::parse(&out);
        let parts = e.parts().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Content-Type: text/plain\r\n\r\nhi");
        assert_eq!(Entity::parse(parts[1]).transfer_encoding(), "base64");
    }
}
