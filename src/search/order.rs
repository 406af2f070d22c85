//! SORT (RFC 5256, RFC 5957) over the keys the index keeps, as Dovecot
//! 2.3 sorts: strings compared byte by byte in search form, DATE falling
//! back to the arrival time when the Date field is missing or unreadable,
//! REVERSE applying to one criterion, and ties going to the lower
//! sequence number (the lower UID), never reversed.

use std::cmp::Ordering;

use super::{OrderRow, SortCriterion, SortKey};

/// The UIDs of `rows` in the order `criteria` give.
pub fn sort(rows: &[&OrderRow], criteria: &[SortCriterion]) -> Vec<u32> {
    let mut sorted: Vec<&OrderRow> = rows.to_vec();
    sorted.sort_by(|a, b| {
        criteria
            .iter()
            .map(|c| {
                let order = compare(a, b, c.key);
                if c.reverse {
                    order.reverse()
                } else {
                    order
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(a.uid.cmp(&b.uid))
    });
    sorted.into_iter().map(|r| r.uid).collect()
}

/// The time DATE sorts by: the Date field, or the arrival without one.
pub fn sent_or_arrival(row: &OrderRow) -> i64 {
    if row.keys.date != 0 {
        row.keys.date
    } else {
        row.arrival
    }
}

fn compare(a: &OrderRow, b: &OrderRow, key: SortKey) -> Ordering {
    let (ka, kb) = (&a.keys, &b.keys);
    match key {
        SortKey::Arrival => a.arrival.cmp(&b.arrival),
        SortKey::Date => sent_or_arrival(a).cmp(&sent_or_arrival(b)),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Subject => ka
            .base_subject
            .as_deref()
            .unwrap_or("")
            .cmp(kb.base_subject.as_deref().unwrap_or("")),
        SortKey::From => ka.from.cmp(&kb.from),
        SortKey::To => ka.to.cmp(&kb.to),
        SortKey::Cc => ka.cc.cmp(&kb.cc),
        SortKey::DisplayFrom => ka.display_from.cmp(&kb.display_from),
        SortKey::DisplayTo => ka.display_to.cmp(&kb.display_to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::OrderKeys;

    fn row(uid: u32, subject: &str, size: u64, date: i64, arrival: i64) -> OrderRow {
        OrderRow {
            uid,
            size,
            arrival,
            keys: OrderKeys {
                base_subject: Some(subject.into()),
                date,
                ..OrderKeys::default()
            },
        }
    }

    #[test]
    fn reverse_applies_to_one_key_and_ties_stay_ascending() {
        let rows = [
            row(1, "B", 10, 0, 50),
            row(2, "A", 30, 40, 1),
            row(3, "B", 20, 30, 2),
            row(4, "A", 30, 0, 5),
        ];
        let refs: Vec<&OrderRow> = rows.iter().collect();
        let by = |criteria: &[SortCriterion]| sort(&refs, criteria);
        let c = |key, reverse| SortCriterion { key, reverse };
        assert_eq!(by(&[c(SortKey::Subject, true)]), [1, 3, 2, 4]);
        assert_eq!(by(&[c(SortKey::Subject, false), c(SortKey::Size, true)]), [2, 4, 3, 1]);
        // DATE: 1 has none (arrival 50), 4 has none (arrival 5).
        assert_eq!(by(&[c(SortKey::Date, false)]), [4, 3, 2, 1]);
        assert_eq!(by(&[c(SortKey::Arrival, false)]), [2, 3, 4, 1]);
    }
}
