//! Turning many pending purges into few provider requests: duplicates merged, items grouped by
//! kind (a provider request purges one kind), and split to each provider's per-request limit.
//! Each batch remembers which purges each item serves, so their deliveries can be settled, and
//! a batch a provider refuses can be halved until the item it refuses is alone.

use std::collections::{BTreeMap, BTreeSet};

use forecastin_shared::dto::PurgeRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    Url,
    Tag,
    Prefix,
    Everything,
}

/// One provider request's worth of items of one kind, all soft or all hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: ItemKind,
    /// Whether the items may be purged softly: only when every purge asking for them is soft.
    pub soft: bool,
    /// For a soft batch, the pages to refresh rather than drop (see `PurgeRequest::refresh`).
    pub refresh: Vec<String>,
    /// Empty for [`ItemKind::Everything`].
    pub items: Vec<String>,
    /// The purges each item serves, in the order of `items` (one set for everything).
    carriers: Vec<BTreeSet<String>>,
}

impl Batch {
    /// The purges whose deliveries this batch serves.
    pub fn purges(&self) -> BTreeSet<String> {
        self.carriers.iter().flatten().cloned().collect()
    }

    /// The batch in two, if it has more than one item.
    pub fn halves(&self) -> Option<(Batch, Batch)> {
        if self.items.len() < 2 {
            return None;
        }
        let middle = self.items.len() / 2;
        let half = |range: std::ops::Range<usize>| Batch {
            kind: self.kind,
            soft: self.soft,
            refresh: self.refresh.clone(),
            items: self.items[range.clone()].to_vec(),
            carriers: self.carriers[range].to_vec(),
        };
        Some((half(0..middle), half(middle..self.items.len())))
    }
}

/// Merges `(purge id, request)` pairs and splits them into batches of at most `limit` items.
/// An item asked for both softly and hard is purged hard.
pub fn batches(purges: &[(String, PurgeRequest)], limit: usize) -> Vec<Batch> {
    let mut by_item: BTreeMap<(ItemKind, String), (bool, BTreeSet<String>)> = BTreeMap::new();
    for (id, request) in purges {
        let kinds = [
            (ItemKind::Url, &request.urls),
            (ItemKind::Tag, &request.tags),
            (ItemKind::Prefix, &request.prefixes),
        ];
        let everything = request.everything.then(String::new);
        let items = kinds
            .into_iter()
            .flat_map(|(kind, items)| items.iter().map(move |item| (kind, item.clone())))
            .chain(everything.map(|item| (ItemKind::Everything, item)));
        for item in items {
            let (soft, ids) = by_item.entry(item).or_insert((true, BTreeSet::new()));
            *soft &= request.soft;
            ids.insert(id.clone());
        }
    }
    let mut grouped: Vec<_> = by_item.into_iter().collect();
    grouped.sort_by_key(|((kind, _), (soft, _))| (*kind, *soft));
    let mut batches: Vec<Batch> = Vec::new();
    for ((kind, item), (soft, ids)) in grouped {
        match batches.last_mut() {
            Some(batch)
                if batch.kind == kind && batch.soft == soft && batch.items.len() < limit =>
            {
                batch.items.push(item);
                batch.carriers.push(ids);
            }
            _ => batches.push(Batch {
                kind,
                soft,
                refresh: Vec::new(),
                items: if kind == ItemKind::Everything {
                    Vec::new()
                } else {
                    vec![item]
                },
                carriers: vec![ids],
            }),
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tags: &[&str], urls: &[&str]) -> PurgeRequest {
        PurgeRequest {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            urls: urls.iter().map(|s| s.to_string()).collect(),
            ..PurgeRequest::default()
        }
    }

    #[test]
    fn duplicates_are_sent_once_and_credited_to_every_purge() {
        let purges = vec![
            ("p1".to_owned(), request(&["e:FR", "search"], &[])),
            ("p2".to_owned(), request(&["e:DE", "search"], &["/a"])),
        ];
        let batches = batches(&purges, 100);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].kind, ItemKind::Url);
        assert_eq!(batches[1].items, ["e:DE", "e:FR", "search"]);
        assert_eq!(
            batches[1].purges(),
            BTreeSet::from(["p1".to_owned(), "p2".to_owned()])
        );
        assert_eq!(batches[0].purges(), BTreeSet::from(["p2".to_owned()]));
    }

    #[test]
    fn batches_respect_the_item_limit() {
        let tags: Vec<String> = (0..250).map(|i| format!("e:{i:03}")).collect();
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let batches = batches(&[("p".to_owned(), request(&tag_refs, &[]))], 100);
        let sizes: Vec<usize> = batches.iter().map(|b| b.items.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn everything_is_one_batch_for_all_purges_asking_for_it() {
        let everything = PurgeRequest {
            everything: true,
            ..PurgeRequest::default()
        };
        let batches = batches(
            &[("a".into(), everything.clone()), ("b".into(), everything)],
            100,
        );
        assert_eq!(batches.len(), 1);
        assert!(batches[0].items.is_empty());
        assert_eq!(batches[0].purges().len(), 2);
        assert!(batches[0].halves().is_none());
    }

    #[test]
    fn soft_items_travel_apart_and_a_hard_request_wins() {
        let soft = |tags: &[&str]| PurgeRequest {
            soft: true,
            ..request(tags, &[])
        };
        let purges = vec![
            ("p1".to_owned(), soft(&["a", "b"])),
            ("p2".to_owned(), request(&["b", "c"], &[])),
        ];
        let batches = batches(&purges, 100);
        let shape: Vec<(bool, Vec<String>)> = batches
            .iter()
            .map(|batch| (batch.soft, batch.items.clone()))
            .collect();
        assert_eq!(
            shape,
            [
                (false, vec!["b".to_owned(), "c".to_owned()]),
                (true, vec!["a".to_owned()])
            ]
        );
        let (hard, _) = batches[0].halves().unwrap();
        assert!(!hard.soft);
    }

    #[test]
    fn halves_keep_each_item_with_the_purges_it_serves() {
        let purges = vec![
            ("p1".to_owned(), request(&["a", "b"], &[])),
            ("p2".to_owned(), request(&["c"], &[])),
            ("p3".to_owned(), request(&["b", "d"], &[])),
        ];
        let batch = batches(&purges, 100).remove(0);
        let (left, right) = batch.halves().unwrap();
        assert_eq!(left.items, ["a", "b"]);
        assert_eq!(left.purges(), BTreeSet::from(["p1".into(), "p3".into()]));
        assert_eq!(right.items, ["c", "d"]);
        assert_eq!(right.purges(), BTreeSet::from(["p2".into(), "p3".into()]));
        let (alone, _) = right.halves().unwrap();
        assert_eq!(alone.purges(), BTreeSet::from(["p2".to_owned()]));
        assert!(alone.halves().is_none());
    }
}
