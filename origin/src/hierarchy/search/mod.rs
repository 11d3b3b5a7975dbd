//! Search over the names: entities whose name contains a query (or starts with it, for one or
//! two characters), a page at a time in `(search_name, id)` order.
//!
//! A prefix is a range of the name index. A substring is read from a trigram index kept in
//! name order ([`super::ranks`]): FTS5's on SQLite, `search_postings` on PostgreSQL
//! ([`postings`]). Either way a page costs about its own rows, however many names share
//! the substring (sorting every match of a third of the names took 783 ms at 1,000,000
//! entities).

mod postings;

use super::{EntityRow, Hierarchy, COLUMNS};
use crate::db::{composed, retry, Backend};

/// Queries shorter than this match names that start with them, not names that contain them:
/// the trigram index cannot serve a shorter substring, and scanning 1,000,000 names for one
/// costs more than a second. A prefix is served by the ordered index on `search_name`.
pub const SUBSTRING_MIN_CHARS: usize = 3;

/// A case-insensitive pattern for `LIKE … ESCAPE '\'`: a substring, or a prefix for a query
/// shorter than [`SUBSTRING_MIN_CHARS`]. The user's text is data, so its wildcards are escaped.
pub fn search_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    if query.chars().count() >= SUBSTRING_MIN_CHARS {
        pattern.push('%');
    }
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// How a search finds its rows on SQLite, or a prefix on either database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// A range of the `(search_name, id)` index.
    Prefix,
    /// SQLite's FTS5 trigram index, keyed by rank (see [`super::ranks`]), read from the
    /// position on: the first matches come first.
    Fts,
}

/// The least string above every string that starts with `prefix`, in code point order (which
/// UTF-8 bytes and PostgreSQL's "C" collation share): the prefix with its last character
/// that can grow grown by one, and what follows it cut.
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            last => char::from_u32(u32::from(last) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Nothing can grow (every character is the last code point): above any name there is.
    char::MAX.to_string().repeat(MAX_NAME_CHARS + 1)
}

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// An FTS5 phrase of `query`'s lowercased characters: the names that contain it.
fn trigram_phrase(query: &str) -> String {
    format!("\"{}\"", query.to_lowercase().replace('"', "\"\""))
}

/// The distinct trigrams of `query`'s lowercased characters, as a JSON array: each name that
/// contains the query holds every one of them (as PostgreSQL's `search_trigrams` cuts them).
pub(super) fn trigrams_json(query: &str) -> String {
    let chars: Vec<char> = query.to_lowercase().chars().collect();
    let trigrams: std::collections::BTreeSet<String> = chars
        .windows(3)
        .map(|window| window.iter().collect())
        .collect();
    serde_json::Value::from(trigrams.into_iter().collect::<Vec<_>>()).to_string()
}

impl Hierarchy {
    /// Up to `limit` entities whose name contains `query` (case-insensitively; starts with it,
    /// for a query of one or two characters), ordered by `(search_name, id)` (the lowercased
    /// name), after the given position.
    pub async fn search(
        &self,
        query: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        if query.chars().count() < SUBSTRING_MIN_CHARS {
            self.search_with(Lookup::Prefix, query, after, limit).await
        } else if self.db.backend == Backend::Sqlite {
            self.search_with(Lookup::Fts, query, after, limit).await
        } else {
            postings::page(self, query, after, limit).await
        }
    }

    async fn search_with(
        &self,
        lookup: Lookup,
        query: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        let pattern = search_pattern(query);
        // Parameters: the pattern, the position (two) if any, the limit, then the lookup's.
        // The first page has no position: PostgreSQL would start a scan of the index at
        // `('', '')` rather than at the prefix (100 ms at 1,000,000 entities).
        let (position, limit_param, extra) = match after {
            Some(_) => ("(search_name, id) > ($2, $3)", "$4", 5),
            None => ("", "$2", 3),
        };
        let and_position = if after.is_some() {
            format!("AND {position}")
        } else {
            String::new()
        };
        // The rank of the position: the last ranked name at or before it.
        let after_rank = if after.is_some() {
            "COALESCE((SELECT name_rank FROM entities WHERE (search_name, id) <= ($2, $3) \
             AND name_rank IS NOT NULL ORDER BY search_name DESC, id DESC LIMIT 1), -1)"
        } else {
            "-1"
        };
        let matching = "search_name LIKE $1 ESCAPE '\\'";
        let order = "ORDER BY search_name, id";
        let sql = match lookup {
            // The prefix as a range too: SQLite does not make one of `LIKE … ESCAPE`.
            Lookup::Prefix => format!(
                "SELECT {COLUMNS} FROM entities WHERE {matching} \
                 AND search_name >= ${extra} AND search_name < ${} {and_position} \
                 {order} LIMIT {limit_param}",
                extra + 1
            ),
            // FTS5 yields its matches in rowid (rank) order and stops at the limit; each is
            // checked against the name, as the trigram phrase is only as exact as its folding.
            Lookup::Fts => format!(
                "SELECT {COLUMNS} FROM (\
                   SELECT entities_trigrams.rowid AS matched FROM entities_trigrams \
                   JOIN entities e ON e.name_rank = entities_trigrams.rowid \
                   WHERE entities_trigrams MATCH ${extra} \
                   AND entities_trigrams.rowid > {after_rank} AND e.{matching} \
                   ORDER BY entities_trigrams.rowid LIMIT {limit_param}\
                 ) page JOIN entities ON entities.name_rank = page.matched {order}"
            ),
        };
        let extra: Vec<String> = match lookup {
            Lookup::Prefix => {
                let prefix = query.to_lowercase();
                let end = prefix_end(&prefix);
                vec![prefix, end]
            }
            Lookup::Fts => vec![trigram_phrase(query)],
        };
        retry(|| async {
            // Unprepared, so PostgreSQL plans each search for its own pattern: a generic plan
            // cannot tell that the trigram index fits it.
            let query = sqlx::query_as(composed(&sql))
                .persistent(false)
                .bind(&pattern);
            let query = match after {
                Some((search_name, id)) => query.bind(search_name).bind(id),
                None => query,
            };
            let query = query.bind(limit);
            let query = extra.iter().fold(query, |query, value| query.bind(value));
            query
                .fetch_all(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_range_is_the_least_string_above_it() {
        assert_eq!(prefix_end("fr"), "fs");
        assert_eq!(prefix_end("a\u{10FFFF}"), "b");
        assert_eq!(prefix_end("\u{D7FF}"), "\u{E000}");
        for name in ["fr", "fr\u{10FFFF}x", "frzzz"] {
            assert!(name < prefix_end("fr").as_str(), "{name}");
        }
        assert!(prefix_end("\u{10FFFF}").chars().count() > MAX_NAME_CHARS);
    }

    #[test]
    fn a_query_s_trigrams_are_its_distinct_windows_of_three_characters() {
        assert_eq!(trigrams_json("Île-île"), r#"["-îl","e-î","le-","île"]"#);
        assert_eq!(trigrams_json("ab"), "[]");
    }

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(search_pattern("Île_de%"), "%île\\_de\\%%");
        assert_eq!(search_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(search_pattern("_"), "\\_%");
        assert_eq!(search_pattern("Fr"), "fr%");
        assert_eq!(search_pattern("Fra"), "%fra%");
    }
}
