//! Materialized paths: `/world/m49-150/m49-155/FR/` names every id from the root down to the
//! entity, so an entity's ancestors are read off its own row and its subtree is the range of
//! paths that start with its path.

/// The path of a child `id` of the entity at `parent_path`.
pub fn child_path(parent_path: &str, id: &str) -> String {
    format!("{parent_path}{id}/")
}

/// The path of the root entity `id`.
pub fn root_path(id: &str) -> String {
    format!("/{id}/")
}

/// Every id on the path, root first, the entity itself last.
pub fn ids(path: &str) -> impl DoubleEndedIterator<Item = &str> + Clone {
    path.trim_matches('/').split('/')
}

/// The ids of the entity's strict ancestors, root first.
pub fn ancestor_ids(path: &str) -> Vec<&str> {
    let mut ids: Vec<&str> = ids(path).collect();
    ids.pop();
    ids
}

/// The exclusive upper bound of the subtree's path range: every descendant's path `p`
/// satisfies `path < p < subtree_end(path)`, because descendants extend `path` and `'0'` is
/// the byte after `'/'`.
pub fn subtree_end(path: &str) -> String {
    debug_assert!(path.ends_with('/'));
    format!("{}0", &path[..path.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_root_first() {
        let path = child_path(&child_path(&root_path("world"), "m49-150"), "FR");
        assert_eq!(path, "/world/m49-150/FR/");
        assert_eq!(ids(&path).collect::<Vec<_>>(), ["world", "m49-150", "FR"]);
        assert_eq!(ancestor_ids(&path), ["world", "m49-150"]);
        assert!(ancestor_ids("/world/").is_empty());
    }

    #[test]
    fn the_subtree_range_holds_descendants_and_nothing_else() {
        let fr = "/world/m49-150/FR/";
        let end = subtree_end(fr);
        let inside = [
            "/world/m49-150/FR/FR-IDF/",
            "/world/m49-150/FR/FR-IDF/FR-75/",
        ];
        let outside = [
            fr,
            "/world/m49-150/FR-X/",
            "/world/m49-150/FRA/",
            "/world/m49-150/GB/",
        ];
        for p in inside {
            assert!(fr < p && p < end.as_str(), "{p}");
        }
        for p in outside {
            assert!(!(fr < p && p < end.as_str()), "{p}");
        }
    }
}
