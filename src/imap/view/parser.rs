//! The MIME parser: Dovecot's `message-parser.c`, with the whole message
//! in memory. It splits a message into [`Part`]s (boundary prefixes,
//! truncated multiparts, header lines cut short by a boundary, Dovecot's
//! limits on nesting and part counts) and hands each complete header field
//! to [`super::fields`].

use super::fields::{parse_content_field, parse_envelope_field};
use super::header::read_line;
use super::part::{Envelope, Part, PartData, FLAG_DIGEST, FLAG_IS_MIME, FLAG_MULTIPART, FLAG_RFC822, FLAG_TEXT};
use super::rfc822::{rfc2231_parse, Rfc822};

/// a deeper multipart or message/rfc822 is treated as an opaque body.
pub(super) const MAX_NESTED_PARTS: usize = 100;
/// takes the rest of the message as its body, boundaries and all.
const MAX_TOTAL_PARTS: usize = 10_000;
/// Dovecot's `BOUNDARY_STRING_MAX_LEN`: longer boundaries are truncated.
const BOUNDARY_MAX_LEN: usize = 80;

struct Boundary {
    part: usize,
    text: Vec<u8>,
}

enum State {
    Header,
    BodyToBoundary,
    BodyToEof,
    SkipBoundaryLine,
    MimeHeaderInit,
    Rfc822Init,
    Done,
}

pub(super) struct Parser<'b> {
    buf: &'b [u8],
    pos: usize,
    parts: Vec<Part>,
    cur: usize,
    boundaries: Vec<Boundary>,
    last_boundary: Option<Vec<u8>>,
    multipart: bool,
    last_chr: u8,
}

impl<'b> Parser<'b> {
    pub(super) fn run(buf: &'b [u8]) -> Vec<Part> {
        let mut p = Parser {
            buf,
            pos: 0,
            parts: vec![Part::new(0, None, 0)],
            cur: 0,
            boundaries: Vec::new(),
            last_boundary: None,
            multipart: false,
            last_chr: b'\n',
        };
        let mut state = State::Header;
        loop {
            state = match state {
                State::Header => p.parse_header(),
                State::BodyToBoundary => p.body_to_boundary(),
                State::BodyToEof => {
                    p.add_block(p.pos, p.buf.len());
                    p.pos = p.buf.len();
                    State::Done
                }
                State::SkipBoundaryLine => p.skip_boundary_line(),
                State::MimeHeaderInit => {
                    p.append_part(true);
                    State::Header
                }
                State::Rfc822Init => {
                    p.append_part(false);
                    State::Header
                }
                State::Done => break,
            };
        }
        while p.parts[p.cur].parent.is_some() {
            p.finish_part();
        }
        p.parts
    }

    fn append_part(&mut self, is_mime: bool) {
        let parent = &self.parts[self.cur];
        let pos = parent.pos + parent.hdr_len + parent.body_len;
        let mut part = Part::new(pos, Some(self.cur), parent.depth + 1);
        if is_mime {
            part.flags |= FLAG_IS_MIME;
        }
        let idx = self.parts.len();
        self.parts.push(part);
        self.parts[self.cur].children.push(idx);
        self.cur = idx;
    }

    /// Ends the current part: its header and body become part of its
    /// parent's body.
    fn finish_part(&mut self) {
        let part = &self.parts[self.cur];
        let (len, lines) = (part.hdr_len + part.body_len, part.hdr_lines + part.body_lines);
        let Some(parent) = part.parent else { return };
        let p = &mut self.parts[parent];
        p.body_len += len;
        p.body_lines = p.body_lines.wrapping_add(lines);
        self.cur = parent;
    }

    fn add_block(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let block = &self.buf[start..end];
        let lines = block.iter().filter(|&&b| b == b'\n').count() as u32;
        let part = &mut self.parts[self.cur];
        part.body_len += block.len();
        part.body_lines = part.body_lines.wrapping_add(lines);
        self.last_chr = block[block.len() - 1];
    }

    fn too_many_nested(&self) -> bool {
        self.parts[self.cur].depth + 1 >= MAX_NESTED_PARTS || self.parts.len() >= MAX_TOTAL_PARTS
    }

    /// The boundary a line starting at `at` begins with, and whether it is
    /// the closing one (`--boundary--`).
    fn boundary_at(&self, at: usize) -> Option<(usize, bool)> {
        if self.boundaries.is_empty() {
            return None;
        }
        let rest = self.buf.get(at..)?;
        if rest.len() < 2 || rest[0] != b'-' || rest[1] != b'-' {
            return None;
        }
        let data = &rest[2..];
        let find_len = match data.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let mut n = lf;
                if n > 0 && data[n - 1] == b'\r' {
                    n -= 1;
                }
                if n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-' {
                    n -= 2;
                }
                n
            }
            None => data.len().min(BOUNDARY_MAX_LEN + 4),
        };
        let line = &data[..find_len];
        let mut best: Option<usize> = None;
        for (i, b) in self.boundaries.iter().enumerate().rev() {
            if b.text.len() <= line.len() && line.starts_with(&b.text) && best.is_none_or(|j| self.boundaries[j].text.len() < b.text.len())
            {
                best = Some(i);
                if b.text.len() == line.len() {
                    break;
                }
            }
        }
        let i = best?;
        let len = self.boundaries[i].text.len();
        let closing = data.len() >= len + 2 && &data[len..len + 2] == b"--";
        Some((i, closing))
    }

    fn parse_header(&mut self) -> State {
        let part_idx = self.cur;
        let mut prev_newline = 0usize;
        let mut continued = false;
        let mut seen_eoh = false;
        let mut seen_content_type = false;
        let mut name = (0usize, 0usize);
        let mut full_value: Vec<u8> = Vec::new();
        loop {
            let at_eoh = self.buf.get(self.pos) == Some(&b'\n')
                || (self.buf.get(self.pos) == Some(&b'\r') && self.buf.get(self.pos + 1) == Some(&b'\n'));
            if at_eoh && self.last_boundary.is_some() && self.parts[part_idx].has(FLAG_IS_MIME) {
                if self.too_many_nested() {
                    self.parts[part_idx].flags &= !FLAG_MULTIPART;
                } else if let Some(text) = self.last_boundary.take() {
                    self.boundaries.push(Boundary { part: part_idx, text });
                    self.multipart = true;
                }
            }
            if let Some((b, _)) = self.boundary_at(self.pos) {
                if self.boundaries[b].part != part_idx {
                    // A boundary cuts the header short; the newline before
                    // it belongs to the boundary, i.e. to the parent's body.
                    if prev_newline > 0 {
                        let part = &mut self.parts[part_idx];
                        part.hdr_len -= prev_newline;
                        part.hdr_lines = part.hdr_lines.saturating_sub(1);
                        if let Some(parent) = part.parent {
                            let parent = &mut self.parts[parent];
                            parent.body_len += prev_newline;
                            parent.body_lines = parent.body_lines.wrapping_add(1);
                        }
                    }
                    break;
                }
            }
            if seen_eoh {
                break;
            }
            let Some(line) = read_line(self.buf, self.pos, continued, true) else {
                break;
            };
            {
                let part = &mut self.parts[part_idx];
                part.hdr_len += line.end - line.start;
                if line.has_lf {
                    part.hdr_lines = part.hdr_lines.wrapping_add(1);
                }
            }
            self.pos = line.end;
            prev_newline = if line.no_newline { 0 } else { line.end - line.content_end };
            if line.eoh {
                seen_eoh = true;
                continue;
            }
            let value = &self.buf[line.value_start.min(line.content_end)..line.content_end];
            if continued {
                full_value.push(b'\n');
                full_value.extend_from_slice(value);
            } else {
                name = line.name;
                full_value.clear();
                full_value.extend_from_slice(value);
            }
            continued = line.continues;
            if !line.continues {
                let field = &self.buf[name.0..name.1];
                self.header_field(part_idx, field, &full_value, &mut seen_content_type);
            }
        }
        self.end_of_header(part_idx, seen_content_type)
    }

    /// One complete (unfolded) header field of the part being parsed.
    fn header_field(&mut self, idx: usize, name: &[u8], value: &[u8], seen_content_type: &mut bool) {
        if name.eq_ignore_ascii_case(b"Mime-Version") {
            self.parts[idx].flags |= FLAG_IS_MIME;
        } else if name.eq_ignore_ascii_case(b"Content-Type") {
            self.parts[idx].flags |= FLAG_IS_MIME;
            if !*seen_content_type {
                *seen_content_type = true;
                self.content_type_flags(idx, value);
            }
        }
        let parent_rfc822 = self.parts[idx].parent.is_some_and(|p| self.parts[p].has(FLAG_RFC822));
        let part = &mut self.parts[idx];
        if name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"Content-") {
            parse_content_field(&mut part.data, &name[8..], value);
        }
        if parent_rfc822 || idx == 0 {
            parse_envelope_field(part.envelope.get_or_insert_with(Envelope::default), name, value);
        }
    }

    /// The message parser's own reading of Content-Type: the part's kind
    /// and, for a multipart, its boundary.
    fn content_type_flags(&mut self, idx: usize, value: &[u8]) {
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut ct = Vec::new();
        let ret = p.parse_content_type(&mut ct);
        let part = &mut self.parts[idx];
        if ct.eq_ignore_ascii_case(b"message/rfc822") {
            part.flags |= FLAG_RFC822;
        } else if ct.len() >= 4 && ct[..4].eq_ignore_ascii_case(b"text") && (ct.len() == 4 || ct[4] == b'/') {
            part.flags |= FLAG_TEXT;
        } else if ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/") {
            part.flags |= FLAG_MULTIPART;
            if ct[10..].eq_ignore_ascii_case(b"digest") {
                part.flags |= FLAG_DIGEST;
            }
        }
        if ret < 0 || !part.has(FLAG_MULTIPART) || self.last_boundary.is_some() {
            return;
        }
        for (name, value) in rfc2231_parse(&mut p) {
            if name.eq_ignore_ascii_case(b"boundary") {
                let mut b = value;
                b.truncate(BOUNDARY_MAX_LEN);
                self.last_boundary = Some(b);
                break;
            }
        }
    }

    fn end_of_header(&mut self, idx: usize, seen_content_type: bool) -> State {
        let parent_digest = self.parts[idx].parent.is_some_and(|p| self.parts[p].has(FLAG_DIGEST));
        {
            let part = &mut self.parts[idx];
            if !part.has(FLAG_IS_MIME) {
                // Not MIME: Content-* fields mean nothing.
                part.flags = 0;
                part.data = PartData::default();
            }
            if !seen_content_type || !part.has(FLAG_IS_MIME) {
                part.flags |= if parent_digest { FLAG_RFC822 } else { FLAG_TEXT };
            }
        }
        self.last_boundary = None;
        self.last_chr = b'\n';
        if self.parts.len() >= MAX_TOTAL_PARTS {
            // The last part Dovecot makes: it takes the rest of the message.
            self.parts[idx].flags &= !(FLAG_RFC822 | FLAG_MULTIPART);
            self.boundaries.clear();
            self.multipart = false;
            return State::BodyToEof;
        }
        if self.multipart {
            self.multipart = false;
            return State::BodyToBoundary;
        }
        if self.parts[idx].has(FLAG_RFC822) && !self.too_many_nested() {
            return State::Rfc822Init;
        }
        self.parts[idx].flags &= !FLAG_RFC822;
        if self.boundaries.is_empty() {
            State::BodyToEof
        } else {
            State::BodyToBoundary
        }
    }

    fn body_to_boundary(&mut self) -> State {
        if self.pos >= self.buf.len() {
            return State::Done;
        }
        if self.last_chr == b'\n' {
            if let Some(found) = self.boundary_at(self.pos) {
                return self.part_finish(found, true);
            }
        }
        let start = self.pos;
        let mut cur = start;
        while let Some(off) = self.buf[cur..].iter().position(|&b| b == b'\n') {
            let lf = cur + off;
            let boundary_start = if lf > start && self.buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            cur = lf + 1;
            if let Some(found) = self.boundary_at(cur) {
                self.add_block(start, boundary_start);
                self.pos = boundary_start;
                return self.part_finish(found, false);
            }
        }
        self.add_block(start, self.buf.len());
        self.pos = self.buf.len();
        State::Done
    }

    /// A boundary line was found at `self.pos` (after the newline that
    /// precedes it unless `first_line`): close the parts inside the
    /// boundary's multipart and account the boundary to it.
    fn part_finish(&mut self, (b, closing): (usize, bool), first_line: bool) -> State {
        let owner = self.boundaries[b].part;
        while self.cur != owner && self.parts[self.cur].parent.is_some() {
            self.finish_part();
        }
        let len = self.boundaries[b].text.len();
        if closing {
            self.boundaries.truncate(b);
        } else {
            self.boundaries.truncate(b + 1);
        }
        let mut line = 2 + len + if closing { 2 } else { 0 };
        if !first_line {
            line += if self.buf.get(self.pos) == Some(&b'\r') { 2 } else { 1 };
        }
        let end = (self.pos + line).min(self.buf.len());
        self.add_block(self.pos, end);
        self.pos = end;
        State::SkipBoundaryLine
    }

    fn skip_boundary_line(&mut self) -> State {
        match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            None => {
                self.add_block(self.pos, self.buf.len());
                self.pos = self.buf.len();
                State::Done
            }
            Some(off) => {
                let end = self.pos + off + 1;
                self.add_block(self.pos, end);
                self.pos = end;
                match self.boundaries.last() {
                    Some(top) if top.part == self.cur => State::MimeHeaderInit,
                    Some(_) => State::BodyToBoundary,
                    None => State::BodyToEof,
                }
            }
        }
    }
}
