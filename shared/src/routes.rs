//! The public, cacheable routes of the API and the query parameters each one reads.
//!
//! The edge keys and forwards only these parameters, in their canonical form (anything else a
//! client appends is dropped, so `?junk=N` cannot mint new cache entries), and the origin's
//! handlers read exactly these, so the two cannot disagree about what makes a page different.

use crate::params::{Param, CURSOR, LIST_LIMIT, MAX_DEPTH, QUERY, SEARCH_LIMIT};

/// A public route: its path pattern (`{name}` matches one non-empty segment) and the query
/// parameters it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicRoute {
    pub pattern: &'static str,
    pub params: &'static [Param],
}

/// Parameters of a page of children.
pub const CHILDREN_PARAMS: &[Param] = &[CURSOR, LIST_LIMIT];
/// Parameters of a page of descendants.
pub const DESCENDANTS_PARAMS: &[Param] = &[CURSOR, LIST_LIMIT, MAX_DEPTH];
/// Parameters of a page of search results.
pub const SEARCH_PARAMS: &[Param] = &[CURSOR, SEARCH_LIMIT, QUERY];

pub const PUBLIC_ROUTES: &[PublicRoute] = &[
    PublicRoute {
        pattern: "/",
        params: &[],
    },
    PublicRoute {
        pattern: "/static/{file}",
        params: &[],
    },
    PublicRoute {
        pattern: "/api/v1/entities/{id}",
        params: &[],
    },
    PublicRoute {
        pattern: "/api/v1/entities/{id}/ancestors",
        params: &[],
    },
    PublicRoute {
        pattern: "/api/v1/entities/{id}/children",
        params: CHILDREN_PARAMS,
    },
    PublicRoute {
        pattern: "/api/v1/entities/{id}/descendants",
        params: DESCENDANTS_PARAMS,
    },
    PublicRoute {
        pattern: "/api/v1/search",
        params: SEARCH_PARAMS,
    },
    PublicRoute {
        pattern: "/api/v1/openapi.json",
        params: &[],
    },
];

/// The origin's stream of entity changes, a WebSocket: the one path the edge lets upgrade.
pub const EVENTS_PATH: &str = "/ws";

/// Operational routes of the origin, for its operators and orchestrator only: never public.
pub const OPERATIONAL_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The public route `path` belongs to, if any.
pub fn public_route(path: &str) -> Option<&'static PublicRoute> {
    PUBLIC_ROUTES
        .iter()
        .find(|route| matches_pattern(route.pattern, path))
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route() {
        let cases = [
            ("/", Some("/")),
            ("/static/app.3f9a2c1b.js", Some("/static/{file}")),
            ("/static/", None),
            ("/api/v1/entities/FR", Some("/api/v1/entities/{id}")),
            ("/api/v1/entities/FR/", None),
            (
                "/api/v1/entities/FR/children",
                Some("/api/v1/entities/{id}/children"),
            ),
            ("/api/v1/entities//children", None),
            ("/api/v1/search", Some("/api/v1/search")),
            ("/api/v1/search/x", None),
            ("/admin/v1/entities", None),
            ("/metrics", None),
        ];
        for (path, expected) in cases {
            assert_eq!(public_route(path).map(|r| r.pattern), expected, "{path}");
        }
        let names: Vec<&str> = public_route("/api/v1/search")
            .unwrap()
            .params
            .iter()
            .map(|param| param.name)
            .collect();
        assert_eq!(names, ["cursor", "limit", "q"]);
    }
}
