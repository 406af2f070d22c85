//! Client commands (RFC 5321 §4.1, RFC 3207, RFC 4954, RFC 3030) parsed
//! from one command line. Parsing only: no state, no I/O.

use super::reply::Reply;

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The base64 initial response (`=` for an empty one).
        initial: Option<String>,
    },
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path, empty for `<>`.
        from: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Vec<Param>,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward path.
        to: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]`.
    Bdat {
        /// Octets in this chunk.
        size: u64,
        /// The final chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY` (never answered with data).
    Vrfy,
    /// `HELP`.
    Help,
}

/// An ESMTP parameter: `KEYWORD[=value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Upper-cased keyword.
    pub keyword: String,
    /// The value, if any.
    pub value: Option<String>,
}

impl Command {
    /// Parses a command line (without the line ending). The error is the
    /// reply to send.
    pub fn parse(line: &str) -> Result<Command, Reply> {
        let (verb, rest) = match line.split_once(' ') {
            Some((v, r)) => (v, r.trim()),
            None => (line.trim_end(), ""),
        };
        let syntax = |what: &str| Reply::new(501, format!("5.5.4 Syntax: {what}"));
        let no_args = |cmd: Command| {
            if rest.is_empty() {
                Ok(cmd)
            } else {
                Err(syntax(&verb.to_ascii_uppercase()))
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(syntax(&format!("{} domain", verb.to_ascii_uppercase())));
                }
                Ok(if verb.eq_ignore_ascii_case("EHLO") {
                    Command::Ehlo(rest.to_string())
                } else {
                    Command::Helo(rest.to_string())
                })
            }
            "STARTTLS" => no_args(Command::StartTls),
            "AUTH" => {
                let mut words = rest.split_whitespace();
                let mechanism = words.next().ok_or_else(|| syntax("AUTH mechanism [initial-response]"))?;
                let initial = words.next().map(str::to_string);
                if words.next().is_some() {
                    return Err(syntax("AUTH mechanism [initial-response]"));
                }
                Ok(Command::Auth {
                    mechanism: mechanism.to_ascii_uppercase(),
                    initial,
                })
            }
            "MAIL" => {
                let (from, params) = path_and_params(rest, "FROM:").ok_or_else(|| syntax("MAIL FROM:<address> [parameters]"))?;
                Ok(Command::Mail { from, params })
            }
            "RCPT" => {
                let (to, params) = path_and_params(rest, "TO:").ok_or_else(|| syntax("RCPT TO:<address> [parameters]"))?;
                if to.is_empty() {
                    return Err(Reply::new(501, "5.1.3 Syntax: RCPT TO:<address>; the null path is not a recipient"));
                }
                Ok(Command::Rcpt { to, params })
            }
            "DATA" => no_args(Command::Data),
            "BDAT" => {
                let mut words = rest.split_whitespace();
                let size = words
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| syntax("BDAT size [LAST]"))?;
                let last = match words.next() {
                    None => false,
                    Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                    Some(_) => return Err(syntax("BDAT size [LAST]")),
                };
                if words.next().is_some() {
                    return Err(syntax("BDAT size [LAST]"));
                }
                Ok(Command::Bdat { size, last })
            }
            "RSET" => no_args(Command::Rset),
            "NOOP" => Ok(Command::Noop),
            "QUIT" => no_args(Command::Quit),
            "VRFY" => Ok(Command::Vrfy),
            "HELP" => Ok(Command::Help),
            _ => Err(Reply::new(500, "5.5.2 Command not recognized")),
        }
    }
}

/// Splits `FROM:<path> PARAM=x ...`, tolerating a space after the colon
/// and a missing pair of angle brackets as many clients send them.
fn path_and_params(rest: &str, prefix: &str) -> Option<(String, Vec<Param>)> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = rest[prefix.len()..].trim_start();
    let (path, after) = if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        (&inner[..end], &inner[end + 1..])
    } else {
        match rest.split_once(' ') {
            Some((p, a)) => (p, a),
            None => (rest, ""),
        }
    };
    if path.contains(['<', '>', ' ']) || (!path.is_empty() && !valid_mailbox(path)) {
        return None;
    }
    // A source route (@a,@b:user@c) is obsolete; keep only the mailbox.
    let path = path.rsplit_once(':').map(|(_, m)| m).unwrap_or(path);
    let mut params = Vec::new();
    for word in after.split_whitespace() {
        let (keyword, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word, None),
        };
        if keyword.is_empty() || !keyword.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        params.push(Param {
            keyword: keyword.to_ascii_uppercase(),
            value,
        });
    }
    Some((path.to_string(), params))
}

fn valid_mailbox(path: &str) -> bool {
    let mailbox = path.rsplit_once(':').map(|(_, m)| m).unwrap_or(path);
    match mailbox.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !mailbox.chars().any(char::is_control),
        None => mailbox.eq_ignore_ascii_case("postmaster"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_commands() {
        assert_eq!(
            Command::parse("MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME SMTPUTF8").unwrap(),
            Command::Mail {
                from: "a@x.test".into(),
                params: vec![
                    Param {
                        keyword: "SIZE".into(),
                        value: Some("100".into())
                    },
                    Param {
                        keyword: "BODY".into(),
                        value: Some("8BITMIME".into())
                    },
                    Param {
                        keyword: "SMTPUTF8".into(),
                        value: None
                    },
                ],
            }
        );
        assert_eq!(
            Command::parse("mail from: <>").unwrap(),
            Command::Mail {
                from: String::new(),
                params: vec![]
            }
        );
        assert_eq!(
            Command::parse("RCPT TO:b@x.test").unwrap(),
            Command::Rcpt {
                to: "b@x.test".into(),
                params: vec![]
            }
        );
        assert_eq!(
            Command::parse("RCPT TO:<jöran@exämple.test>").unwrap(),
            Command::Rcpt {
                to: "jöran@exämple.test".into(),
                params: vec![]
            }
        );
        assert_eq!(
            Command::parse("RCPT TO:<Postmaster>").unwrap(),
            Command::Rcpt {
                to: "Postmaster".into(),
                params: vec![]
            }
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            Command::parse("EHLO client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            Command::parse("auth plain AGEAYg==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(Command::parse("BDAT 1000 LAST").unwrap(), Command::Bdat { size: 1000, last: true });
        assert_eq!(Command::parse("BDAT 0").unwrap(), Command::Bdat { size: 0, last: false });
        assert_eq!(Command::parse("quit").unwrap(), Command::Quit);
    }

    proptest::proptest! {
        /// Any line a client can send parses or gets a 5xx reply; nothing
        /// panics.
        #[test]
        fn any_line_parses_or_is_refused(line in "\\PC{0,300}") {
            if let Err(reply) = Command::parse(&line) {
                proptest::prop_assert!((500..600).contains(&reply.code));
            }
        }
    }

    #[test]
    fn errors_carry_rfc_codes() {
        assert_eq!(Command::parse("FOO").unwrap_err().code, 500);
        assert_eq!(Command::parse("").unwrap_err().code, 500);
        for bad in [
            "MAIL TO:<a@x>",
            "MAIL FROM:<a@x",
            "RCPT TO:<>",
            "RCPT TO:<a b@x>",
            "EHLO",
            "BDAT x",
            "BDAT 1 FIRST",
            "DATA now",
            "MAIL FROM:<a@x> =1",
            "RCPT TO:<nodomain>",
        ] {
            assert_eq!(Command::parse(bad).unwrap_err().code, 501, "{bad}");
        }
    }
}
