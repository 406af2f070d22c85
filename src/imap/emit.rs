//! Writing IMAP values (RFC 9051 §4, RFC 3501 §4): quoted strings, literals,
//! `NIL`, nstrings, numbers and parenthesised lists, appended to a byte
//! buffer.
//!
//! The choice between a quoted string and a literal follows Dovecot 2.3
//! (`imap-quote.c`) exactly, because the IMAP proxy must answer byte for
//! byte what the provider's server would: a string is quoted unless it
//! contains CR, LF, NUL or 8-bit bytes, or more than four quoted-specials
//! (`"` and `\`), in which case it becomes a literal (`{n}\r\n` and the
//! raw bytes). There is no length limit on quoted strings, as in Dovecot.
//!
//! This module only formats values; it owns no sockets and no state.

/// How many quoted-specials (`"`, `\`) a quoted string may escape before
/// Dovecot switches to a literal (`QUOTED_MAX_ESCAPE_CHARS`).
const QUOTED_MAX_ESCAPES: usize = 4;

/// True if `bytes` can be written as a quoted string (no CR, LF, NUL or
/// 8-bit bytes, at most four quoted-specials).
pub fn can_quote(bytes: &[u8]) -> bool {
    let mut escapes = 0;
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                escapes += 1;
                if escapes > QUOTED_MAX_ESCAPES {
                    return false;
                }
            }
            b'\r' | b'\n' | 0 => return false,
            _ if b >= 0x80 => return false,
            _ => {}
        }
    }
    true
}

/// Writes `bytes` as an IMAP string: quoted when [`can_quote`] allows it,
/// otherwise as a literal.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if can_quote(bytes) {
        quoted(out, bytes);
    } else {
        literal(out, bytes);
    }
}

/// Writes `NIL` for `None`, otherwise the string as [`string`] does.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(b"NIL"),
        Some(b) => string(out, b),
    }
}

/// Writes a literal: `{n}\r\n` followed by the bytes, whatever they are.
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'{');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(bytes);
}

/// Writes a `literal8` (RFC 3516, for BINARY data that may hold NULs):
/// `~{n}\r\n` followed by the bytes.
pub fn literal8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'~');
    literal(out, bytes);
}

/// Writes a quoted string, escaping `"` and `\`. The caller must have
/// checked [`can_quote`]; bytes that cannot appear in a quoted string (CR,
/// LF, NUL, 8-bit) are dropped, as Dovecot's `imap_append_quoted` does.
pub fn quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'\r' | b'\n' | 0 => {}
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            _ if b >= 0x80 => {}
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Writes `NIL`.
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"NIL");
}

/// Writes a decimal number.
pub fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Writes a parenthesised list: `(` then each item, separated by single
/// spaces, then `)`. An empty list is written as `()`; callers that need
/// `NIL` for an empty list check that themselves.
pub fn list<I, F>(out: &mut Vec<u8>, items: I, mut item: F)
where
    I: IntoIterator,
    F: FnMut(&mut Vec<u8>, I::Item),
{
    out.push(b'(');
    for (i, it) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        item(out, it);
    }
    out.push(b')');
}

/// Writes a header value unfolded, as Dovecot's `imap_append_nstring_nolf`:
/// CR and LF are removed (a space is put in when the next line does not
/// start with white space), then the result is written as [`nstring`].
pub fn nstring_unfolded(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) if b.iter().any(|&c| c == b'\r' || c == b'\n') => {
            let mut flat = Vec::with_capacity(b.len());
            for (i, &c) in b.iter().enumerate() {
                if c != b'\r' && c != b'\n' {
                    flat.push(c);
                } else if !matches!(b.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    flat.push(b' ');
                }
            }
            string(out, &flat);
        }
        other => nstring(out, other),
    }
}

/// Writes a string "for humans", as Dovecot's
/// `imap_append_string_for_humans` does for the ENVELOPE subject and
/// display names: runs of white space (space, tab, CR, LF) become one
/// space, leading and trailing white space is dropped and NUL becomes
/// 0x80. Unchanged text without quoted-specials or 8-bit bytes is written
/// quoted as it is; anything else is written as a literal of the cleaned
/// text (even when that text could have been quoted), or `""` when
/// nothing but white space was left.
pub fn string_for_humans(out: &mut Vec<u8>, src: &[u8]) {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut modify = false;
    let mut last_space = true;
    let mut removed = 0usize;
    let mut all_space_so_far = true;
    for &b in src {
        match b {
            0 => {
                last_space = false;
                modify = true;
            }
            b'\t' | b'\r' | b'\n' | b' ' => {
                if b != b' ' {
                    modify = true;
                }
                if last_space {
                    modify = true;
                    removed += 1;
                }
                last_space = true;
            }
            b'"' | b'\\' => {
                modify = true;
                last_space = false;
            }
            _ => {
                if b & 0x80 != 0 {
                    modify = true;
                }
                last_space = false;
            }
        }
        if !last_space {
            all_space_so_far = false;
        }
    }
    if last_space && !src.is_empty() && !all_space_so_far {
        modify = true;
        removed += 1;
    }
    if !modify {
        out.push(b'"');
        out.extend_from_slice(src);
        out.push(b'"');
        return;
    }
    if src.len() == removed {
        out.extend_from_slice(b"\"\"");
        return;
    }
    let mut clean = Vec::with_capacity(src.len() - removed);
    let mut last_space = true;
    for &b in src {
        if b == 0 {
            clean.push(0x80);
            last_space = false;
        } else if is_space(b) {
            if !last_space {
                clean.push(b' ');
            }
            last_space = true;
        } else {
            clean.push(b);
            last_space = false;
        }
    }
    if last_space && clean.last() == Some(&b' ') {
        clean.pop();
    }
    literal(out, &clean);
}

/// What a writer of IMAP values writes, as text (for tests).
#[cfg(test)]
pub(crate) fn rendered(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::rendered as s;
    use super::*;

    #[test]
    fn quoting_rules_follow_dovecot() {
        assert_eq!(s(|o| string(o, b"plain")), "\"plain\"");
        assert_eq!(s(|o| string(o, b"")), "\"\"");
        assert_eq!(s(|o| string(o, br#"a"b\c"#)), r#""a\"b\\c""#);
        assert_eq!(s(|o| string(o, b"\"\"\"\"\"")), "{5}\r\n\"\"\"\"\"");
        assert_eq!(s(|o| string(o, b"\"\"\"\"")), r#""\"\"\"\"""#);
        assert_eq!(s(|o| string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "Grüße".as_bytes())), "{7}\r\nGrüße");
        assert_eq!(s(|o| nstring(o, None)), "NIL");
        assert_eq!(s(|o| literal(o, b"")), "{0}\r\n");
    }

    #[test]
    fn unfolding_removes_line_breaks() {
        assert_eq!(s(|o| nstring_unfolded(o, Some(b"<a@b>\n <c@d>"))), "\"<a@b> <c@d>\"");
        assert_eq!(s(|o| nstring_unfolded(o, Some(b"a\nb"))), "\"a b\"");
        assert_eq!(s(|o| nstring_unfolded(o, None)), "NIL");
    }

    #[test]
    fn strings_for_humans() {
        assert_eq!(s(|o| string_for_humans(o, b"Hello world")), "\"Hello world\"");
        assert_eq!(s(|o| string_for_humans(o, b"a  b\n\tc  ")), "{5}\r\na b c");
        assert_eq!(s(|o| string_for_humans(o, b"   ")), "\"\"");
        assert_eq!(s(|o| string_for_humans(o, b"")), "\"\"");
        assert_eq!(s(|o| string_for_humans(o, br#"Joe "Q" Public"#)), "{14}\r\nJoe \"Q\" Public");
        let mut out = Vec::new();
        string_for_humans(&mut out, b"a\0b");
        assert_eq!(out, b"{3}\r\na\x80b");
    }

    #[test]
    fn lists() {
        assert_eq!(s(|o| list(o, [1u64, 2, 3], number)), "(1 2 3)");
        assert_eq!(s(|o| list(o, Vec::<u64>::new(), number)), "()");
    }
}
