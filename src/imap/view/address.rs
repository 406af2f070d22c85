//! ENVELOPE address lists: Dovecot's `message-address.c`, filling in
//! missing parts (`MISSING_MAILBOX`, `MISSING_DOMAIN`) as it does.

use super::part::Address;
use super::rfc822::Rfc822;

/// Parses an address-list header value into ENVELOPE addresses; `None`
/// when there is nothing but white space and comments.
pub(super) fn parse_addresses(value: &[u8]) -> Option<Vec<Address>> {
    let mut p = Rfc822::new(value);
    p.last_comment = Some(Vec::new());
    let mut ctx = AddressParser {
        p,
        list: Vec::new(),
        addr: Address::default(),
        s: Vec::new(),
    };
    if ctx.p.skip_lwsp() <= 0 {
        return None;
    }
    ctx.parse_address_list();
    if ctx.list.is_empty() {
        None
    } else {
        Some(ctx.list)
    }
}

struct AddressParser<'v> {
    p: Rfc822<'v>,
    list: Vec<Address>,
    addr: Address,
    s: Vec<u8>,
}

impl AddressParser<'_> {
    fn add_address(&mut self) {
        self.list.push(std::mem::take(&mut self.addr));
    }

    fn add_fixed_address(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
            self.addr.invalid = true;
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
            self.addr.invalid = true;
        }
        self.add_address();
    }

    fn parse_local_part(&mut self) -> i32 {
        self.s.clear();
        let ret = if self.p.peek() == b'"' {
            self.p.parse_quoted_string(&mut self.s)
        } else {
            self.p.parse_nonstrict_dot_atom(&mut self.s)
        };
        if ret < 0 {
            return -1;
        }
        self.addr.mailbox = Some(self.s.clone());
        ret
    }

    fn parse_domain(&mut self) -> i32 {
        self.s.clear();
        let ret = self.p.parse_domain(&mut self.s);
        if ret < 0 {
            return -1;
        }
        self.addr.domain = Some(self.s.clone());
        ret
    }

    fn parse_domain_list(&mut self) -> i32 {
        self.s.clear();
        loop {
            if self.p.at_end() {
                return 0;
            }
            if self.p.peek() != b'@' {
                break;
            }
            if !self.s.is_empty() {
                self.s.push(b',');
            }
            self.s.push(b'@');
            let ret = self.p.parse_domain(&mut self.s);
            if ret <= 0 {
                return ret;
            }
            while self.p.skip_lwsp() > 0 && self.p.peek() == b',' {
                self.p.pos += 1;
            }
        }
        self.addr.route = Some(self.s.clone());
        1
    }

    fn parse_angle_addr(&mut self) -> i32 {
        self.p.pos += 1; // '<'
        if self.p.skip_lwsp() <= 0 {
            return -1;
        }
        if self.p.peek() == b'@' {
            if self.parse_domain_list() > 0 && self.p.peek() == b':' {
                self.p.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.p.at_end() {
                    return -1;
                }
            }
            if self.p.skip_lwsp() <= 0 {
                return -1;
            }
        }
        if self.p.peek() != b'>' {
            if self.parse_local_part() <= 0 {
                return -1;
            }
            if self.p.peek() == b'@' && self.parse_domain() <= 0 {
                return -1;
            }
        }
        if self.p.peek() != b'>' || self.p.at_end() {
            return -1;
        }
        self.p.pos += 1;
        self.p.skip_lwsp()
    }

    fn parse_name_addr(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.peek() != b'<' {
            return -1;
        }
        self.addr.name = if self.s.is_empty() { None } else { Some(self.s.clone()) };
        if self.parse_angle_addr() < 0 {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.addr.invalid = true;
        }
        self.p.more()
    }

    fn parse_addr_spec(&mut self) -> i32 {
        if let Some(c) = &mut self.p.last_comment {
            c.clear();
        }
        let quoted_string = self.p.peek() == b'"';
        let mut ret = self.parse_local_part();
        if ret <= 0 {
            self.addr.invalid = true;
        }
        let mut ret2 = -2;
        if ret != 0 && !self.p.at_end() && self.p.peek() == b'@' {
            ret2 = self.parse_domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        let comment = self.p.last_comment.clone().unwrap_or_default();
        if !comment.is_empty() {
            self.addr.name = Some(comment);
        } else if ret2 == -2 {
            // A lone word is a mailbox without a domain; anything after it
            // makes it a display name.
            self.s.push(b' ');
            let before = self.s.len();
            self.p.parse_phrase(&mut self.s);
            if self.s.len() != before {
                self.addr.mailbox = None;
                self.addr.name = Some(self.s.clone());
            } else if !quoted_string {
                self.addr.domain = Some(Vec::new());
            }
            self.addr.invalid = true;
            ret = -1;
        }
        ret
    }

    fn parse_mailbox(&mut self) -> i32 {
        let start = self.p.pos;
        let mut ret = self.parse_name_addr();
        if ret < 0 {
            self.p.pos = start;
            ret = self.parse_addr_spec();
            if self.addr.invalid && self.addr.name.is_none() && self.addr.mailbox.is_some() && self.addr.domain.is_none() {
                self.addr.name = self.addr.mailbox.take();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_fixed_address();
        ret
    }

    fn parse_group(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.peek() != b':' {
            return -1;
        }
        self.p.pos += 1;
        let mut ret = self.p.skip_lwsp();
        if ret <= 0 {
            self.addr.invalid = true;
        }
        self.addr.mailbox = Some(self.s.clone());
        self.add_address();
        if ret > 0 && self.p.peek() != b';' {
            loop {
                self.parse_mailbox();
                if self.p.at_end() || self.p.peek() != b',' {
                    break;
                }
                self.p.pos += 1;
                if self.p.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.p.at_end() || self.p.peek() != b';' {
                ret = -1;
            } else {
                self.p.pos += 1;
                ret = self.p.skip_lwsp();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_address();
        i32::from(ret != 0)
    }

    fn parse_address(&mut self) -> i32 {
        let start = self.p.pos;
        let ret = self.parse_group();
        if ret < 0 {
            self.p.pos = start;
            return self.parse_mailbox();
        }
        ret
    }

    fn parse_address_list(&mut self) {
        loop {
            if self.parse_address() == 0 {
                break;
            }
            if self.p.at_end() || self.p.peek() != b',' {
                break;
            }
            self.p.pos += 1;
            let ret = self.p.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    // ends with some garbage
                    self.add_fixed_address();
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::write::write_addresses;
    use super::*;
    use crate::imap::emit::rendered as render;

    fn addresses(value: &str) -> String {
        render(|o| write_addresses(o, parse_addresses(value.as_bytes()).as_deref()))
    }
    #[test]
    fn address_lists() {
        assert_eq!(addresses("a@b.c"), r#"((NIL NIL "a" "b.c"))"#);
        assert_eq!(addresses("  "), "NIL");
        assert_eq!(
            addresses(r#""Joe \"Q\" Public" <joe@x.org>"#),
            "(({14}\r\nJoe \"Q\" Public NIL \"joe\" \"x.org\"))"
        );
        assert_eq!(
            addresses("group: a@b, \"c\" <c@d>;, empty:;"),
            r#"((NIL NIL "group" NIL)(NIL NIL "a" "b")("c" NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "empty" NIL)(NIL NIL NIL NIL))"#
        );
        assert_eq!(addresses("(comment) x@y (Name Here)"), r#"(("Name Here" NIL "x" "y"))"#);
        assert_eq!(addresses("<@r1,@r2:u@h>"), r#"((NIL "@r1,@r2" "u" "h"))"#);
        assert_eq!(addresses("bare"), r#"((NIL NIL "bare" "MISSING_DOMAIN"))"#);
        assert_eq!(addresses("=?utf-8?q?J=C3=B6?= <j@x>"), r#"(("=?utf-8?q?J=C3=B6?=" NIL "j" "x"))"#);
        assert_eq!(
            addresses("a@, @b, <>, \"\"@x"),
            r#"((NIL NIL "a" "MISSING_DOMAIN")(NIL NIL "MISSING_MAILBOX" "b")(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "" "x"))"#
        );
        assert_eq!(
            addresses("undisclosed-recipients:;"),
            r#"((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))"#
        );
    }
}
