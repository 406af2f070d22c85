//! Reading the few client commands the proxy acts on: the tag and command
//! name of every command, and the item list of FETCH, which it extends so
//! that the answer tells it which messages are encrypted. Every other
//! command passes through as the client wrote it.

/// The start of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// The tag, as the client wrote it.
    pub tag: &'a [u8],
    /// `UID FETCH`, `UID STORE`, ...: the command was prefixed with UID.
    pub uid: bool,
    /// The command name, upper-cased (`FETCH`, `APPEND`, ...).
    pub name: String,
    /// Offset of the first argument (after the name and one space).
    pub args: usize,
}

/// Splits a command line into tag, optional `UID` and name. `None` when
/// the line has no tag and name (such as `DONE` after IDLE).
pub fn head(line: &[u8]) -> Option<Head<'_>> {
    let line = trim_eol(line);
    let tag_end = line.iter().position(|&b| b == b' ')?;
    let tag = &line[..tag_end];
    if tag.is_empty() || tag.iter().any(|b| matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b'+' | b'*')) {
        return None;
    }
    let mut pos = tag_end + 1;
    let word = |pos: &mut usize| -> Option<String> {
        let start = *pos;
        while *pos < line.len() && line[*pos].is_ascii_alphanumeric() || *pos < line.len() && line[*pos] == b'-' {
            *pos += 1;
        }
        (start != *pos).then(|| String::from_utf8_lossy(&line[start..*pos]).to_ascii_uppercase())
    };
    let mut name = word(&mut pos)?;
    let uid = name == "UID";
    if uid {
        if line.get(pos) != Some(&b' ') {
            return None;
        }
        pos += 1;
        name = word(&mut pos)?;
    }
    if pos < line.len() {
        if line[pos] != b' ' {
            return None;
        }
        pos += 1;
    }
    Some(Head { tag, uid, name, args: pos })
}

fn trim_eol(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line)
}

/// One data item a client asked for, in the form that names it in the
/// server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The name as it will appear in the response, upper-cased, without
    /// `.PEEK` and with a partial reduced to its origin: `BODY[1.MIME]`,
    /// `BODY[]<0>`, `RFC822.SIZE`.
    pub key: String,
    /// The partial length, for `<origin.length>`.
    pub partial_length: Option<u64>,
    /// The item as the client wrote it.
    pub raw: Vec<u8>,
}

impl Requested {
    /// Reads one item as a client writes it.
    pub fn parse(raw: &[u8]) -> Requested {
        let upper = String::from_utf8_lossy(raw).to_ascii_uppercase();
        let mut key = upper.replacen("BODY.PEEK[", "BODY[", 1).replacen("BINARY.PEEK[", "BINARY[", 1);
        let mut partial_length = None;
        if key.ends_with('>') {
            if let Some(open) = key.rfind('<') {
                let inner = key[open + 1..key.len() - 1].to_string();
                if let Some((origin, length)) = inner.split_once('.') {
                    partial_length = length.parse().ok();
                    key = format!("{}<{}>", &key[..open], origin);
                }
            }
        }
        Requested {
            key,
            partial_length,
            raw: raw.to_vec(),
        }
    }

    /// True for items whose answer depends on the message content, which
    /// differs between the stored ciphertext and what the client is shown.
    pub fn depends_on_content(&self) -> bool {
        let k = self.key.as_str();
        k.starts_with("BODY") || k.starts_with("RFC822") || k.starts_with("BINARY") || k == "ENVELOPE" || k == "PREVIEW"
    }
}

/// A parsed `FETCH` / `UID FETCH` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The sequence set, as written.
    pub set: Vec<u8>,
    /// The items asked for (macros expanded).
    pub items: Vec<Requested>,
    /// Anything after the item list (`(CHANGEDSINCE 5)`), as written.
    pub modifiers: Vec<u8>,
}

/// The item the proxy adds to look at the start of a single-part body: an
/// inline PGP message starts with its armor.
pub const PROBE: &str = "BODY.PEEK[TEXT]<0.512>";

impl Fetch {
    /// Parses the arguments of a FETCH command (after `FETCH `). `None`
    /// for syntax it does not understand; such commands pass unchanged.
    pub fn parse(args: &[u8]) -> Option<Fetch> {
        let args = trim_eol(args);
        let space = args.iter().position(|&b| b == b' ')?;
        let set = args[..space].to_vec();
        let rest = &args[space + 1..];
        let (list, modifiers) = if rest.first() == Some(&b'(') {
            let end = matching_paren(rest)?;
            (&rest[1..end], &rest[end + 1..])
        } else {
            let end = item_end(rest, 0)?;
            (&rest[..end], &rest[end..])
        };
        let mut items = Vec::new();
        let mut pos = 0;
        while pos < list.len() {
            if list[pos] == b' ' {
                pos += 1;
                continue;
            }
            // A parenthesised argument (ANNOTATE's `ANNOTATION (entries
            // attributes)`) travels as an item of its own, in place.
            let end = match item_end(list, pos)? {
                end if end > pos => end,
                _ if list[pos] == b'(' => pos + matching_paren(&list[pos..])? + 1,
                _ => return None,
            };
            let raw = &list[pos..end];
            match String::from_utf8_lossy(raw).to_ascii_uppercase().as_str() {
                "ALL" => items.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"].map(|i| Requested::parse(i.as_bytes()))),
                "FAST" => items.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE"].map(|i| Requested::parse(i.as_bytes()))),
                "FULL" => {
                    items.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"].map(|i| Requested::parse(i.as_bytes())))
                }
                _ => items.push(Requested::parse(raw)),
            }
            pos = end;
        }
        if items.is_empty() || !(modifiers.is_empty() || modifiers.starts_with(b" ")) {
            return None;
        }
        Some(Fetch {
            set,
            items,
            modifiers: modifiers.to_vec(),
        })
    }

    /// True when any item depends on the message content.
    pub fn depends_on_content(&self) -> bool {
        self.items.iter().any(Requested::depends_on_content)
    }

    /// True when the client asked for an item with this response key.
    pub fn asks_for(&self, key: &str) -> bool {
        self.items.iter().any(|i| i.key == key)
    }

    /// The items the proxy adds so that each answer shows the message's UID,
    /// its structure and the start of its text: `(key, item)` pairs, only
    /// those the client did not ask for itself.
    pub fn additions(&self, uid_command: bool) -> Vec<Requested> {
        let mut added = Vec::new();
        if !uid_command && !self.asks_for("UID") {
            added.push(Requested::parse(b"UID"));
        }
        if !self.asks_for("BODYSTRUCTURE") {
            added.push(Requested::parse(b"BODYSTRUCTURE"));
        }
        let probe = Requested::parse(PROBE.as_bytes());
        if !self.asks_for(&probe.key) {
            added.push(probe);
        }
        added
    }

    /// The command line with `added` items appended to the list.
    pub fn rewrite(&self, head: &Head<'_>, added: &[Requested]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.set.len());
        out.extend_from_slice(head.tag);
        out.extend_from_slice(if head.uid { b" UID FETCH " } else { b" FETCH " });
        out.extend_from_slice(&self.set);
        out.extend_from_slice(b" (");
        for (i, item) in self.items.iter().chain(added).enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(&item.raw);
        }
        out.push(b')');
        out.extend_from_slice(&self.modifiers);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// End of the item starting at `pos`: bracketed sections and partials are
/// part of it.
fn item_end(s: &[u8], mut pos: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    while pos < s.len() {
        let b = s[pos];
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => pos += 1,
            _ if quoted => {}
            b'[' => depth += 1,
            b']' => depth = depth.checked_sub(1)?,
            b' ' | b'(' | b')' if depth == 0 => break,
            _ => {}
        }
        pos += 1;
    }
    (depth == 0 && !quoted).then_some(pos)
}

/// Index of the parenthesis closing the one at `s[0]`.
fn matching_paren(s: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut bracket = 0usize;
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => i += 1,
            _ if quoted => {}
            b'[' => bracket += 1,
            b']' => bracket = bracket.saturating_sub(1),
            b'(' if bracket == 0 => depth += 1,
            b')' if bracket == 0 => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A mailbox name as a key: `INBOX` in any case is `INBOX` (RFC 9051
/// §5.1), everything else byte for byte.
pub fn mailbox_key(name: &[u8]) -> Vec<u8> {
    if name.eq_ignore_ascii_case(b"INBOX") {
        b"INBOX".to_vec()
    } else {
        name.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = head(b"a1 UID fetch 1:* (FLAGS)\r\n").unwrap();
        assert_eq!((h.tag, h.uid, h.name.as_str()), (&b"a1"[..], true, "FETCH"));
        assert_eq!(&b"a1 UID fetch 1:* (FLAGS)"[h.args..], b"1:* (FLAGS)");
        let h = head(b"7 NOOP\r\n").unwrap();
        assert_eq!((h.name.as_str(), h.args), ("NOOP", 6));
        assert!(head(b"DONE\r\n").is_none());
        assert!(head(b"+ x\r\n").is_none());
        assert_eq!(head(b"x X-GM-OP y\r\n").unwrap().name, "X-GM-OP");
    }

    #[test]
    fn fetch_items_and_keys() {
        let f = Fetch::parse(
            b"1:5 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From Subject)] body.peek[]<0.65536> X-GM-LABELS) (CHANGEDSINCE 9)\r\n",
        )
        .unwrap();
        let keys: Vec<&str> = f.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "UID",
                "RFC822.SIZE",
                "BODY[HEADER.FIELDS (FROM SUBJECT)]",
                "BODY[]<0>",
                "X-GM-LABELS"
            ]
        );
        assert_eq!(f.items[3].partial_length, Some(65536));
        assert_eq!(f.modifiers, b" (CHANGEDSINCE 9)");
        assert!(f.depends_on_content());

        let f = Fetch::parse(b"2 ALL").unwrap();
        assert_eq!(f.items.len(), 4);
        let f = Fetch::parse(b"2 BODY[1.2]<10.20>").unwrap();
        assert_eq!((f.items[0].key.as_str(), f.items[0].partial_length), ("BODY[1.2]<10>", Some(20)));
        assert!(!Fetch::parse(b"1:* (FLAGS MODSEQ)").unwrap().depends_on_content());
        assert!(Fetch::parse(b"1:* (FLAGS").is_none());
        let annotate = Fetch::parse(b"1 (ANNOTATION (/comment value.priv) FLAGS)").unwrap();
        let raws: Vec<&[u8]> = annotate.items.iter().map(|i| i.raw.as_slice()).collect();
        assert_eq!(raws, [&b"ANNOTATION"[..], b"(/comment value.priv)", b"FLAGS"]);
        assert!(Fetch::parse(b"1 (FLAGS ))").is_none());
        assert!(Fetch::parse(b"1:*").is_none());
    }

    #[test]
    fn rewrite_adds_only_what_is_missing() {
        let line = b"A7 FETCH 3 (FLAGS BODY.PEEK[])\r\n";
        let h = head(line).unwrap();
        let f = Fetch::parse(&line[h.args..]).unwrap();
        let added = f.additions(h.uid);
        let out = f.rewrite(&h, &added);
        assert_eq!(out, b"A7 FETCH 3 (FLAGS BODY.PEEK[] UID BODYSTRUCTURE BODY.PEEK[TEXT]<0.512>)\r\n");
        let line = b"A8 UID FETCH 3 BODYSTRUCTURE (CHANGEDSINCE 1)\r\n";
        let h = head(line).unwrap();
        let f = Fetch::parse(&line[h.args..]).unwrap();
        let added = f.additions(h.uid);
        assert_eq!(
            f.rewrite(&h, &added),
            b"A8 UID FETCH 3 (BODYSTRUCTURE BODY.PEEK[TEXT]<0.512>) (CHANGEDSINCE 1)\r\n"
        );
    }
}
