//! The cache-tag scheme: which tags a response carries, and which tags a data change purges.
//!
//! A response is tagged with what its content depends on; a change purges the tags of every
//! response whose content it alters. Both halves live here so they are reviewed together.
//!
//! | tag        | carried by                                                              |
//! |------------|-------------------------------------------------------------------------|
//! | `e:{id}`   | the entity and its ancestors (breadcrumb) responses; any 404 about `id`  |
//! | `c:{id}`   | pages of `id`'s children                                                |
//! | `d:{id}`   | pages of `id`'s descendants                                             |
//! | `n:{id}`   | pages of `id`'s descendants too long to carry an `e:` tag per item       |
//! | `s:{id}`   | breadcrumbs and pages of descendants of every node strictly below `id`   |
//! |            | (they show the path through `id`: its name, and cursors built on paths) |
//! | `t:{id}`   | entity and children pages of every node strictly below `id` (they show  |
//! |            | depths, which change when `id` moves to another depth)                  |
//! | `search`   | search results                                                          |
//! | `q:{hex}`  | search results for queries starting with those (up to 3) characters     |
//!
//! Pages of descendants carry `e:` of each node they list (or `n:` of their root when they
//! list more than [`MAX_ITEM_TAGS`]). So renaming `X` purges `e:X` and `s:X` (X itself and
//! every breadcrumb that shows the path through it), its parent's children lists, and only the
//! descendant pages that list `X` (`n:` of its ancestors for the long ones); moving `X` purges
//! `e:X`, `s:X`, `X`'s own descendant lists (their cursors hold paths), the children lists of
//! its old and new parent and every descendant list of the ancestors on both sides, whose
//! structure changed, and, when the move changes `X`'s depth, `t:X` and `X`'s children lists
//! too (every depth below changed). After a rename of `X` or a move at the same depth, the
//! entity and children pages below it stay cached: a sub-region moving to another region
//! purges its breadcrumbs and descendant lists, not its whole subtree.
//! Search results are purged by name: a result page can only show `X` if its query is a
//! substring of `X`'s name, so a creation, a rename or a same-depth move purges the `q:` tag
//! of every substring of up to three characters of the names involved, and pages for other
//! queries stay cached. A move to another depth or a deletion does the same for every name in
//! the subtree (results show each node's depth), or purges every search result (`search`) when
//! the subtree is too large to list.
//!
//! Responses cached before `t:` existed carry `s:` where they would now carry `t:`; every
//! change that purges `t:X` purges `s:X` too, so they are never left behind.

use std::collections::BTreeSet;

/// Tag on every search result page.
pub const SEARCH: &str = "search";

/// Characters of a query that its search tag keeps.
const SEARCH_KEY_CHARS: usize = 3;

/// Tag of the search result pages for `query`: its first characters, lower-cased as the
/// search compares them, hex-encoded so any name fits in a header.
pub fn search_query(query: &str) -> String {
    let key: String = query
        .to_lowercase()
        .chars()
        .take(SEARCH_KEY_CHARS)
        .collect();
    search_key(&key)
}

fn search_key(key: &str) -> String {
    let mut tag = String::with_capacity(2 + key.len() * 2);
    tag.push_str("q:");
    for byte in key.bytes() {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag
}

/// The search tags of every name of a subtree whose nodes changed depth or parent (search
/// results show both), or every search when the names are not known.
fn search_tags_of_all(names: Option<&[String]>, tags: &mut BTreeSet<String>) {
    match names {
        Some(names) => names.iter().for_each(|name| search_tags_of(name, tags)),
        None => {
            tags.insert(SEARCH.to_owned());
        }
    }
}

/// The search tags of every query that can match `name`: each substring of up to
/// [`SEARCH_KEY_CHARS`] characters of its lower-cased form.
fn search_tags_of(name: &str, tags: &mut BTreeSet<String>) {
    let chars: Vec<char> = name.to_lowercase().chars().collect();
    for start in 0..chars.len() {
        for end in start + 1..=(start + SEARCH_KEY_CHARS).min(chars.len()) {
            tags.insert(search_key(&chars[start..end].iter().collect::<String>()));
        }
    }
}

/// Tag of `id`'s own representation (entity and ancestors responses, 404s about `id`).
pub fn entity(id: &str) -> String {
    format!("e:{id}")
}

/// Tag of the pages listing `id`'s children.
pub fn children(id: &str) -> String {
    format!("c:{id}")
}

/// Tag of the pages listing `id`'s descendants.
pub fn descendants(id: &str) -> String {
    format!("d:{id}")
}

/// Tag of the pages of `id`'s descendants that list too many nodes to tag each.
pub fn descendant_names(id: &str) -> String {
    format!("n:{id}")
}

/// Most nodes a page of descendants tags one by one (a `Cache-Tag` header stays well under
/// Cloudflare's 16 KB).
pub const MAX_ITEM_TAGS: usize = 100;

/// The tags of a page of `root`'s descendants listing `items`, given `root`'s ancestors.
pub fn for_descendants_page<'a>(
    root: &str,
    ancestors: impl IntoIterator<Item = &'a str>,
    items: &[&str],
) -> Vec<String> {
    let mut tags = for_response(Resource::Descendants, root, ancestors);
    if items.len() <= MAX_ITEM_TAGS {
        tags.extend(items.iter().map(|id| entity(id)));
    } else {
        tags.push(descendant_names(root));
    }
    tags
}

/// Tag of the breadcrumbs and descendant lists of every node strictly below `id`: they show
/// the path through `id`.
pub fn paths_below(id: &str) -> String {
    format!("s:{id}")
}

/// Tag of the entity and children pages of every node strictly below `id`: they show depths.
pub fn depths_below(id: &str) -> String {
    format!("t:{id}")
}

/// What a hierarchy response is about, which decides its primary tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Entity,
    Ancestors,
    Children,
    Descendants,
}

/// The tags of a response about node `id`, given its strict ancestors (any order).
pub fn for_response<'a>(
    resource: Resource,
    id: &str,
    ancestors: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let primary = match resource {
        Resource::Entity | Resource::Ancestors => entity(id),
        Resource::Children => children(id),
        Resource::Descendants => descendants(id),
    };
    let below = match resource {
        Resource::Ancestors | Resource::Descendants => paths_below,
        Resource::Entity | Resource::Children => depths_below,
    };
    std::iter::once(primary)
        .chain(ancestors.into_iter().map(below))
        .collect()
}

/// A committed data change, described by the ids that locate it. A `chain` is the list of ids
/// from the root down to the entity's parent, inclusive.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Created {
        id: &'a str,
        chain: &'a [String],
        name: &'a str,
    },
    /// Name, kind or attributes changed in place; `names` are the old and the new name.
    Updated {
        id: &'a str,
        chain: &'a [String],
        names: [&'a str; 2],
    },
    /// `own_names`: the moved node's old and new name (a move may rename it too); `names`:
    /// every name in the moved subtree and the old one, or `None` when the subtree is too
    /// large to list them (only read when the move changes the node's depth).
    Moved {
        id: &'a str,
        old_chain: &'a [String],
        new_chain: &'a [String],
        own_names: [&'a str; 2],
        names: Option<&'a [String]>,
    },
    /// `id` and, with a cascade, its whole subtree were deleted; `names` as for a move.
    Deleted {
        id: &'a str,
        chain: &'a [String],
        names: Option<&'a [String]>,
    },
}

/// Whether a move from under `old_chain` to under `new_chain` changes the depth of the moved
/// subtree, and so what its pages and search results show.
pub fn changes_depth(old_chain: &[String], new_chain: &[String]) -> bool {
    old_chain.len() != new_chain.len()
}

/// Every tag whose responses a change makes stale.
pub fn invalidated_by(change: Change<'_>) -> BTreeSet<String> {
    // The lists that show a node whose parent chain is `chain`.
    fn lists_of(chain: &[String], tags: &mut BTreeSet<String>) {
        if let Some(parent) = chain.last() {
            tags.insert(children(parent));
        }
        tags.extend(chain.iter().map(|ancestor| descendants(ancestor)));
    }
    let mut tags = BTreeSet::new();
    match change {
        Change::Created { id, chain, name } => {
            tags.insert(entity(id));
            lists_of(chain, &mut tags);
            search_tags_of(name, &mut tags);
        }
        Change::Updated { id, chain, names } => {
            // Descendant pages that list `id` carry `e:id`; the structure did not change.
            tags.extend([entity(id), paths_below(id)]);
            if let Some(parent) = chain.last() {
                tags.insert(children(parent));
            }
            tags.extend(chain.iter().map(|ancestor| descendant_names(ancestor)));
            for name in names {
                search_tags_of(name, &mut tags);
            }
        }
        Change::Moved {
            id,
            old_chain,
            new_chain,
            own_names,
            names,
        } => {
            tags.extend([entity(id), paths_below(id), descendants(id)]);
            lists_of(old_chain, &mut tags);
            lists_of(new_chain, &mut tags);
            if changes_depth(old_chain, new_chain) {
                tags.extend([depths_below(id), children(id)]);
                search_tags_of_all(names, &mut tags);
            } else {
                // Nothing below changed depth or parent: only the node's own search results.
                own_names
                    .iter()
                    .for_each(|name| search_tags_of(name, &mut tags));
            }
        }
        Change::Deleted { id, chain, names } => {
            tags.extend([
                entity(id),
                paths_below(id),
                depths_below(id),
                children(id),
                descendants(id),
            ]);
            lists_of(chain, &mut tags);
            search_tags_of_all(names, &mut tags);
        }
    }
    tags
}

/// The `Cache-Tag` header value (Cloudflare: comma-separated).
pub fn cache_tag_header(tags: &[String]) -> String {
    tags.join(",")
}

/// The `Surrogate-Key` header value (Fastly: space-separated).
pub fn surrogate_key_header(tags: &[String]) -> String {
    tags.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// Whether purging `purged` removes a response tagged `response_tags`.
    fn hits(purged: &BTreeSet<String>, response_tags: &[String]) -> bool {
        response_tags.iter().any(|t| purged.contains(t))
    }

    #[test]
    fn response_tags_name_the_resource_and_every_ancestor_subtree() {
        let tags = for_response(Resource::Children, "FR", ["world", "m49-150", "m49-155"]);
        assert_eq!(tags, ["c:FR", "t:world", "t:m49-150", "t:m49-155"]);
        let tags = for_response(Resource::Ancestors, "FR", ["world", "m49-150"]);
        assert_eq!(tags, ["e:FR", "s:world", "s:m49-150"]);
    }

    #[test]
    fn renaming_a_country_purges_breadcrumbs_below_it_but_not_its_siblings() {
        let purged = invalidated_by(Change::Updated {
            id: "FR",
            chain: &chain(&["world", "m49-150", "m49-155"]),
            names: ["France", "République française"],
        });
        let paris_breadcrumb = for_response(
            Resource::Ancestors,
            "FR-75",
            ["world", "m49-150", "FR", "FR-IDF"],
        );
        let western_europe_children = for_response(Resource::Children, "m49-155", ["world"]);
        let europe_listing_france =
            for_descendants_page("m49-150", ["world"], &["m49-155", "DE", "FR"]);
        let europe_without_france = for_descendants_page("m49-150", ["world"], &["DE", "IT"]);
        let long_europe_page = for_descendants_page("m49-150", ["world"], &["DE"; 101]);
        let germany = for_response(Resource::Entity, "DE", ["world", "m49-150", "m49-155"]);
        assert!(hits(&purged, &paris_breadcrumb));
        assert!(hits(&purged, &western_europe_children));
        assert!(hits(&purged, &europe_listing_france));
        assert!(hits(&purged, &long_europe_page));
        assert!(!hits(&purged, &europe_without_france));
        assert!(!hits(&purged, &germany));
    }

    #[test]
    fn a_move_purges_both_parents_lists_and_both_ancestor_lines() {
        let purged = invalidated_by(Change::Moved {
            id: "X",
            old_chain: &chain(&["world", "a", "b"]),
            new_chain: &chain(&["world", "c"]),
            own_names: ["X", "X"],
            names: None,
        });
        for tag in [
            "c:b", "c:c", "d:world", "d:a", "d:b", "d:c", "e:X", "s:X", "search",
        ] {
            assert!(purged.contains(tag), "{tag} missing from {purged:?}");
        }
        assert!(!purged.contains("c:a"));
    }

    #[test]
    fn a_move_at_the_same_depth_purges_the_breadcrumbs_below_and_not_the_depths() {
        let below = |resource| for_response(resource, "FR-75", ["world", "eu", "we", "FR"]);
        let same_depth = invalidated_by(Change::Moved {
            id: "FR",
            old_chain: &chain(&["world", "eu", "we"]),
            new_chain: &chain(&["world", "eu", "ne"]),
            own_names: ["France", "France"],
            names: None,
        });
        for resource in [Resource::Ancestors, Resource::Descendants] {
            assert!(hits(&same_depth, &below(resource)), "{resource:?}");
        }
        for resource in [Resource::Entity, Resource::Children] {
            assert!(!hits(&same_depth, &below(resource)), "{resource:?}");
        }
        assert!(!same_depth.contains(SEARCH) && !same_depth.contains("c:FR"));
        assert!(
            same_depth.contains("d:FR"),
            "its descendant lists' cursors hold paths"
        );
        assert!(same_depth.contains(&search_query("fra")));
        let deeper = invalidated_by(Change::Moved {
            id: "FR",
            old_chain: &chain(&["world", "eu", "we"]),
            new_chain: &chain(&["world", "eu"]),
            own_names: ["France", "France"],
            names: None,
        });
        for resource in [
            Resource::Ancestors,
            Resource::Entity,
            Resource::Children,
            Resource::Descendants,
        ] {
            assert!(hits(&deeper, &below(resource)), "{resource:?}");
        }
        assert!(deeper.contains("c:FR") && deeper.contains("d:FR") && deeper.contains(SEARCH));
        // What was cached tagged `s:` for a depth is purged by every change that purges `t:`.
        for change in [&same_depth, &deeper] {
            assert!(change.contains("s:FR"));
        }
    }

    #[test]
    fn a_rename_leaves_the_depths_below_cached() {
        let renamed = invalidated_by(Change::Updated {
            id: "FR",
            chain: &chain(&["world", "eu", "we"]),
            names: ["France", "Francia"],
        });
        let below = |resource| for_response(resource, "FR-75", ["world", "eu", "we", "FR"]);
        assert!(hits(&renamed, &below(Resource::Ancestors)));
        assert!(!hits(&renamed, &below(Resource::Entity)));
    }

    #[test]
    fn a_creation_purges_a_cached_404_for_the_new_id() {
        let purged = invalidated_by(Change::Created {
            id: "new",
            chain: &chain(&["world"]),
            name: "New",
        });
        assert!(hits(&purged, &[entity("new")]));
        assert!(purged.contains("c:world") && purged.contains("d:world"));
    }

    #[test]
    fn a_deletion_purges_the_lists_of_the_deleted_node_itself() {
        let purged = invalidated_by(Change::Deleted {
            id: "X",
            chain: &chain(&["world"]),
            names: None,
        });
        for tag in ["e:X", "s:X", "c:X", "d:X", "c:world", "d:world"] {
            assert!(purged.contains(tag), "{tag}");
        }
    }

    #[test]
    fn header_values_use_each_cdns_separator() {
        let tags = chain(&["e:FR", "s:world"]);
        assert_eq!(cache_tag_header(&tags), "e:FR,s:world");
        assert_eq!(surrogate_key_header(&tags), "e:FR s:world");
    }

    /// A search page's tag and the tags a change of `names` purges.
    fn search_hit(query: &str, names: [&str; 2]) -> bool {
        let purged = invalidated_by(Change::Updated {
            id: "X",
            chain: &chain(&["world"]),
            names,
        });
        hits(&purged, &[search_query(query)])
    }

    #[test]
    fn a_rename_purges_exactly_the_searches_that_can_show_either_name() {
        let names = ["Île-de-France", "Paris Region"];
        // Substrings of either name, in any case, short or long.
        for query in ["î", "ÎLE", "de-fr", "france", "e", "pa", "REGION", "s r"] {
            assert!(search_hit(query, names), "{query} should be purged");
        }
        // Queries that are substrings of neither.
        for query in ["germany", "zz", "parisx"] {
            let prefix_shared = query == "parisx"; // shares "par" with "paris"
            assert_eq!(search_hit(query, names), prefix_shared, "{query}");
        }
        assert!(!search_hit("x", names));
    }

    #[test]
    fn search_tags_are_header_safe_whatever_the_query() {
        for query in ["a b", "é,ü", "\"%;", "long query text"] {
            let tag = search_query(query);
            assert!(tag.starts_with("q:"));
            assert!(tag[2..].chars().all(|c| c.is_ascii_hexdigit()), "{tag}");
        }
        assert_eq!(search_query("PARIS"), search_query("par"));
    }

    #[test]
    fn moves_and_deletions_purge_the_searches_of_the_subtree_or_every_search() {
        let names = chain(&["Bavaria", "Munich"]);
        let moved = invalidated_by(Change::Moved {
            id: "X",
            old_chain: &chain(&["world"]),
            new_chain: &chain(&["world", "a"]),
            own_names: ["Munich", "Munich"],
            names: Some(&names),
        });
        assert!(hits(&moved, &[search_query("munic")]));
        assert!(!hits(&moved, &[search_query("paris"), SEARCH.to_owned()]));
        let deleted = invalidated_by(Change::Deleted {
            id: "X",
            chain: &chain(&["world"]),
            names: None,
        });
        assert!(deleted.contains(SEARCH));
    }
}
