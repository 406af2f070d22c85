//! RFC 822 tokens, read the way Dovecot's `rfc822-parser.c` reads them
//! (atoms, dot-atoms, quoted strings, comments, domain literals, MIME
//! tokens), and the parameters after a MIME type with RFC 2231
//! continuations (Dovecot's `rfc2231-parser.c`).

use super::part::Param;

/// What Dovecot puts in place of a NUL in header values (U+FFFD in UTF-8).
pub(super) const NUL_REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
/// Content-Type or Content-Disposition field.
const MAX_PARAM_ATTEMPTS: usize = 128;

/// Dovecot's `rfc822_atext_chars`: 1 = atext, 2 = atext (alphanumeric and
/// 8-bit), 4 = atext but a MIME tspecial (`/`, `=`, `?`).
const ATEXT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphanumeric() || b >= 0x80 {
            2
        } else if matches!(b, b'/' | b'=' | b'?') {
            4
        } else if matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'^' | b'_' | b'`' | b'{' | b'|' | b'}' | b'~'
        ) {
            1
        } else {
            0
        };
        c += 1;
    }
    t
};

fn is_atext(b: u8) -> bool {
    ATEXT[b as usize] != 0
}

fn is_token_char(b: u8) -> bool {
    ATEXT[b as usize] & 3 != 0 || b == b'.'
}

/// A cursor over a header value, returning Dovecot's conventions: `-1`
/// for a syntax error, `0` for the end of the input, `1` for more input.
/// NULs in quoted strings, comments and domain literals become U+FFFD,
/// as in Dovecot.
pub(super) struct Rfc822<'v> {
    pub(super) data: &'v [u8],
    pub(super) pos: usize,
    /// The text of the last comment skipped, when wanted.
    pub(super) last_comment: Option<Vec<u8>>,
}

impl<'v> Rfc822<'v> {
    pub(super) fn new(data: &'v [u8]) -> Rfc822<'v> {
        Rfc822 {
            data,
            pos: 0,
            last_comment: None,
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The byte at the cursor (0 past the end, like C's terminating NUL).
    pub(super) fn peek(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    pub(super) fn more(&self) -> i32 {
        i32::from(!self.at_end())
    }

    fn skip_comment(&mut self) -> i32 {
        if let Some(c) = &mut self.last_comment {
            c.clear();
        }
        self.pos += 1;
        let mut start = self.pos;
        let mut level = 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    if let Some(c) = &mut self.last_comment {
                        c.extend_from_slice(&self.data[start..self.pos]);
                        c.extend_from_slice(NUL_REPLACEMENT);
                        start = self.pos + 1;
                    }
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if let Some(c) = &mut self.last_comment {
                            c.extend_from_slice(&self.data[start..self.pos]);
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\n' => {
                    if let Some(c) = &mut self.last_comment {
                        let mut end = self.pos;
                        if end > start && self.data[end - 1] == b'\r' {
                            end -= 1;
                        }
                        c.extend_from_slice(&self.data[start..end]);
                        start = self.pos + 1;
                    }
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        if let Some(c) = &mut self.last_comment {
                            c.extend_from_slice(&self.data[start..self.pos - 1]);
                        }
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    pub(super) fn skip_lwsp(&mut self) -> i32 {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    pub(super) fn parse_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.peek()) {
            return -1;
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if !is_atext(self.data[self.pos]) {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..]);
        0
    }

    fn parse_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.peek()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            if start == self.pos {
                return -1;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.data[self.pos] != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            if self.skip_lwsp() <= 0 {
                return -1;
            }
            start = self.pos;
        }
        out.extend_from_slice(&self.data[start..]);
        0
    }

    /// A local part that may start or end with dots or have several in a
    /// row (not RFC 5322, but common in Japan; Dovecot accepts it).
    pub(super) fn parse_nonstrict_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        let mut ret = -1;
        loop {
            while self.peek() == b'.' && !self.at_end() {
                out.push(b'.');
                self.pos += 1;
                if self.at_end() {
                    // @domain is missing, but the local part is fine
                    return 0;
                }
                ret = 1;
            }
            if self.peek() == b'@' {
                break;
            }
            ret = self.parse_atom(out);
            if !(ret > 0 && self.peek() == b'.') {
                break;
            }
        }
        ret
    }

    pub(super) fn parse_mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            if !is_token_char(self.data[self.pos]) {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start.min(self.data.len())..]);
        0
    }

    pub(super) fn parse_quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(&self.data[start..self.pos - 1]);
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn parse_atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            if !is_atext(b) && b != b'.' {
                out.extend_from_slice(&self.data[start..self.pos]);
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start.min(self.data.len())..]);
        0
    }

    pub(super) fn parse_phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.peek() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.peek() == b'"' {
                self.parse_quoted_string(out)
            } else {
                self.parse_atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let b = self.peek();
            if !is_atext(b) && b != b'"' && b != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    fn parse_domain_literal(&mut self, out: &mut Vec<u8>) -> i32 {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return -1,
                b']' => {
                    out.extend_from_slice(&self.data[start..=self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        out.extend_from_slice(&self.data[start..self.pos]);
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    pub(super) fn parse_domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1; // '@'
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.peek() == b'[' {
            self.parse_domain_literal(out)
        } else {
            self.parse_dot_atom(out)
        }
    }

    pub(super) fn parse_content_type(&mut self, out: &mut Vec<u8>) -> i32 {
        let start_len = out.len();
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(out) <= 0 || out.len() == start_len {
            return -1;
        }
        if self.peek() != b'/' {
            out.truncate(start_len);
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            out.truncate(start_len);
            return -1;
        }
        out.push(b'/');
        let sub_start = out.len();
        let ret = self.parse_mime_token(out);
        if ret < 0 || out.len() == sub_start || (!self.at_end() && self.peek() != b';') {
            out.truncate(start_len);
            return -1;
        }
        ret
    }

    /// One `; name=value` parameter: `0` at the end, `-1` when broken.
    fn parse_content_param(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> i32 {
        key.clear();
        value.clear();
        if self.at_end() {
            return 0;
        }
        if self.peek() != b';' {
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(key) <= 0 {
            return -1;
        }
        if self.peek() != b'=' {
            return -1;
        }
        self.pos += 1;
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // broken or no value
        } else if self.peek() == b'"' {
            ret = self.parse_quoted_string(value);
        } else if self.peek() == b'=' {
            // Broken input like name==?utf-8?b?...?= is taken as it is.
            while self.pos < self.data.len() && !matches!(self.data[self.pos], b';' | b' ' | b'\t' | b'\r' | b'\n') {
                value.push(self.data[self.pos]);
                self.pos += 1;
            }
        } else {
            ret = self.parse_mime_token(value);
        }
        if ret < 0 {
            -1
        } else {
            1
        }
    }
}

/// Dovecot's `rfc2231_parse`: the parameters after a MIME type, with
/// `name*0`, `name*1`... continuations merged (left encoded). Broken
/// parameters are skipped.
pub(super) fn rfc2231_parse(p: &mut Rfc822<'_>) -> Vec<Param> {
    struct Cont {
        key: Vec<u8>,
        value: Vec<u8>,
        idx: u32,
        extended: bool,
    }
    let mut result: Vec<Param> = Vec::new();
    let mut conts: Vec<Cont> = Vec::new();
    // Dovecot does not reset the index between parameters: `name*=` keeps
    // the index of the previous continuation.
    let mut idx: u32 = 0;
    let mut key = Vec::new();
    let mut value = Vec::new();
    // Dovecot gives up after this many attempts, broken ones included.
    for _ in 0..MAX_PARAM_ATTEMPTS {
        let ret = p.parse_content_param(&mut key, &mut value);
        if ret == 0 {
            break;
        }
        if ret < 0 {
            if p.at_end() {
                break;
            }
            p.pos += 1;
            continue;
        }
        let key = key.clone();
        let value = value.clone();
        let mut plain = true;
        if let Some(star) = key.iter().position(|&b| b == b'*') {
            let mut q = star;
            if q + 1 < key.len() {
                q += 1;
                idx = 0;
                while q < key.len() && key[q].is_ascii_digit() {
                    idx = idx.wrapping_mul(10).wrapping_add(u32::from(key[q] - b'0'));
                    q += 1;
                }
            }
            let extended = key.get(q) == Some(&b'*');
            if extended {
                q += 1;
            }
            if q >= key.len() {
                conts.push(Cont {
                    key: key[..star].to_vec(),
                    value: value.clone(),
                    idx,
                    extended,
                });
                plain = false;
            }
        }
        if plain {
            result.push((key, value));
        }
    }
    if conts.is_empty() {
        return result;
    }
    conts.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < conts.len() {
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        let mut j = i;
        while j < conts.len() && conts[i].key.eq_ignore_ascii_case(&conts[j].key) {
            if conts[j].idx != next_idx {
                ok = false;
            }
            if conts[j].extended {
                have_extended = true;
            }
            next_idx = next_idx.wrapping_add(1);
            j += 1;
        }
        if !ok {
            for c in &conts[i..j] {
                let mut k = c.key.clone();
                k.push(b'*');
                k.extend_from_slice(c.idx.to_string().as_bytes());
                if c.extended {
                    k.push(b'*');
                }
                result.push((k, c.value.clone()));
            }
        } else {
            let mut v = Vec::new();
            if !conts[i].extended && have_extended {
                v.extend_from_slice(b"''");
            }
            for c in &conts[i..j] {
                if !c.extended && have_extended {
                    for &b in &c.value {
                        if b == b'%' {
                            v.extend_from_slice(b"%25");
                        } else {
                            v.push(b);
                        }
                    }
                } else {
                    v.extend_from_slice(&c.value);
                }
            }
            let mut k = conts[i].key.clone();
            if have_extended {
                k.push(b'*');
            }
            result.push((k, v));
        }
        i = j;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2231_continuations_keep_dovecots_quirks() {
        let mut p = Rfc822::new(b"; name*0=\"a\"; name*1=\"b\"; title*=us-ascii'en'x%20y; z*=\"q\"");
        let params = rfc2231_parse(&mut p);
        let text: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
            .collect();
        assert_eq!(text, ["name=ab", "title*1*=us-ascii'en'x%20y", "z*1*=q"]);
    }
}
