//! Undoing a Content-Transfer-Encoding (RFC 2045 §6): the encoding named
//! by a header field, and base64 and quoted-printable decoders that report
//! broken input the way Dovecot 2.3's decoders do, so that `BINARY` fails
//! where Dovecot's does and PREVIEW reads what Dovecot's reads.

use super::rfc822::Rfc822;

/// A Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cte {
    /// `7bit`, `8bit` or `binary`, or no field at all: nothing to undo.
    Identity,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `base64`.
    Base64,
    /// Anything else (`x-uue`, an empty value, a value with trailing
    /// garbage).
    Unknown,
}

impl Cte {
    /// Reads a field value as Dovecot's `message_decoder_parse_cte` does:
    /// one MIME token, case-insensitive, followed by nothing but white
    /// space, comments and perhaps a `;`.
    pub(super) fn parse(value: &[u8]) -> Cte {
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut token = Vec::new();
        if p.parse_mime_token(&mut token) > 0 && p.peek() != b';' {
            return Cte::Unknown;
        }
        let is = |name: &[u8]| token.eq_ignore_ascii_case(name);
        if is(b"7bit") || is(b"8bit") || is(b"binary") {
            Cte::Identity
        } else if is(b"quoted-printable") {
            Cte::QuotedPrintable
        } else if is(b"base64") {
            Cte::Base64
        } else {
            Cte::Unknown
        }
    }
}

/// Input a decoder could not read to its end: an invalid character, data
/// after base64 padding, or input that stops in the middle of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Broken;

/// The value of a base64 digit.
fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64, skipping white space (space, tab, CR, LF). Returns what
/// decoded before any problem, and the problem: a character outside the
/// alphabet, anything but white space after the padding, or a last group
/// cut short (missing digits or padding). Bits left over in the last digit
/// are ignored, as Dovecot does.
pub(super) fn base64(input: &[u8]) -> (Vec<u8>, Result<(), Broken>) {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut group = [0u8; 4];
    let mut filled = 0;
    // Padding seen in the current group; once the group is complete no
    // more data may follow.
    let mut padding = 0;
    for &b in input {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            continue;
        }
        let complete_after_padding = padding > 0 && filled == 4;
        if complete_after_padding {
            return (out, Err(Broken));
        }
        if b == b'=' {
            // Padding may stand for the third and fourth digits only.
            if filled < 2 {
                return (out, Err(Broken));
            }
            padding += 1;
            filled += 1;
        } else {
            let Some(v) = sextet(b) else { return (out, Err(Broken)) };
            if padding > 0 {
                return (out, Err(Broken));
            }
            group[filled] = v;
            filled += 1;
        }
        if filled == 4 {
            let bytes = [
                group[0] << 2 | group[1] >> 4,
                group[1] << 4 | group[2] >> 2,
                group[2] << 6 | group[3],
            ];
            out.extend_from_slice(&bytes[..3 - padding]);
            if padding == 0 {
                filled = 0;
            }
        }
    }
    let cut_short = filled != 0 && filled != 4;
    (out, if cut_short { Err(Broken) } else { Ok(()) })
}

/// What quoted-printable decoding does with an `=` that starts neither a
/// hex pair nor a soft line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadEscapes {
    /// Fail, as Dovecot's `BINARY` does.
    Refuse,
    /// Keep the `=` as text and go on, as Dovecot's preview does.
    Keep,
}

/// Decodes quoted-printable text (CRLF line ends): `=XX` (either case)
/// becomes the byte, `=` before a line end (white space may come between)
/// joins the lines, white space at the end of a line or of the text goes,
/// and hard line ends come out as CRLF. A CR that does not end a line, an
/// `=` that starts nothing, or one at the very end is broken input: with
/// [`BadEscapes::Keep`] the `=` stays as text and a lone CR passes.
pub(super) fn quoted_printable(input: &[u8], bad: BadEscapes) -> Result<Vec<u8>, Broken> {
    let mut out = Vec::with_capacity(input.len());
    // White space seen but not yet written: it is written only if text
    // follows on the same line.
    let mut pending = 0..0;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match b {
            b' ' | b'\t' => {
                if pending.is_empty() {
                    pending = i..i;
                }
                pending.end = i + 1;
                i += 1;
                continue;
            }
            b'\r' | b'\n' => {
                let end = line_end(input, i);
                if end == i && bad == BadEscapes::Refuse {
                    return Err(Broken);
                }
                if end > i {
                    out.extend_from_slice(b"\r\n");
                    pending = 0..0;
                    i = end;
                    continue;
                }
            }
            b'=' => {
                let hex = |at: usize| input.get(at).and_then(|&d| (d as char).to_digit(16));
                if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                    out.extend_from_slice(&input[pending.clone()]);
                    pending = 0..0;
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                let after_blanks = i + 1 + input[i + 1..].iter().take_while(|&&c| c == b' ' || c == b'\t').count();
                let soft_break = line_end(input, after_blanks);
                if soft_break > after_blanks {
                    out.extend_from_slice(&input[pending.clone()]);
                    pending = 0..0;
                    i = soft_break;
                    continue;
                }
                if bad == BadEscapes::Refuse {
                    return Err(Broken);
                }
            }
            _ => {}
        }
        out.extend_from_slice(&input[pending.clone()]);
        pending = 0..0;
        out.push(b);
        i += 1;
    }
    Ok(out)
}

/// The end of the line break starting at `i` (CRLF or a bare LF), or `i`
/// when there is none.
fn line_end(input: &[u8], i: usize) -> usize {
    match (input.get(i), input.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => i + 2,
        (Some(b'\n'), _) => i + 1,
        _ => i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_as_dovecot_names_them() {
        for (value, cte) in [
            (&b"base64"[..], Cte::Base64),
            (b" BASE64 (comment)", Cte::Base64),
            (b"(c) base64  ", Cte::Base64),
            (b"base64;", Cte::Base64),
            (b"base64 ;x", Cte::Base64),
            (b"base64 (", Cte::Base64),
            (b"Quoted-Printable", Cte::QuotedPrintable),
            (b"7bit", Cte::Identity),
            (b"8BIT", Cte::Identity),
            (b"binary", Cte::Identity),
            (b"8bit garbage", Cte::Unknown),
            (b"base64/x", Cte::Unknown),
            (b"base64,", Cte::Unknown),
            (b"\"base64\"", Cte::Unknown),
            (b"", Cte::Unknown),
            (b"x-uue", Cte::Unknown),
        ] {
            assert_eq!(Cte::parse(value), cte, "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn base64_strictly() {
        let ok = |s: &[u8]| {
            let (out, result) = base64(s);
            assert_eq!(result, Ok(()), "{:?}", String::from_utf8_lossy(s));
            out
        };
        assert_eq!(ok(b"aGVsbG8="), b"hello");
        assert_eq!(ok(b"aGV sbG8=\r\n"), b"hello");
        assert_eq!(ok(b"aG\tVs\rbG8="), b"hello");
        assert_eq!(ok(b"aGVsbA==\r\n\r\n \t\r\n"), b"hell");
        assert_eq!(ok(b"aGVsbA=\r\n=\r\n"), b"hell");
        assert_eq!(ok(b"aGVsbG9="), b"hello", "leftover bits are ignored");
        assert_eq!(ok(b""), b"");
        assert_eq!(ok(b"xxxxxxxxxxxxxxxx").len(), 12);
        for broken in [
            &b"aGVs!bG8="[..],
            b"aGVsbG8=garbage",
            b"aGVsbG8=\r\naGVsbG8=",
            b"====",
            b"aG==VsbG8=",
            b"aGVsbG8==",
            b"aGVs\0bG8=",
            b"aGVsbG8",
            b"aGVsbA=",
            b"xxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(base64(broken).1, Err(Broken), "{:?}", String::from_utf8_lossy(broken));
        }
        assert_eq!(base64(b"aGVs bG8gd29y!bGQ=").0, b"hello wor", "what came before the problem");
    }

    #[test]
    fn quoted_printable_like_dovecot() {
        let ok = |s: &[u8]| String::from_utf8_lossy(&quoted_printable(s, BadEscapes::Refuse).unwrap()).into_owned();
        assert_eq!(ok(b"Gr=C3=BC=C3=9Fe=\r\n soft\r\nline two  \r\n"), "Grüße soft\r\nline two\r\n");
        assert_eq!(ok(b"a \t\r\nb=20\r\nc =\r\n\r\n"), "a\r\nb \r\nc \r\n");
        assert_eq!(ok(b"a= \r\nb=\t\r\nc"), "abc");
        assert_eq!(ok(b"a=c3=a4b\r\n"), "a\u{e4}b\r\n");
        assert_eq!(ok(b"abc=\r\n"), "abc");
        assert_eq!(ok(b"abc  "), "abc");
        assert_eq!(ok(b"abc  =\r\ndef"), "abc  def");
        assert_eq!(ok(b"abc =  \r\ndef"), "abc def");
        assert_eq!(ok(b"a=\r\n\r\nb"), "a\r\nb");
        assert_eq!(ok(b"x=0D=0Ay"), "x\r\ny");
        assert_eq!(ok(b"a\0b"), "a\0b");
        for broken in [&b"=ZZ"[..], b"a=3 b", b"a==41", b"a=\tx", b"a\rb", b"abc=", b"a=3", b"a= "] {
            assert_eq!(
                quoted_printable(broken, BadEscapes::Refuse),
                Err(Broken),
                "{:?}",
                String::from_utf8_lossy(broken)
            );
        }
        assert_eq!(quoted_printable(b"a=ZZb=41", BadEscapes::Keep).unwrap(), b"a=ZZbA");
    }
}
