//! Reading the few client commands the proxy acts on: the tag and command
//! name of every command, and the item list of FETCH, which it extends so
//! that the answer tells it which messages are encrypted. Every other
//! command passes through as the client wrote it.

use super::item::FetchItem;

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

/// One data item a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The item, parsed.
    pub item: FetchItem,
    /// The item as the client wrote it.
    pub raw: Vec<u8>,
}

impl Requested {
    /// Reads one item as a client writes it.
    pub fn parse(raw: &[u8]) -> Requested {
        Requested {
            item: FetchItem::parse(raw),
            raw: raw.to_vec(),
        }
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
            // A single item: a list after it is its argument when that
            // makes an item the proxy knows (`FETCH 1 PREVIEW (LAZY)`),
            // otherwise the modifiers (`FETCH 1 BODY[] (CHANGEDSINCE 5)`).
            let end = match item_with_argument(rest, 0)? {
                end if !matches!(FetchItem::parse(&rest[..end]), FetchItem::Other(_)) => end,
                _ => item_end(rest, 0)?,
            };
            (&rest[..end], &rest[end..])
        };
        let mut items = Vec::new();
        let mut pos = 0;
        while pos < list.len() {
            if list[pos] == b' ' {
                pos += 1;
                continue;
            }
            let end = match item_with_argument(list, pos)? {
                end if end > pos => end,
                // A list with no name before it travels as an item of its
                // own, in place (the server will refuse it).
                _ if list[pos] == b'(' => pos + matching_paren(&list[pos..])? + 1,
                _ => return None,
            };
            let raw = &list[pos..end];
            let expanded: &[&str] = match String::from_utf8_lossy(raw).to_ascii_uppercase().as_str() {
                "ALL" => &["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
                "FAST" => &["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
                "FULL" => &["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
                _ => &[],
            };
            if expanded.is_empty() {
                items.push(Requested::parse(raw));
            } else {
                items.extend(expanded.iter().map(|i| Requested::parse(i.as_bytes())));
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
        self.items.iter().any(|r| r.item.depends_on_content())
    }

    /// True when the client asked for an item whose answer carries the
    /// same name as an answer to `item`.
    pub fn asks_for(&self, item: &FetchItem) -> bool {
        self.items.iter().any(|r| r.item.same_answer(item))
    }

    /// The items the proxy adds so that each answer shows the message's UID,
    /// its structure and the start of its text, and its size (an encrypted
    /// message is then fetched whole on a side connection, and the size
    /// bounds how many are held at once): only those the client did not
    /// ask for itself. An answer that carries the whole message shows the
    /// rest itself, which spares the server computing BODYSTRUCTURE.
    pub fn additions(&self, uid_command: bool) -> Vec<Requested> {
        let mut added = Vec::new();
        if !uid_command && !self.asks_for(&FetchItem::Uid) {
            added.push(Requested::parse(b"UID"));
        }
        if self.items.iter().any(|r| r.item.is_whole_message(false)) {
            return added;
        }
        if !self.asks_for(&FetchItem::Rfc822Size) {
            added.push(Requested::parse(b"RFC822.SIZE"));
        }
        if !self.asks_for(&FetchItem::BodyStructure) {
            added.push(Requested::parse(b"BODYSTRUCTURE"));
        }
        let probe = Requested::parse(PROBE.as_bytes());
        if !self.asks_for(&probe.item) {
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

/// End of the item starting at `pos` with its argument: a list that
/// follows the name belongs to it (`PREVIEW (LAZY)`, ANNOTATE's
/// `ANNOTATION (entries attributes)`), with the spaces before it, so that
/// items written back separated by spaces read the same again.
fn item_with_argument(s: &[u8], pos: usize) -> Option<usize> {
    let end = item_end(s, pos)?;
    let open = end + s[end..].iter().take_while(|&&b| b == b' ').count();
    if end > pos && s.get(open) == Some(&b'(') {
        return Some(open + matching_paren(&s[open..])? + 1);
    }
    Some(end)
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
        let answers = [
            "UID",
            "RFC822.SIZE",
            "BODY[HEADER.FIELDS (FROM SUBJECT)]",
            "BODY[]<0>",
            "X-GM-LABELS",
        ];
        assert_eq!(f.items.len(), answers.len());
        for (asked, answer) in f.items.iter().zip(answers) {
            assert!(asked.item.same_answer(&FetchItem::parse(answer.as_bytes())), "{answer}");
        }
        let FetchItem::Section { partial, peek, .. } = &f.items[3].item else {
            panic!("{:?}", f.items[3])
        };
        assert_eq!((partial.and_then(|p| p.length), *peek), (Some(65536), true));
        assert_eq!(f.items[4].item, FetchItem::Other(b"X-GM-LABELS".to_vec()));
        assert_eq!(f.modifiers, b" (CHANGEDSINCE 9)");
        assert!(f.depends_on_content());

        let f = Fetch::parse(b"2 ALL").unwrap();
        let all = [
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
        ];
        assert_eq!(f.items.iter().map(|i| i.item.clone()).collect::<Vec<_>>(), all);
        let f = Fetch::parse(b"2 BODY[1.2]<10.20>").unwrap();
        assert!(f.items[0].item.same_answer(&FetchItem::parse(b"BODY[1.2]<10>")));
        assert!(!Fetch::parse(b"1:* (FLAGS MODSEQ)").unwrap().depends_on_content());
        assert!(Fetch::parse(b"1:* (FLAGS").is_none());
        let annotate = Fetch::parse(b"1 (ANNOTATION (/comment value.priv) FLAGS)").unwrap();
        let raws: Vec<&[u8]> = annotate.items.iter().map(|i| i.raw.as_slice()).collect();
        assert_eq!(raws, [&b"ANNOTATION (/comment value.priv)"[..], b"FLAGS"]);
        let lone = Fetch::parse(b"1 ((FLAGS) UID)").unwrap();
        let raws: Vec<&[u8]> = lone.items.iter().map(|i| i.raw.as_slice()).collect();
        assert_eq!(raws, [&b"(FLAGS)"[..], b"UID"]);
        assert!(Fetch::parse(b"1 (FLAGS ))").is_none());
        assert!(Fetch::parse(b"1:*").is_none());
    }

    #[test]
    fn binary_and_preview_items() {
        let f = Fetch::parse(b"1:3 (BINARY.PEEK[1]<0.100> BINARY.SIZE[1] PREVIEW (LAZY) FLAGS)").unwrap();
        let raws: Vec<&[u8]> = f.items.iter().map(|i| i.raw.as_slice()).collect();
        assert_eq!(
            raws,
            [&b"BINARY.PEEK[1]<0.100>"[..], b"BINARY.SIZE[1]", b"PREVIEW (LAZY)", b"FLAGS"]
        );
        assert_eq!(f.items[2].item, FetchItem::Preview { lazy: true });
        assert!(f.depends_on_content());
        assert!(Fetch::parse(b"1 (PREVIEW)").unwrap().depends_on_content());
        assert!(Fetch::parse(b"1 BINARY.SIZE[2]").unwrap().depends_on_content());
        // Unparenthesised: the list is PREVIEW's argument, or modifiers.
        let f = Fetch::parse(b"1 PREVIEW (LAZY)").unwrap();
        assert_eq!(
            (f.items[0].item.clone(), f.modifiers.as_slice()),
            (FetchItem::Preview { lazy: true }, &b""[..])
        );
        let f = Fetch::parse(b"1 BODY[] (CHANGEDSINCE 5)").unwrap();
        assert_eq!((f.items.len(), f.modifiers.as_slice()), (1, &b" (CHANGEDSINCE 5)"[..]));
    }

    #[test]
    fn rewrite_adds_only_what_is_missing() {
        let line = b"A7 FETCH 3 (FLAGS BODY.PEEK[HEADER])\r\n";
        let h = head(line).unwrap();
        let f = Fetch::parse(&line[h.args..]).unwrap();
        let added = f.additions(h.uid);
        let out = f.rewrite(&h, &added);
        assert_eq!(
            out,
            b"A7 FETCH 3 (FLAGS BODY.PEEK[HEADER] UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[TEXT]<0.512>)\r\n"
        );
        // The whole message shows whether it is encrypted.
        let line = b"A9 FETCH 3 (FLAGS BODY.PEEK[])\r\n";
        let h = head(line).unwrap();
        let f = Fetch::parse(&line[h.args..]).unwrap();
        assert_eq!(f.rewrite(&h, &f.additions(h.uid)), b"A9 FETCH 3 (FLAGS BODY.PEEK[] UID)\r\n");
        let line = b"A8 UID FETCH 3 BODYSTRUCTURE (CHANGEDSINCE 1)\r\n";
        let h = head(line).unwrap();
        let f = Fetch::parse(&line[h.args..]).unwrap();
        let added = f.additions(h.uid);
        assert_eq!(
            f.rewrite(&h, &added),
            b"A8 UID FETCH 3 (BODYSTRUCTURE RFC822.SIZE BODY.PEEK[TEXT]<0.512>) (CHANGEDSINCE 1)\r\n"
        );
    }
}
