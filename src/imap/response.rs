//! Recognisers for the few server responses the relay reads on the way
//! to the client: FETCH answers, UIDVALIDITY, tagged status lines and LIST
//! entries. Everything else the server says passes unread.

use super::command::mailbox_key;
use super::wire::Wire;

/// `* <n> FETCH ...`
pub(super) fn is_fetch_response(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else { return false };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].len() >= 7 && rest[digits..digits + 7].eq_ignore_ascii_case(b" FETCH ")
}

/// `* OK [UIDVALIDITY n]`
pub(super) fn uidvalidity(line: &[u8]) -> Option<u32> {
    let upper = line.to_ascii_uppercase();
    let rest = upper.strip_prefix(b"* OK [UIDVALIDITY ")?;
    let end = rest.iter().position(|&b| b == b']')?;
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// The `[APPENDUID uidvalidity uid-set]` of a tagged OK (RFC 4315): the
/// UIDVALIDITY and the UIDs in order.
pub(crate) fn append_uid(line: &[u8]) -> Option<(u32, Vec<u32>)> {
    let text = String::from_utf8_lossy(line).to_ascii_uppercase();
    let rest = &text[text.find("[APPENDUID ")? + 11..];
    let rest = &rest[..rest.find(']')?];
    let mut words = rest.split_whitespace();
    let uidvalidity = words.next()?.parse().ok()?;
    Some((uidvalidity, number_set(words.next()?)?))
}

/// `* <n> EXPUNGE`
pub(super) fn is_expunge(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else { return false };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].len() >= 8 && rest[digits..digits + 8].eq_ignore_ascii_case(b" EXPUNGE")
}

/// The tag of a `* ESEARCH (TAG "tag") ...` line.
pub(super) fn esearch_tag(line: &[u8]) -> Option<Vec<u8>> {
    let prefix = b"* ESEARCH (TAG ";
    if line.len() < prefix.len() || !line[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let wire = Wire::line(line[prefix.len()..].to_vec());
    wire.cursor().astring(1024)
}

/// The numbers of a `* SEARCH` line (RFC 3501), ascending, without a
/// CONDSTORE `(MODSEQ n)`; `None` for any other line.
pub(crate) fn search_numbers(line: &[u8]) -> Option<Vec<u32>> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some("*"), Some(w)) if w.eq_ignore_ascii_case("SEARCH") => {}
        _ => return None,
    }
    let mut numbers: Vec<u32> = words.take_while(|w| !w.starts_with('(')).filter_map(|n| n.parse().ok()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    Some(numbers)
}

/// The mod-sequence an ESEARCH `MODSEQ n` or a SEARCH `(MODSEQ n)`
/// carries.
pub(crate) fn modseq(line: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace().map(|w| w.trim_matches(|c| c == '(' || c == ')'));
    words.by_ref().find(|w| w.eq_ignore_ascii_case("MODSEQ"))?;
    words.next()?.parse().ok()
}

/// The UIDs of an ESEARCH line's `ALL` (ascending).
pub(crate) fn esearch_all(line: &[u8]) -> Vec<u32> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    let Some(_) = words.by_ref().find(|w| w.eq_ignore_ascii_case("ALL")) else {
        return Vec::new();
    };
    let mut uids = number_set(words.next().unwrap_or_default()).unwrap_or_default();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// The numbers an IMAP number set such as `1:3,7` names, in its order (a
/// range ascending whichever way it is written); `None` if malformed.
pub(crate) fn number_set(text: &str) -> Option<Vec<u32>> {
    let mut numbers = Vec::new();
    for range in text.split(',') {
        let mut ends = range.splitn(2, ':').map(|n| n.parse::<u32>().ok());
        match (ends.next().flatten(), ends.next()) {
            (Some(a), None) => numbers.push(a),
            (Some(a), Some(Some(b))) => numbers.extend(a.min(b)..=a.max(b)),
            _ => return None,
        }
    }
    Some(numbers)
}

/// The mailbox a `* LIST` line names, unless it is `\Noselect` or
/// `\NonExistent` (or its name came as a literal).
pub(crate) fn selectable_mailbox(line: &[u8]) -> Option<Vec<u8>> {
    let upper = line.to_ascii_uppercase();
    if !upper.starts_with(b"* LIST (") {
        return None;
    }
    let close = upper.iter().position(|&b| b == b')')?;
    let attributes = &upper[..close];
    if attributes.windows(9).any(|w| w == b"\\NOSELECT") || attributes.windows(12).any(|w| w == b"\\NONEXISTENT") {
        return None;
    }
    let wire = Wire::line(line[close + 1..].to_vec());
    let mut c = wire.cursor();
    c.skip_spaces();
    c.value()?;
    c.skip_spaces();
    if c.peek() == Some(b'{') {
        return None;
    }
    c.astring(4096)
}

/// The tag and success of a tagged status line.
pub(super) fn tagged(line: &[u8]) -> Option<(&[u8], bool)> {
    if line.starts_with(b"*") || line.starts_with(b"+") {
        return None;
    }
    let space = line.iter().position(|&b| b == b' ')?;
    let status = &line[space + 1..];
    let ok = status.len() >= 2 && status[..2].eq_ignore_ascii_case(b"OK");
    let known = ok
        || status.len() >= 2 && (status[..2].eq_ignore_ascii_case(b"NO") || status.len() >= 3 && status[..3].eq_ignore_ascii_case(b"BAD"));
    known.then_some((&line[..space], ok))
}

/// A `* LIST (attributes) delimiter name` line (no literal): the mailbox
/// and its SPECIAL-USE attributes, upper-cased.
pub(super) fn list_entry(line: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let upper = line.to_ascii_uppercase();
    if !(upper.starts_with(b"* LIST (") || upper.starts_with(b"* XLIST (")) {
        return None;
    }
    let wire = Wire::line(line.to_vec());
    let mut c = wire.cursor();
    c.token();
    c.skip_spaces();
    c.token();
    c.skip_spaces();
    let attributes = c.value()?;
    let attributes = wire.bytes(attributes.from, attributes.to, 4096)?;
    c.skip_spaces();
    c.value()?;
    c.skip_spaces();
    let mailbox = c.astring(4096)?;
    let special: Vec<String> = String::from_utf8_lossy(&attributes)
        .trim_matches(|c| c == '(' || c == ')')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .filter(|a| {
            matches!(
                a.as_str(),
                "\\DRAFTS" | "\\SENT" | "\\ARCHIVE" | "\\JUNK" | "\\TRASH" | "\\ALL" | "\\FLAGGED"
            )
        })
        .collect();
    Some((mailbox_key(&mailbox), special))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_lines_without_esearch() {
        assert_eq!(search_numbers(b"* SEARCH 9 2 5\r\n"), Some(vec![2, 5, 9]));
        assert_eq!(search_numbers(b"* search\r\n"), Some(vec![]));
        assert_eq!(search_numbers(b"* SEARCH 2 3 (MODSEQ 917162500)\r\n"), Some(vec![2, 3]));
        assert_eq!(search_numbers(b"* ESEARCH (TAG \"a\") UID ALL 1\r\n"), None);
        assert_eq!(search_numbers(b"* 3 EXISTS\r\n"), None);
        assert_eq!(modseq(b"* SEARCH 2 3 (MODSEQ 917162500)\r\n"), Some(917_162_500));
        assert_eq!(modseq(b"* ESEARCH (TAG \"a\") UID ALL 2:3 MODSEQ 12\r\n"), Some(12));
        assert_eq!(modseq(b"* SEARCH 2 3\r\n"), None);
    }

    #[test]
    fn append_uids() {
        assert_eq!(
            append_uid(b"a OK [APPENDUID 38505 3955] APPEND completed\r\n"),
            Some((38505, vec![3955]))
        );
        assert_eq!(append_uid(b"a OK [APPENDUID 1 4:6,9] done\r\n"), Some((1, vec![4, 5, 6, 9])));
        assert_eq!(append_uid(b"a OK done\r\n"), None);
        assert_eq!(number_set("1:3,7,10:9"), Some(vec![1, 2, 3, 7, 9, 10]));
        assert_eq!(number_set("1,x"), None);
    }

    #[test]
    fn response_lines_are_recognised() {
        assert!(is_fetch_response(b"* 12 FETCH (UID 3)\r\n"));
        assert!(is_fetch_response(b"* 1 fetch (FLAGS ())\r\n"));
        assert!(!is_fetch_response(b"* 12 EXISTS\r\n"));
        assert!(!is_fetch_response(b"* OK FETCH\r\n"));
        assert_eq!(uidvalidity(b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"), Some(1_700_000_000));
        assert_eq!(uidvalidity(b"* OK [UIDNEXT 5]\r\n"), None);
        assert_eq!(tagged(b"a1 OK done\r\n"), Some((&b"a1"[..], true)));
        assert_eq!(tagged(b"a1 NO [TRYCREATE] no\r\n"), Some((&b"a1"[..], false)));
        assert_eq!(tagged(b"a1 BAD what\r\n"), Some((&b"a1"[..], false)));
        assert_eq!(tagged(b"* OK x\r\n"), None);
        assert_eq!(
            list_entry(b"* LIST (\\HasNoChildren \\Drafts) \"/\" \"My Drafts\"\r\n"),
            Some((b"My Drafts".to_vec(), vec!["\\DRAFTS".to_string()]))
        );
        assert_eq!(list_entry(b"* LIST () \".\" inbox\r\n"), Some((b"INBOX".to_vec(), vec![])));
    }
}
