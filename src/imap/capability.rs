//! Which of the provider's capabilities reach the client: all of them,
//! except the few the proxy cannot honour because they would bypass it or
//! change the bytes under it. Before login the proxy answers with its own
//! list.

/// True for a capability the client may see through the proxy.
fn passes(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    // COMPRESS would compress the upstream leg under the proxy's parser.
    // CATENATE and URLAUTH build messages on the server from parts, beyond
    // APPEND encryption. The drafts of PREVIEW (PREVIEW=FUZZY,
    // SNIPPET=FUZZY) have a syntax of their own that the proxy does not
    // answer, so they would show the ciphertext (RFC 8970 PREVIEW and
    // RFC 3516 BINARY are answered from the decrypted message). STARTTLS
    // and LOGINDISABLED describe the upstream leg, not ours; -PLUS SASL
    // binds to the upstream TLS channel.
    // Searches that read content are answered by the proxy, which does
    // not (yet) implement sorting and threading by the protected
    // headers, search contexts, fuzzy search or partial results: the
    // server would answer them over ciphertext, and see the search terms.
    let search_extension =
        upper.starts_with("THREAD=") || upper.starts_with("CONTEXT=") || upper.starts_with("SEARCH=") || upper == "PARTIAL";
    !(search_extension
        || upper.starts_with("COMPRESS=")
        || upper == "CATENATE"
        || upper.starts_with("URLAUTH")
        || upper.starts_with("PREVIEW=")
        || upper.starts_with("SNIPPET=")
        || upper == "STARTTLS"
        || upper == "LOGINDISABLED"
        || (upper.starts_with("AUTH=") && upper.ends_with("-PLUS")))
}

/// The line with unsupported capabilities removed, when it is a
/// capability list: `* CAPABILITY ...`, or a status response (`OK`, `NO`,
/// `BAD`, `PREAUTH`, `BYE`, tagged or not) whose response code is
/// `[CAPABILITY ...]`. `None` for any other line, which then passes as it
/// is (a mailbox named "[CAPABILITY x]" in a LIST answer included). Only
/// whole words are removed; every other byte stays.
pub fn filter_line(line: &[u8]) -> Option<Vec<u8>> {
    let upper: Vec<u8> = line.to_ascii_uppercase();
    let (start, end) = if upper.starts_with(b"* CAPABILITY ") {
        let start = b"* CAPABILITY ".len();
        let end = line.len() - line.iter().rev().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        (start, end)
    } else {
        let tag_end = upper.iter().position(|&b| b == b' ')?;
        let rest = &upper[tag_end + 1..];
        let status = [&b"OK "[..], b"NO ", b"BAD ", b"PREAUTH ", b"BYE "]
            .into_iter()
            .find(|s| rest.starts_with(s))?;
        let code = &rest[status.len()..];
        if !code.starts_with(b"[CAPABILITY ") {
            return None;
        }
        let start = tag_end + 1 + status.len() + b"[CAPABILITY ".len();
        let end = start + upper[start..].iter().position(|&b| b == b']')?;
        (start, end)
    };
    let kept: Vec<&[u8]> = line[start..end]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty() && passes(&String::from_utf8_lossy(w)))
        .collect();
    let mut out = line[..start].to_vec();
    out.extend_from_slice(&kept.join(&b' '));
    out.extend_from_slice(&line[end..]);
    Some(out)
}

/// The capabilities of `words` the client may see, space-separated.
pub fn filter_words(words: &[String]) -> String {
    words.iter().filter(|w| passes(w)).cloned().collect::<Vec<_>>().join(" ")
}

/// The proxy's own capability list before login. `login_allowed` is false
/// on a plain connection that is not loopback: then LOGIN and
/// AUTHENTICATE wait for STARTTLS.
pub fn before_login(tls: bool, login_allowed: bool) -> String {
    let mut caps = vec!["IMAP4rev1", "LITERAL+", "SASL-IR", "ID"];
    if !tls {
        caps.push("STARTTLS");
    }
    if login_allowed {
        caps.extend(["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]);
    } else {
        caps.push("LOGINDISABLED");
    }
    caps.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_what_the_proxy_cannot_honour() {
        let line = b"* CAPABILITY IMAP4rev1 SASL-IR COMPRESS=DEFLATE BINARY CONDSTORE QRESYNC X-GM-EXT-1 AUTH=SCRAM-SHA-256-PLUS AUTH=PLAIN SPECIAL-USE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW\r\n";
        assert_eq!(
            filter_line(line).unwrap(),
            b"* CAPABILITY IMAP4rev1 SASL-IR BINARY CONDSTORE QRESYNC X-GM-EXT-1 AUTH=PLAIN SPECIAL-USE PREVIEW\r\n"
        );
        let line = b"a1 OK [CAPABILITY IMAP4rev1 IDLE compress=deflate MOVE] Logged in\r\n";
        assert_eq!(filter_line(line).unwrap(), b"a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n");
        assert!(filter_line(b"* 3 EXISTS\r\n").is_none());
        assert!(filter_line(b"* OK [CAPABILITY broken\r\n").is_none());
        let list = b"* LIST () \".\" \"Projects [CAPABILITY BINARY] 2026\"\r\n";
        assert!(filter_line(list).is_none(), "only capability responses are touched");
        assert_eq!(
            filter_line(b"* CAPABILITY IMAP4rev1 X-VENDOR-\xff CATENATE\r\n").unwrap(),
            b"* CAPABILITY IMAP4rev1 X-VENDOR-\xff\r\n"
        );
        assert!(filter_line(b"* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n")
            .unwrap()
            .ends_with(b"[CAPABILITY IMAP4rev1] hi\r\n"));
    }

    #[test]
    fn own_list_follows_the_leg() {
        assert!(before_login(false, false).contains("LOGINDISABLED"));
        assert!(!before_login(false, false).contains("AUTH="));
        assert!(before_login(false, true).contains("STARTTLS"));
        assert!(!before_login(true, true).contains("STARTTLS"));
    }
}
