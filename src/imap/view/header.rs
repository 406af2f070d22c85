//! Header lines, read the way Dovecot's `message-header-parser.c` reads
//! them: name, value, continuation and the blank line that ends a header.

/// One physical header line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line {
    pub(super) start: usize,
    /// End of the line's text: before the newline (and before a CR that
    /// directly precedes the LF).
    pub(super) content_end: usize,
    /// After the newline.
    pub(super) end: usize,
    /// The field name (empty for a continuation line or a line without
    /// a colon).
    pub(super) name: (usize, usize),
    /// Start of this line's share of the value (up to `content_end`).
    pub(super) value_start: usize,
    pub(super) eoh: bool,
    pub(super) no_newline: bool,
    pub(super) has_lf: bool,
    /// The next line starts with white space and continues this field.
    pub(super) continues: bool,
}

fn is_lwsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Reads the header line at `pos` (`None` at the end of the input).
/// `continued` says the previous line announced a continuation.
pub(super) fn read_line(buf: &[u8], pos: usize, continued: bool, skip_initial_lwsp: bool) -> Option<Line> {
    if pos >= buf.len() {
        return None;
    }
    let (content_end, end, no_newline, has_lf, continues) = match buf[pos..].iter().position(|&b| b == b'\n') {
        Some(off) => {
            let lf = pos + off;
            let content_end = if lf > pos && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            let continues = buf.get(lf + 1).is_some_and(|&b| is_lwsp(b));
            (content_end, lf + 1, false, true, continues)
        }
        None => (buf.len(), buf.len(), true, false, false),
    };
    let mut line = Line {
        start: pos,
        content_end,
        end,
        name: (pos, pos),
        value_start: pos,
        eoh: false,
        no_newline,
        has_lf,
        continues,
    };
    if continued {
        return Some(line);
    }
    if content_end == pos {
        line.eoh = true;
        line.continues = false;
        return Some(line);
    }
    let text = &buf[pos..content_end];
    match text.iter().position(|&b| b == b':') {
        None => {
            // Without a colon the whole line is value: the field has an
            // empty name, which nothing matches.
            line.name = (pos, pos);
            line.value_start = pos;
        }
        Some(colon) => {
            let mut name_end = colon;
            while name_end > 0 && is_lwsp(text[name_end - 1]) {
                name_end -= 1;
            }
            line.name = (pos, pos + name_end);
            let value = &text[colon + 1..];
            let mut skip = if skip_initial_lwsp {
                value.iter().take_while(|&&b| is_lwsp(b)).count()
            } else {
                usize::from(value.first().is_some_and(|&b| is_lwsp(b)))
            };
            if skip == value.len() && skip > 0 {
                skip = 1;
            }
            line.value_start = pos + colon + 1 + skip;
        }
    }
    Some(line)
}

/// The fields of the header at `start` up to its blank line, each as its
/// name and its value with continuation lines joined by LF: what Dovecot's
/// header parser hands a reader that asks for whole values.
pub(super) fn unfolded_fields(buf: &[u8], start: usize) -> Vec<(&[u8], Vec<u8>)> {
    let mut fields: Vec<(&[u8], Vec<u8>)> = Vec::new();
    let (mut pos, mut continued) = (start, false);
    while let Some(line) = read_line(buf, pos, continued, true) {
        if line.eoh {
            break;
        }
        let value = &buf[line.value_start.min(line.content_end)..line.content_end];
        match fields.last_mut() {
            Some((_, full)) if continued => {
                full.push(b'\n');
                full.extend_from_slice(value);
            }
            _ => fields.push((&buf[line.name.0..line.name.1], value.to_vec())),
        }
        pos = line.end;
        continued = line.continues;
    }
    fields
}
