//! A MIME entity as slices of the original bytes.

use super::ContentType;

/// One header field exactly as it appeared, folding and line ending included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The whole field: name, colon, value, continuation lines, final newline.
    pub raw: &'a [u8],
    name_len: usize,
}

impl<'a> Field<'a> {
    /// The field name as written (a malformed line without a colon has an
    /// empty name and is kept only so that it can be passed through).
    pub fn name(&self) -> &'a str {
        std::str::from_utf8(&self.raw[..self.name_len]).unwrap_or("").trim()
    }

    /// True if the field has this name (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name_len > 0 && self.name().eq_ignore_ascii_case(name)
    }

    /// The raw value after the colon, still folded, without the final newline.
    pub fn raw_value(&self) -> &'a [u8] {
        if self.name_len == 0 {
            return b"";
        }
        let value = &self.raw[self.name_len + 1..];
        let trimmed = value.strip_suffix(b"\r\n").or_else(|| value.strip_suffix(b"\n")).unwrap_or(value);
        trimmed
    }

    /// The value unfolded and trimmed, decoded lossily as UTF-8 (encoded
    /// words are left as they are).
    pub fn value(&self) -> String {
        let unfolded: Vec<u8> = self.raw_value().iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
        String::from_utf8_lossy(&unfolded).trim().to_string()
    }

    /// True for the fields RFC 9788 calls structural: they describe the MIME
    /// entity itself and are never protected or mirrored in `HP-Outer`.
    pub fn is_structural(&self) -> bool {
        let name = self.name().to_ascii_lowercase();
        name.starts_with("content-") || name == "mime-version"
    }
}

/// A MIME entity (a whole message or one body part): its header fields and
/// its body, all borrowed from the input.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    /// The header section, up to but excluding the blank separator line.
    pub header: &'a [u8],
    /// The fields of the header section, in order.
    pub fields: Vec<Field<'a>>,
    /// Everything after the blank line that ends the header section.
    pub body: &'a [u8],
}

impl<'a> Entity<'a> {
    /// Splits `bytes` into header fields and body. Never fails: input without
    /// a blank line is all header, a leading blank line means no header.
    /// A leading mbox `From ` line is treated as a malformed field.
    pub fn parse(bytes: &'a [u8]) -> Entity<'a> {
        let mut fields: Vec<Field<'a>> = Vec::new();
        let mut pos = 0;
        let mut header_end = bytes.len();
        let mut body_start = bytes.len();
        while pos < bytes.len() {
            let line_end = next_line_end(bytes, pos);
            let line = &bytes[pos..line_end];
            if line == b"\r\n" || line == b"\n" {
                header_end = pos;
                body_start = line_end;
                break;
            }
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            match fields.last_mut() {
                Some(last) if continuation => {
                    let start = last.raw.as_ptr() as usize - bytes.as_ptr() as usize;
                    last.raw = &bytes[start..line_end];
                }
                _ => {
                    // A name is printable ASCII; white space may follow it
                    // before the colon (RFC 5322 obsolete syntax) but not
                    // precede it: a line starting with white space and no
                    // field before it is malformed, not a field.
                    let name_len = line
                        .iter()
                        .position(|&b| b == b':')
                        .filter(|&i| {
                            let name = &line[..i];
                            let end = name.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(0, |e| e + 1);
                            end > 0 && name[..end].iter().all(u8::is_ascii_graphic)
                        })
                        .unwrap_or(0);
                    fields.push(Field { raw: line, name_len });
                }
            }
            pos = line_end;
        }
        Entity {
            header: &bytes[..header_end],
            fields,
            body: &bytes[body_start..],
        }
    }

    /// The first field with this name.
    pub fn field(&self, name: &str) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.is(name))
    }

    /// The entity's content type; `text/plain` when absent or unreadable,
    /// as RFC 2045 §5.2 says.
    pub fn content_type(&self) -> ContentType {
        self.field("Content-Type")
            .and_then(|f| ContentType::parse(&f.value()))
            .unwrap_or_else(ContentType::text_plain)
    }

    /// The `Content-Transfer-Encoding`, lower-cased; `7bit` when absent.
    pub fn transfer_encoding(&self) -> String {
        self.field("Content-Transfer-Encoding")
            .map(|f| f.value().to_ascii_lowercase())
            .unwrap_or_else(|| "7bit".to_string())
    }

    /// The body parts of a multipart entity, or `None` when the entity is
    /// not multipart or its boundary never appears.
    pub fn parts(&self) -> Option<Vec<&'a [u8]>> {
        let ct = self.content_type();
        if !ct.is_multipart() {
            return None;
        }
        split_multipart(self.body, ct.param("boundary")?)
    }
}

/// Index just past the next newline at or after `from` (or the end).
fn next_line_end(bytes: &[u8], from: usize) -> usize {
    match bytes[from..].iter().position(|&b| b == b'\n') {
        Some(i) => from + i + 1,
        None => bytes.len(),
    }
}

/// Splits a multipart body at its delimiter lines (RFC 2046 §5.1.1). Each
/// returned part excludes the newline before the next delimiter, which
/// belongs to the delimiter. Preamble and epilogue are dropped. A missing
/// close delimiter ends the last part at the end of the body (truncated
/// mail still shows what arrived). `None` when no delimiter is found.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<&'a [u8]>> {
    if boundary.is_empty() {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut current_start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let line_end = next_line_end(body, pos);
        let line = &body[pos..line_end];
        if line.starts_with(delimiter) {
            let rest = trim_line_end(&line[delimiter.len()..]);
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            // Transport padding (spaces, tabs) may follow the delimiter.
            if rest.iter().all(|&b| b == b' ' || b == b'\t') {
                if let Some(start) = current_start.take() {
                    parts.push(strip_delimiter_newline(&body[start..pos]));
                }
                if closing {
                    return Some(parts);
                }
                current_start = Some(line_end);
            }
        }
        pos = line_end;
    }
    if let Some(start) = current_start {
        parts.push(&body[start.min(body.len())..]);
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts)
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line)
}

fn strip_delimiter_newline(part: &[u8]) -> &[u8] {
    part.strip_suffix(b"\r\n").or_else(|| part.strip_suffix(b"\n")).unwrap_or(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_folding_and_order() {
        let msg = b"From: a@x\r\nSubject: one\r\n two\r\nX-Empty:\r\n\r\nbody\r\n";
        let e = Entity::parse(msg);
        assert_eq!(e.fields.len(), 3);
        assert_eq!(e.fields[1].raw, b"Subject: one\r\n two\r\n");
        assert_eq!(e.fields[1].value(), "one two");
        assert_eq!(e.fields[2].value(), "");
        assert_eq!(e.body, b"body\r\n");
        assert_eq!(e.header, b"From: a@x\r\nSubject: one\r\n two\r\nX-Empty:\r\n");
    }

    #[test]
    fn white_space_around_names() {
        let e = Entity::parse(b" Subject: x\r\nX-A\t: y\r\nX B: z\r\n\r\n");
        assert_eq!(e.fields.len(), 3);
        assert_eq!(e.fields[0].name(), "", "a leading space cannot start a field");
        assert!(e.fields[1].is("x-a"));
        assert_eq!(e.fields[1].value(), "y");
        assert_eq!(e.fields[2].name(), "", "no space inside a name");
    }

    #[test]
    fn no_blank_line_means_all_header() {
        let e = Entity::parse(b"Subject: x");
        assert_eq!(e.fields.len(), 1);
        assert!(e.body.is_empty());
    }

    #[test]
    fn leading_blank_line_means_no_header() {
        let e = Entity::parse(b"\r\nbody");
        assert!(e.fields.is_empty());
        assert_eq!(e.body, b"body");
    }

    #[test]
    fn garbage_lines_become_nameless_fields() {
        let e = Entity::parse(b"From nobody Mon\nno colon here\nX: y\n\nb");
        assert_eq!(e.fields.len(), 3);
        assert_eq!(e.fields[0].name(), "");
        assert!(!e.fields[0].is("from"));
        assert!(e.field("x").is_some());
    }

    #[test]
    fn multipart_parts_exclude_delimiter_newlines() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b  \r\n\r\ntwo\r\n\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![&b"A: 1\r\n\r\none"[..], &b"\r\ntwo\r\n"[..]]);
    }

    #[test]
    fn boundary_prefix_lines_are_not_delimiters() {
        let body = b"--b\r\n\r\n--bx not a delimiter\r\n--b--\r\n";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![&b"\r\n--bx not a delimiter"[..]]);
    }

    #[test]
    fn truncated_multipart_keeps_last_part() {
        let parts = split_multipart(b"--b\r\n\r\nhalf", "b").unwrap();
        assert_eq!(parts, vec![&b"\r\nhalf"[..]]);
        assert!(split_multipart(b"no delimiters", "b").is_none());
    }
}
