//! Search over mail the server cannot read: what a message offers to
//! SEARCH ([`Document`]), the criteria Sealpost evaluates itself
//! ([`Criterion`]) and the form both are compared in ([`normalize`]).
//!
//! The rules are Dovecot 2.3's (the reference server), so that a search
//! through Sealpost over encrypted mail finds exactly what the server
//! would find over the same mail stored in plaintext: case-insensitive
//! substring matching on decoded, normalised text. The per-account index
//! that holds documents lives in [`crate::store::SearchIndex`]; the IMAP
//! command that uses both in [`crate::imap::op::search`].
//!
//! This module owns text rules only: no I/O, no IMAP syntax, no keys.

pub mod grams;
pub mod normalize;
pub mod order;
pub mod thread;
mod unicode_tables;
pub mod words;

/// What SEARCH criteria read in one message, already in search form (see
/// [`normalize`]); built by `MessageView::search_text`. Values of
/// repeated fields and texts of different parts are kept apart by a line
/// feed, which a search string does not contain, so no match spans two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The Subject fields (white space runs made one space, decoded).
    pub subject: String,
    /// The From fields, as Dovecot writes address lists, decoded.
    pub from: String,
    /// The To fields.
    pub to: String,
    /// The Cc fields.
    pub cc: String,
    /// The Bcc fields.
    pub bcc: String,
    /// Every top-level field as a line `\nNAME:value`, the name in search
    /// form and the value decoded: what `HEADER` reads.
    pub fields: String,
    /// Every field of every part, `Name: value`, one per line: the header
    /// half of `TEXT`.
    pub all_fields: String,
    /// The bodies of the parts SEARCH reads: `BODY`, and the other half
    /// of `TEXT`.
    pub body: String,
    /// `RFC822.SIZE` of the message as the client sees it.
    pub size: u64,
    /// The first Date field as `SENT*` compares it (seconds, in the
    /// field's own zone; 0 when missing or unreadable).
    pub sent: i64,
    /// What SORT and THREAD read.
    pub order: OrderKeys,
    /// How much of the message the texts hold.
    pub coverage: Coverage,
}

/// How much of a message its [`Document`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Coverage {
    /// All of it.
    #[default]
    Whole = 0,
    /// Its header only: it was over `imap.max_message_size`.
    OverLimit = 1,
    /// Its header only: it is stored in plaintext, and the server
    /// searches its body (`imap.search = "hybrid"`).
    PlaintextHeader = 2,
}

impl Coverage {
    /// The coverage stored as `code`.
    pub fn from_code(code: i64) -> Coverage {
        match code {
            1 => Coverage::OverLimit,
            2 => Coverage::PlaintextHeader,
            _ => Coverage::Whole,
        }
    }
}

/// What SORT (RFC 5256, RFC 5957) and THREAD read in a message, as
/// Dovecot 2.3 reads it; strings in search form, compared byte by byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderKeys {
    /// The base subject of the first Subject field (RFC 5256 §2.1);
    /// `None` without a Subject field.
    pub base_subject: Option<String>,
    /// The first Subject was a reply or forward (`Re:`, `Fwd:`...).
    pub reply_or_forward: bool,
    /// The local part of the first address of the first From field (a
    /// group's name for a group).
    pub from: String,
    /// Of the first To field.
    pub to: String,
    /// Of the first Cc field.
    pub cc: String,
    /// The display name of the first From address, or its address when
    /// it has none (RFC 5957).
    pub display_from: String,
    /// Of the first To address.
    pub display_to: String,
    /// The first Date field, seconds since the epoch (UTC, modulo 2^32 as
    /// Dovecot keeps it); 0 when missing or unreadable.
    pub date: i64,
    /// The message's Message-ID (without brackets), when it has a valid
    /// one.
    pub message_id: Option<String>,
    /// Its parents, oldest first: the References field's ids, or when
    /// it has none, the first id of In-Reply-To.
    pub references: Vec<String>,
}

/// A SORT criterion (RFC 5256, RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    /// What is compared.
    pub key: SortKey,
    /// Descending.
    pub reverse: bool,
}

/// What a SORT criterion compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// INTERNALDATE.
    Arrival,
    /// The first Cc address's local part.
    Cc,
    /// The Date field (INTERNALDATE without one).
    Date,
    /// The first From address's local part.
    From,
    /// The size.
    Size,
    /// The base subject.
    Subject,
    /// The first To address's local part.
    To,
    /// The first From address's display name.
    DisplayFrom,
    /// The first To address's display name.
    DisplayTo,
}

/// A THREAD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ORDEREDSUBJECT` (RFC 5256).
    OrderedSubject,
    /// `REFERENCES` (RFC 5256).
    References,
    /// `REFS` (draft-ietf-morg-inthread): references without subject
    /// merging, threads ordered by their latest message.
    Refs,
}

/// What SORT and THREAD need of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Its UID.
    pub uid: u32,
    /// Its size as the client sees it.
    pub size: u64,
    /// Its INTERNALDATE, seconds since the epoch.
    pub arrival: i64,
    /// What SORT and THREAD read in it.
    pub keys: OrderKeys,
}

/// A top-level address field a criterion names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `SUBJECT`.
    Subject,
    /// `FROM`.
    From,
    /// `TO`.
    To,
    /// `CC`.
    Cc,
    /// `BCC`.
    Bcc,
}

impl Field {
    /// The header field's name in search form.
    pub fn header_name(self) -> &'static str {
        match self {
            Field::Subject => "SUBJECT",
            Field::From => "FROM",
            Field::To => "TO",
            Field::Cc => "CC",
            Field::Bcc => "BCC",
        }
    }
}

/// A SEARCH criterion that reads the message, which Sealpost evaluates
/// itself (the server sees only ciphertext). Strings are in search form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// `SUBJECT`, `FROM`, `TO`, `CC`, `BCC`: the string is in one of the
    /// fields; an empty string: the field is there.
    Field(Field, String),
    /// `HEADER name string`: the string is in a top-level field of that
    /// name; an empty string: the field is there.
    Header(String, String),
    /// `BODY`: in a body SEARCH reads (an empty string: every message).
    Body(String),
    /// `TEXT`: in a header field or a body (an empty string: every
    /// message).
    Text(String),
    /// `LARGER n`: the size is more than n.
    Larger(u64),
    /// `SMALLER n`: the size is less than n.
    Smaller(u64),
    /// `SENTBEFORE day` (the day's first second, UTC).
    SentBefore(i64),
    /// `SENTON day`.
    SentOn(i64),
    /// `SENTSINCE day`.
    SentSince(i64),
}

impl Document {
    /// True when the top-level header has a field named `name` (search
    /// form).
    pub fn has_field(&self, name: &str) -> bool {
        self.fields_named(name).next().is_some()
    }

    /// The values of the top-level fields named `name` (search form).
    pub fn fields_named<'d>(&'d self, name: &'d str) -> impl Iterator<Item = &'d str> + 'd {
        fields_named(&self.fields, name)
    }
}

/// The values of the fields named `name` in a [`Document::fields`] text.
pub fn fields_named<'d>(fields: &'d str, name: &'d str) -> impl Iterator<Item = &'d str> + 'd {
    fields.split('\n').filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(':')
    })
}

/// The first second (UTC) of the day `d-Mon-yyyy` of a SEARCH date;
/// `None` when it is no date. An impossible day (31-Feb-2020) is the end
/// of time, as Dovecot reads it: nothing is since it, all is before it.
pub fn search_day(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut parts = text.split('-');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || day.is_empty() || day.len() > 2 || year.len() != 4 {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
    if day < 1 || day > days_in_month {
        return Some(i64::MAX);
    }
    Some(days_from_civil(year, month, day) * 86_400)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_days() {
        assert_eq!(search_day(b"1-Jan-1970"), Some(0));
        assert_eq!(search_day(b"02-jun-2020"), Some(days_from_civil(2020, 6, 2) * 86_400));
        assert_eq!(search_day(b"31-Feb-2020"), Some(i64::MAX));
        assert_eq!(search_day(b"1-Foo-2020"), None);
        assert_eq!(search_day(b"1-Jan-20"), None);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn fields_by_name() {
        let doc = Document {
            fields: "\nSUBJECT:HI\nX-A:ONE\nX-AB:TWO\nX-A:".into(),
            ..Document::default()
        };
        assert_eq!(doc.fields_named("X-A").collect::<Vec<_>>(), ["ONE", ""]);
        assert!(doc.has_field("SUBJECT"));
        assert!(!doc.has_field("FROM"));
    }
}
