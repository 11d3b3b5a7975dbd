//! Likely-next navigation: the pages an analyst opens after a page, which the origin names in
//! `Link: <path>; rel=preload` (RFC 8288; a CDN with Early Hints sends them on as a 103) and
//! the edge fetches ahead, so the click that follows is a hit.
//!
//! After an entity's page comes its children's first page; after a first page of children,
//! the page and breadcrumb of the first child listed (lists are read from the top); after a
//! page of descendants, the next one (a move changes a first page, and so the URL of the page
//! after it: one no cache has yet).

use crate::routes::public_route;

/// Pages named on one response, at most: each costs the edge a background fetch.
pub const MAX_LINKS: usize = 2;
/// Longest path a link may name.
pub const MAX_PATH_BYTES: usize = 256;

/// `id`'s own page.
pub fn entity_page(id: &str) -> String {
    format!("/api/v1/entities/{id}")
}

/// The first page of `id`'s children.
pub fn children_page(id: &str) -> String {
    format!("/api/v1/entities/{id}/children")
}

/// The breadcrumb (ancestors) of `id`.
pub fn breadcrumb(id: &str) -> String {
    format!("/api/v1/entities/{id}/ancestors")
}

/// The page of `id`'s descendants after the one that ended at `cursor`, `limit` long.
pub fn next_descendants_page(id: &str, limit: i64, cursor: &str) -> String {
    format!("/api/v1/entities/{id}/descendants?limit={limit}&cursor={cursor}")
}

/// The `Link` field value preloading `paths` (the first [`MAX_LINKS`]).
pub fn link_value(paths: &[String]) -> String {
    paths
        .iter()
        .take(MAX_LINKS)
        .map(|path| format!("<{path}>; rel=preload; as=fetch; crossorigin=anonymous"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pages a response's `Link` field values ask to preload, as the edge may fetch them: at
/// most [`MAX_LINKS`], each a path (no scheme or host) of a public route, with a query of that
/// route's parameters only (values of letters, digits, `-` and `_`), of at most
/// [`MAX_PATH_BYTES`]. Anything else in the field is ignored.
pub fn preloaded_paths<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for link in values.into_iter().flat_map(|value| value.split(',')) {
        let mut parts = link.split(';').map(str::trim);
        let Some(target) = parts
            .next()
            .and_then(|t| t.strip_prefix('<'))
            .and_then(|t| t.strip_suffix('>'))
        else {
            continue;
        };
        let preload = parts.any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("preload"))
            })
        });
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let plain_path = path.starts_with('/')
            && !path.starts_with("//")
            && target.len() <= MAX_PATH_BYTES
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
            && !path
                .split('/')
                .any(|segment| segment == "." || segment == "..");
        let route = public_route(path);
        let declared_query = query.is_empty()
            || route.is_some_and(|route| {
                query.split('&').all(|pair| {
                    pair.split_once('=').is_some_and(|(name, value)| {
                        route.params.iter().any(|param| param.name == name)
                            && !value.is_empty()
                            && value
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    })
                })
            });
        if preload
            && plain_path
            && route.is_some()
            && declared_query
            && !paths.iter().any(|p| p == target)
        {
            paths.push(target.to_owned());
            if paths.len() == MAX_LINKS {
                break;
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_origin_writes_the_edge_reads() {
        let paths = vec![
            next_descendants_page("m49-002", 50, "NB8vd29ybGQ"),
            breadcrumb("FR-75"),
        ];
        assert_eq!(preloaded_paths([link_value(&paths).as_str()]), paths);
        let three = vec![children_page("A"), children_page("B"), children_page("C")];
        assert_eq!(
            preloaded_paths([link_value(&three).as_str()]).len(),
            MAX_LINKS
        );
    }

    #[test]
    fn only_preloads_of_public_paths_are_taken() {
        for value in [
            "</api/v1/entities/FR/children>; rel=stylesheet",
            "<https://evil.example/api/v1/entities/FR>; rel=preload",
            "<//evil.example/api/v1/entities/FR>; rel=preload",
            "</admin/v1/purge>; rel=preload",
            "</api/v1/entities/FR/children?junk=1>; rel=preload",
            "</api/v1/entities/FR/children?limit=>; rel=preload",
            "</api/v1/entities/FR/children?cursor=a%2Fb>; rel=preload",
            "</api/v1/entities/FR/children?limit=5&>; rel=preload",
            "</api/v1/entities/FR?limit=5>; rel=preload",
            "</admin/v1/purge?status=failed>; rel=preload",
            "</api/v1/entities/../../admin>; rel=preload",
            "</api/v1/entities/%2e%2e/children>; rel=preload",
            "/api/v1/entities/FR; rel=preload",
            "<>; rel=preload",
            "",
            ";;;,,,<",
        ] {
            assert!(preloaded_paths([value]).is_empty(), "{value}");
        }
        assert_eq!(
            preloaded_paths([
                "</static/app.css>; rel=\"preload stylesheet\", </api/v1/entities/FR>; REL=Preload"
            ]),
            ["/static/app.css", "/api/v1/entities/FR"]
        );
        assert_eq!(
            preloaded_paths(["</api/v1/search?q=par&limit=5>; rel=preload"]),
            ["/api/v1/search?q=par&limit=5"]
        );
        let long = format!("</api/v1/entities/{}>; rel=preload", "x".repeat(300));
        assert!(preloaded_paths([long.as_str()]).is_empty());
    }
}
