//! The `Content-Type` value: media type and parameters (RFC 2045 §5.1).

/// A parsed `Content-Type` value. The media type is lower-cased; parameter
/// names are lower-cased, values are unquoted but otherwise kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower-cased.
    pub mime_type: String,
    params: Vec<(String, String)>,
}

impl ContentType {
    /// The RFC 2045 default, `text/plain; charset=us-ascii`.
    pub fn text_plain() -> ContentType {
        ContentType {
            mime_type: "text/plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        }
    }

    /// Parses an unfolded value. `None` when there is no `type/subtype`.
    pub fn parse(value: &str) -> Option<ContentType> {
        let end = value.find(';').unwrap_or(value.len());
        let mime_type = strip_comments(&value[..end]).trim().to_ascii_lowercase();
        let (top, sub) = mime_type.split_once('/')?;
        if top.is_empty() || sub.is_empty() || mime_type.contains(char::is_whitespace) {
            return None;
        }
        let params = if end < value.len() {
            parse_params(&value[end + 1..])
        } else {
            Vec::new()
        };
        Some(ContentType { mime_type, params })
    }

    /// The value of a parameter (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for any `multipart/*` type.
    pub fn is_multipart(&self) -> bool {
        self.mime_type.starts_with("multipart/")
    }

    /// True when the type is exactly `mime_type` (lower-case argument).
    pub fn is(&self, mime_type: &str) -> bool {
        self.mime_type == mime_type
    }
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Parses `; name=value; name="quoted \" value"` lists, tolerating stray
/// semicolons, missing values and unterminated quotes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == ';' || bytes[i].is_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && bytes[i] != '=' && bytes[i] != ';' {
            i += 1;
        }
        let name: String = bytes[name_start..i].iter().collect::<String>().trim().to_ascii_lowercase();
        if i >= bytes.len() || bytes[i] == ';' {
            continue;
        }
        i += 1; // '='
        while i < bytes.len() && bytes[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
            i += 1; // closing quote
            while i < bytes.len() && bytes[i] != ';' {
                i += 1;
            }
        } else {
            while i < bytes.len() && bytes[i] != ';' {
                value.push(bytes[i]);
                i += 1;
            }
            value = value.trim().to_string();
        }
        if !name.is_empty() {
            params.push((name, value));
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgp_mime_header() {
        let ct = ContentType::parse("multipart/encrypted; protocol=\"application/pgp-encrypted\";  boundary=\"--=_x;y\"").unwrap();
        assert!(ct.is("multipart/encrypted"));
        assert_eq!(ct.param("Protocol"), Some("application/pgp-encrypted"));
        assert_eq!(ct.param("boundary"), Some("--=_x;y"));
    }

    #[test]
    fn tolerates_junk() {
        assert!(ContentType::parse("").is_none());
        assert!(ContentType::parse("text").is_none());
        let ct = ContentType::parse("Text/Plain (comment);; charset=utf-8; flag; q=\"unterminated").unwrap();
        assert_eq!(ct.mime_type, "text/plain");
        assert_eq!(ct.param("charset"), Some("utf-8"));
        assert_eq!(ct.param("q"), Some("unterminated"));
        assert_eq!(ct.param("flag"), None);
    }

    #[test]
    fn escaped_quotes_in_values() {
        let ct = ContentType::parse(r#"text/plain; name="a \"b\" c""#).unwrap();
        assert_eq!(ct.param("name"), Some(r#"a "b" c"#));
    }
}
