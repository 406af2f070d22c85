//! The FETCH items that decode bodies (`BINARY[...]`, `BINARY.SIZE[...]`,
//! RFC 3516; `PREVIEW`, RFC 8970), asked one FETCH at a time (a part that
//! cannot be decoded fails the whole command), with what
//! `sealpost::imap::view` says each answer must be, and the errors of
//! Dovecot 2.3.19 that a comparison has to name:
//!
//! - It drops the connection when base64 or quoted-printable stops in the
//!   middle of a unit; the view calls that invalid data (`NO [PARSE]`).
//! - Where nothing needed decoding it means to send the section as it is,
//!   but cuts it to the length its headers would have had relabelled
//!   `Content-Transfer-Encoding: binary` (a multipart or message/rfc822
//!   part labelled base64 or quoted-printable, a header without its blank
//!   line), or drops the connection when that is longer.
//! - Its `BINARY.SIZE` of such a message differs from the length of its
//!   own `BINARY` answer.
//!
//! And one answer that is no error: to `PREVIEW (LAZY)` Dovecot may say
//! `NIL` (RFC 8970: the preview is not at hand); Sealpost, which has the
//! decrypted message at hand, always gives the preview.

use sealpost::imap::emit;
use sealpost::imap::section::{partial, Section};
use sealpost::imap::view::{BinaryError, MessageView};

use super::rawimap::{ask, binary_probes, show, Answer, Imap, Probe, BINARY_SIZES};

/// What an item asks for.
enum Kind {
    Binary(Probe),
    Size(&'static str),
    Preview,
}

/// One item, and the answer the view says it must get.
pub struct Item {
    kind: Kind,
    /// How it is asked for.
    pub request: String,
    /// How its answer names it.
    pub name: String,
    /// The value, or why the FETCH fails.
    pub wanted: Result<Vec<u8>, BinaryError>,
}

/// Every item asked about a message, in the order to ask them: BINARY
/// first, since Dovecot, after computing a BINARY.SIZE, announces a
/// following `BINARY[]` of the same message as a literal8 whatever it
/// holds; then BINARY.SIZE, PREVIEW and PREVIEW (LAZY).
pub fn items(view: &MessageView<'_>) -> Vec<Item> {
    let mut items: Vec<Item> = binary_probes()
        .into_iter()
        .map(|probe| Item {
            request: probe.request_as("BINARY"),
            name: probe.response_name_as("BINARY"),
            wanted: binary_wanted(view, &probe),
            kind: Kind::Binary(probe),
        })
        .collect();
    for spec in BINARY_SIZES {
        let section = Section::parse(spec.as_bytes()).expect("size sections parse");
        items.push(Item {
            kind: Kind::Size(spec),
            request: format!("BINARY.SIZE[{spec}]"),
            name: format!("BINARY.SIZE[{spec}]"),
            wanted: view.binary_size(&section).map(|n| n.to_string().into_bytes()),
        });
    }
    let mut preview = Vec::new();
    emit::string(&mut preview, view.preview().as_bytes());
    for request in ["PREVIEW", "PREVIEW (LAZY)"] {
        items.push(Item {
            kind: Kind::Preview,
            request: request.into(),
            name: "PREVIEW".into(),
            wanted: Ok(preview.clone()),
        });
    }
    items
}

/// The answers to `items` about message `uid`, one FETCH each; after the
/// server dropped the connection, `reconnect` gives a new one.
pub fn ask_all(imap: &mut Imap, uid: u32, items: &[Item], reconnect: &mut dyn FnMut() -> Imap) -> Vec<Answer> {
    items
        .iter()
        .map(|item| {
            let answer = ask(imap, uid, &item.request, &item.name);
            if answer == Answer::Closed {
                *imap = reconnect();
            }
            answer
        })
        .collect()
}

/// True when `answer` is exactly what the view wants.
pub fn agrees(wanted: &Result<Vec<u8>, BinaryError>, answer: &Answer) -> bool {
    match (wanted, answer) {
        (Ok(want), Answer::Value(have)) => want == have,
        (Err(e), Answer::Refused(code)) => e.code() == code,
        _ => false,
    }
}

/// Which of Dovecot's errors (see the module doc) `answers[i]` is, if it
/// is one: `answers` are Dovecot's answers to `items` about the message
/// `view` shows.
pub fn dovecot_error(view: &MessageView<'_>, items: &[Item], answers: &[Answer], i: usize) -> Option<&'static str> {
    let (item, answer) = (&items[i], &answers[i]);
    match (&item.kind, &item.wanted, answer) {
        (_, Err(BinaryError::InvalidData), Answer::Closed) => Some("Dovecot drops the connection on a unit cut short"),
        (Kind::Preview, Ok(_), Answer::Value(nil)) if item.request.ends_with("(LAZY)") && nil == b"NIL" => {
            Some("Dovecot defers a lazy preview")
        }
        (Kind::Binary(probe), Ok(want), answer) if cut_section(view, probe, want, answer) => {
            Some("Dovecot cuts a section it sends as it is")
        }
        (Kind::Size(spec), Ok(_), Answer::Value(size)) => {
            let binary = items
                .iter()
                .zip(answers)
                .enumerate()
                .find(|(_, (b, _))| matches!(&b.kind, Kind::Binary(p) if p.partial.is_none() && p.spec == *spec))?;
            let (j, (_, own)) = binary;
            let cut = dovecot_error(view, items, answers, j).is_some();
            let own_length = match own {
                Answer::Value(v) => literal_len(v),
                _ => None,
            };
            let said = std::str::from_utf8(size).ok().and_then(|s| s.parse::<usize>().ok());
            (cut || (own_length.is_some() && said != own_length)).then_some("Dovecot's BINARY.SIZE is not the length of its BINARY")
        }
        _ => None,
    }
}

/// The view's answer, or its reason to fail, for a report.
pub fn show_wanted(wanted: &Result<Vec<u8>, BinaryError>) -> String {
    match wanted {
        Ok(v) => show(v),
        Err(e) => format!("NO [{}]", e.code()),
    }
}

/// The answer to `BINARY[...]` of `probe`, from the view.
fn binary_wanted(view: &MessageView<'_>, probe: &Probe) -> Result<Vec<u8>, BinaryError> {
    let section = Section::parse(probe.spec.as_bytes()).expect("probe sections parse");
    let binary = view.binary(&section)?;
    let bytes: &[u8] = match probe.partial {
        None => &binary.bytes,
        Some((o, l)) => partial(&binary.bytes, o, Some(l)),
    };
    let mut out = Vec::new();
    if binary.literal8 {
        emit::literal8(&mut out, bytes);
    } else {
        emit::literal(&mut out, bytes);
    }
    Ok(out)
}

/// True when `answer` is Dovecot's cut (or dropped) answer to a section
/// the view sends (`wanted`) as it is.
fn cut_section(view: &MessageView<'_>, probe: &Probe, wanted: &[u8], answer: &Answer) -> bool {
    let section = Section::parse(probe.spec.as_bytes()).expect("probe sections parse");
    let plain = view.section(&section);
    let plain = match probe.partial {
        None => &plain[..],
        Some((o, l)) => partial(&plain, o, Some(l)),
    };
    let ours = literal_data(wanted);
    let as_it_is = ours == plain;
    match answer {
        Answer::Value(v) => as_it_is && ours.starts_with(&literal_data(v)),
        Answer::Closed => as_it_is,
        _ => false,
    }
}

/// The length of the data of a literal value as sent (`{n}` / `~{n}`).
fn literal_len(value: &[u8]) -> Option<usize> {
    let open = value.iter().position(|&b| b == b'{')?;
    let close = value.iter().position(|&b| b == b'}')?;
    std::str::from_utf8(&value[open + 1..close]).ok()?.parse().ok()
}

/// The data of a literal value as sent, NULs as 0x80 (as `BODY[]` has
/// them).
fn literal_data(value: &[u8]) -> Vec<u8> {
    let start = value.windows(3).position(|w| w == b"}\r\n").map_or(value.len(), |p| p + 3);
    value[start..].iter().map(|&b| if b == 0 { 0x80 } else { b }).collect()
}
