//! THREAD (RFC 5256 ORDEREDSUBJECT and REFERENCES, and REFS) over the
//! keys the index keeps, as Dovecot 2.3 threads:
//!
//! - a message's id is its first valid Message-ID; of messages sharing
//!   one, the lowest UID keeps it and the others get ids nothing refers
//!   to;
//! - a message's parent is the last id of its References field (or the
//!   first of In-Reply-To without one); the ids before it link up as far
//!   as no link exists and none would make a loop; ids of messages not
//!   selected make dummy nodes, which are then pruned;
//! - siblings are ordered by date (the Date field, or the arrival
//!   without one) and then UID; REFERENCES merges threads with equal
//!   base subjects, REFS does not and orders threads by their latest
//!   message.
//!
//! The answer is written as `(a (b c)(d))`: each thread in parentheses,
//! a single child after a space, several children each in parentheses.

use std::collections::HashMap;

use super::order::sent_or_arrival;
use super::{Algorithm, OrderRow};

/// The THREAD answer (without `* THREAD`) for `rows` (the selected
/// messages, ascending by UID), each message written as `id(uid)`.
pub fn thread(rows: &[&OrderRow], algorithm: Algorithm, id: impl Fn(u32) -> u32) -> String {
    let mut out = String::new();
    match algorithm {
        Algorithm::OrderedSubject => ordered_subject(rows, &id, &mut out),
        Algorithm::References | Algorithm::Refs => {
            let mut forest = Forest::build(rows);
            forest.prune();
            forest.sort_all();
            if algorithm == Algorithm::References {
                forest.merge_subjects();
                forest.sort_all();
            } else {
                forest.sort_roots_by_latest();
            }
            for &root in &forest.roots {
                out.push('(');
                forest.write(root, &id, &mut out);
                out.push(')');
            }
        }
    }
    out
}

fn ordered_subject(rows: &[&OrderRow], id: &impl Fn(u32) -> u32, out: &mut String) {
    let subject = |r: &OrderRow| r.keys.base_subject.clone().unwrap_or_default();
    let mut sorted: Vec<&OrderRow> = rows.to_vec();
    sorted.sort_by(|a, b| {
        subject(a)
            .cmp(&subject(b))
            .then(sent_or_arrival(a).cmp(&sent_or_arrival(b)))
            .then(a.uid.cmp(&b.uid))
    });
    let mut groups: Vec<Vec<&OrderRow>> = Vec::new();
    for row in sorted {
        match groups.last_mut() {
            Some(group) if subject(group[0]) == subject(row) => group.push(row),
            _ => groups.push(vec![row]),
        }
    }
    groups.sort_by(|a, b| sent_or_arrival(a[0]).cmp(&sent_or_arrival(b[0])).then(a[0].uid.cmp(&b[0].uid)));
    for group in groups {
        out.push('(');
        out.push_str(&id(group[0].uid).to_string());
        match &group[1..] {
            [] => {}
            [only] => out.push_str(&format!(" {}", id(only.uid))),
            children => {
                out.push(' ');
                for child in children {
                    out.push_str(&format!("({})", id(child.uid)));
                }
            }
        }
        out.push(')');
    }
}

/// A node: a message, or a dummy standing for a referenced id.
struct Node<'r> {
    row: Option<&'r OrderRow>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest<'r> {
    nodes: Vec<Node<'r>>,
    roots: Vec<usize>,
}

impl<'r> Forest<'r> {
    /// Links the messages by their references (RFC 5256 §4, step 1).
    fn build(rows: &[&'r OrderRow]) -> Forest<'r> {
        let mut forest = Forest {
            nodes: Vec::new(),
            roots: Vec::new(),
        };
        let mut by_id: HashMap<&'r str, usize> = HashMap::new();
        for row in rows {
            // The message's own node: a dummy waiting for it, or new.
            let own = match row.keys.message_id.as_deref() {
                Some(mid) => match by_id.get(mid) {
                    Some(&n) if forest.nodes[n].row.is_none() => {
                        forest.nodes[n].row = Some(row);
                        n
                    }
                    Some(_) => forest.add(Some(row)),
                    None => {
                        let n = forest.add(Some(row));
                        by_id.insert(mid, n);
                        n
                    }
                },
                None => forest.add(Some(row)),
            };
            let refs: Vec<usize> = row
                .keys
                .references
                .iter()
                .map(|r| *by_id.entry(r.as_str()).or_insert_with(|| forest.add(None)))
                .collect();
            for pair in refs.windows(2) {
                let (parent, child) = (pair[0], pair[1]);
                if forest.nodes[child].parent.is_none() && !forest.would_loop(parent, child) {
                    forest.link(parent, child);
                }
            }
            // The last reference is the parent: an earlier link goes, even
            // when the new one cannot be made (a message naming itself).
            match refs.last() {
                Some(&parent) if forest.nodes[own].parent == Some(parent) => {}
                Some(&parent) => {
                    forest.unlink(own);
                    if !forest.would_loop(parent, own) {
                        forest.link(parent, own);
                    }
                }
                None => forest.unlink(own),
            }
        }
        forest.roots = (0..forest.nodes.len()).filter(|&n| forest.nodes[n].parent.is_none()).collect();
        forest
    }

    fn add(&mut self, row: Option<&'r OrderRow>) -> usize {
        self.nodes.push(Node {
            row,
            parent: None,
            children: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// True when `child` is `parent` or one of its ancestors.
    fn would_loop(&self, parent: usize, child: usize) -> bool {
        let mut at = Some(parent);
        while let Some(n) = at {
            if n == child {
                return true;
            }
            at = self.nodes[n].parent;
        }
        false
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.nodes[child].parent.take() {
            self.nodes[parent].children.retain(|&c| c != child);
        }
    }

    /// Removes dummies (RFC 5256 §4, step 3): one without children goes,
    /// one below the top gives its children to its parent, one at the top
    /// stays only with several children.
    fn prune(&mut self) {
        let roots = std::mem::take(&mut self.roots);
        self.roots = self.pruned(roots, None);
    }

    fn pruned(&mut self, children: Vec<usize>, parent: Option<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        for child in children {
            let grandchildren = std::mem::take(&mut self.nodes[child].children);
            let kept = self.pruned(grandchildren, Some(child));
            self.nodes[child].children = kept;
            let dummy = self.nodes[child].row.is_none();
            let count = self.nodes[child].children.len();
            if !dummy || (parent.is_none() && count > 1) {
                self.nodes[child].parent = parent;
                out.push(child);
            } else {
                for grandchild in std::mem::take(&mut self.nodes[child].children) {
                    self.nodes[grandchild].parent = parent;
                    out.push(grandchild);
                }
            }
        }
        out
    }

    /// The date and UID a node sorts by (a dummy: its first child's,
    /// once children are sorted).
    fn sort_key(&self, n: usize) -> (i64, u32) {
        match self.nodes[n].row {
            Some(row) => (sent_or_arrival(row), row.uid),
            None => self.nodes[n].children.first().map_or((0, 0), |&c| self.sort_key(c)),
        }
    }

    fn sort_all(&mut self) {
        let roots = std::mem::take(&mut self.roots);
        for &root in &roots {
            self.sort_below(root);
        }
        self.roots = roots;
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_key(|&r| self.sort_key(r));
        self.roots = roots;
    }

    fn sort_below(&mut self, n: usize) {
        let children = std::mem::take(&mut self.nodes[n].children);
        for &c in &children {
            self.sort_below(c);
        }
        let mut children = children;
        children.sort_by_key(|&c| self.sort_key(c));
        self.nodes[n].children = children;
    }

    /// REFS: threads by their latest message (then the root's UID, a
    /// dummy's being 0).
    fn sort_roots_by_latest(&mut self) {
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_key(|&r| (self.latest(r), self.nodes[r].row.map_or(0, |row| row.uid)));
        self.roots = roots;
    }

    fn latest(&self, n: usize) -> i64 {
        let own = self.nodes[n].row.map_or(i64::MIN, sent_or_arrival);
        self.nodes[n].children.iter().map(|&c| self.latest(c)).fold(own, i64::max)
    }

    /// The base subject a root stands for (a dummy: its first child's),
    /// with whether that message is a reply or forward; `None` when empty.
    fn subject(&self, n: usize) -> Option<(&'r str, bool)> {
        let row = match self.nodes[n].row {
            Some(row) => row,
            None => self.nodes[self.nodes[n].children.first().copied()?].row?,
        };
        let subject = row.keys.base_subject.as_deref().filter(|s| !s.is_empty())?;
        Some((subject, row.keys.reply_or_forward))
    }

    /// RFC 5256 §4, step 5: roots with the same base subject become one
    /// thread.
    fn merge_subjects(&mut self) {
        let mut table: HashMap<&'r str, usize> = HashMap::new();
        for &root in &self.roots {
            let Some((subject, reply)) = self.subject(root) else { continue };
            match table.get(subject) {
                None => {
                    table.insert(subject, root);
                }
                Some(&old) => {
                    let old_reply = self.subject(old).is_some_and(|(_, r)| r);
                    let dummy = self.nodes[root].row.is_none();
                    let old_dummy = self.nodes[old].row.is_none();
                    if (dummy && !old_dummy) || (old_reply && !reply && !old_dummy) {
                        table.insert(subject, root);
                    }
                }
            }
        }
        let roots = self.roots.clone();
        let mut removed = vec![false; self.nodes.len()];
        for root in roots {
            if removed[root] {
                continue;
            }
            let Some((subject, reply)) = self.subject(root) else { continue };
            let Some(&other) = table.get(subject) else { continue };
            if other == root {
                continue;
            }
            let dummy = self.nodes[root].row.is_none();
            let other_dummy = self.nodes[other].row.is_none();
            let other_reply = self.subject(other).is_some_and(|(_, r)| r);
            if dummy && other_dummy {
                for child in std::mem::take(&mut self.nodes[root].children) {
                    self.link(other, child);
                }
                removed[root] = true;
            } else if other_dummy || (reply && !other_reply) {
                // Under the dummy, or a reply under the original.
                self.link(other, root);
                removed[root] = true;
            } else if other_reply && !reply {
                self.link(root, other);
                removed[other] = true;
                table.insert(subject, root);
            } else {
                let dummy = self.add(None);
                removed.push(false);
                self.link(dummy, other);
                self.link(dummy, root);
                removed[root] = true;
                removed[other] = true;
                table.insert(subject, dummy);
                self.roots.push(dummy);
            }
        }
        let roots = std::mem::take(&mut self.roots);
        self.roots = roots
            .into_iter()
            .filter(|&r| !removed[r] && self.nodes[r].parent.is_none())
            .collect();
    }

    fn write(&self, n: usize, id: &impl Fn(u32) -> u32, out: &mut String) {
        let node = &self.nodes[n];
        if let Some(row) = node.row {
            out.push_str(&id(row.uid).to_string());
        }
        match node.children.as_slice() {
            [] => {}
            [only] if node.row.is_some() => {
                out.push(' ');
                self.write(*only, id, out);
            }
            children => {
                if node.row.is_some() {
                    out.push(' ');
                }
                for &child in children {
                    out.push('(');
                    self.write(child, id, out);
                    out.push(')');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::OrderKeys;

    fn row(uid: u32, subject: &str, date: i64, id: &str, refs: &[&str]) -> OrderRow {
        OrderRow {
            uid,
            size: 0,
            arrival: 0,
            keys: OrderKeys {
                base_subject: Some(subject.trim_start_matches("RE: ").into()),
                reply_or_forward: subject.starts_with("RE: "),
                date,
                message_id: (!id.is_empty()).then(|| id.to_string()),
                references: refs.iter().map(|r| r.to_string()).collect(),
                ..OrderKeys::default()
            },
        }
    }

    #[test]
    fn references_link_prune_and_merge() {
        let rows = [
            row(1, "A", 10, "a@x", &[]),
            row(2, "RE: A", 20, "b@x", &["a@x"]),
            row(3, "RE: A", 30, "c@x", &["a@x", "b@x"]),
            row(4, "RE: A", 25, "d@x", &["a@x"]),
            // Parent not selected: a dummy, pruned at the top with one child.
            row(5, "B", 5, "e@x", &["gone@x"]),
            // Same base subject as 1, not a reply, no link: merged by subject.
            row(6, "A", 40, "f@x", &[]),
            row(7, "C", 1, "", &[]),
        ];
        let refs: Vec<&OrderRow> = rows.iter().collect();
        let same = |u: u32| u;
        assert_eq!(thread(&refs, Algorithm::References, same), "(7)(5)((1 (2 3)(4))(6))");
        assert_eq!(thread(&refs, Algorithm::Refs, same), "(7)(5)(1 (2 3)(4))(6)");
        assert_eq!(thread(&refs, Algorithm::OrderedSubject, same), "(7)(5)(1 (2)(4)(3)(6))");
    }
}
