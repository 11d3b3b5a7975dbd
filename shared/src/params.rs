//! The query parameters of the public routes: each with one canonical form and a bound.
//!
//! The edge keys a page by the canonical values and the origin reads the same ones, so
//! `limit=050` and `limit=50` are one cached page, and a value out of bounds is the same 400
//! at both (the edge answers it without fetching). Bounds keep every key short: a cursor
//! cannot carry kilobytes of padding into the caches' keys.

use std::borrow::Cow;

/// A declared query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub rule: Rule,
    pub required: bool,
}

/// What a parameter's value may be, and its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// An integer from `min` to `max` written in decimal digits (at most
    /// [`MAX_INTEGER_CHARS`]); canonical: without leading zeros, and absent when it is the
    /// default (`limit=50` is the page without `limit`).
    Integer { min: i64, max: i64, default: i64 },
    /// Text of 1 to `max_chars` characters with no control character, not blank; canonical:
    /// without leading and trailing white space.
    Text { max_chars: usize },
    /// A cursor the API issued: 1 to `max_chars` characters of base64url without padding;
    /// canonical: as given (its decoding is the origin's to check).
    Cursor { max_chars: usize },
}

/// Longest integer value, in characters: enough for any number of leading zeros a client
/// may reasonably send, and no more.
pub const MAX_INTEGER_CHARS: usize = 32;

/// Longest cursor. The longest one issued names a descendant 32 levels down: its depth and
/// path of 33 ids of at most 64 bytes (2,148 bytes, 2,864 base64 characters); a page of
/// children or search results names a name of at most 200 characters and an id.
pub const MAX_CURSOR_CHARS: usize = 3_072;

/// Size of a page of children or descendants.
pub const LIST_LIMIT: Param = Param {
    name: "limit",
    rule: Rule::Integer {
        min: 1,
        max: 500,
        default: 50,
    },
    required: false,
};

/// Size of a page of search results.
pub const SEARCH_LIMIT: Param = Param {
    name: "limit",
    rule: Rule::Integer {
        min: 1,
        max: 100,
        default: 20,
    },
    required: false,
};

/// Levels of descendants below the entity.
pub const MAX_DEPTH: Param = Param {
    name: "max_depth",
    rule: Rule::Integer {
        min: 1,
        max: 32,
        default: 32,
    },
    required: false,
};

/// The `next_cursor` of the previous page.
pub const CURSOR: Param = Param {
    name: "cursor",
    rule: Rule::Cursor {
        max_chars: MAX_CURSOR_CHARS,
    },
    required: false,
};

/// The search string.
pub const QUERY: Param = Param {
    name: "q",
    rule: Rule::Text { max_chars: 100 },
    required: true,
};

/// Why a query was refused: the parameter at fault and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Param {
    /// `value` in canonical form, or why it is not a value of this parameter.
    pub fn canonical(&self, value: &str) -> Result<String, Invalid> {
        let canonical = match self.rule {
            Rule::Integer { min, max, .. } => integer(value)
                .filter(|n| (min..=max).contains(n))
                .map(|n| n.to_string()),
            Rule::Text { max_chars } => {
                let trimmed = value.trim();
                (!trimmed.is_empty()
                    && value.chars().count() <= max_chars
                    && !value.chars().any(char::is_control))
                .then(|| trimmed.to_owned())
            }
            Rule::Cursor { max_chars } => (!value.is_empty()
                && value.len() <= max_chars
                && value.len() % 4 != 1
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
            .then(|| value.to_owned()),
        };
        canonical.ok_or_else(|| self.invalid())
    }

    /// The refusal of a value that is not one of this parameter's.
    pub fn invalid(&self) -> Invalid {
        Invalid {
            field: self.name,
            message: format!("`{}` must be {}", self.name, self.rule.describe()),
        }
    }

    /// The default of an integer parameter (`None` for the others).
    pub fn default_integer(&self) -> Option<i64> {
        match self.rule {
            Rule::Integer { default, .. } => Some(default),
            _ => None,
        }
    }
}

impl Rule {
    /// What a value must be, in words (the 400's message and the OpenAPI description).
    pub fn describe(&self) -> String {
        match self {
            Rule::Integer { min, max, default } => {
                format!("an integer from {min} to {max} (default {default})")
            }
            Rule::Text { max_chars } => format!(
                "1 to {max_chars} characters, not all white space, with no control character"
            ),
            Rule::Cursor { .. } => "the `next_cursor` of the previous page".to_owned(),
        }
    }
}

/// Pattern of a text value: some character that is not white space, and no control
/// character.
#[cfg(feature = "openapi")]
const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

#[cfg(feature = "openapi")]
impl Param {
    /// This parameter in the OpenAPI description, with its bounds.
    pub fn openapi(&self) -> utoipa::openapi::path::Parameter {
        use utoipa::openapi::{
            path::{ParameterBuilder, ParameterIn},
            schema::{ObjectBuilder, Type},
            Required,
        };
        let schema = match self.rule {
            Rule::Integer { min, max, default } => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(min))
                .maximum(Some(max))
                .default(Some(default.into())),
            Rule::Text { max_chars } => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max_chars))
                .pattern(Some(TEXT_PATTERN)),
            Rule::Cursor { max_chars } => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(2))
                .max_length(Some(max_chars))
                .pattern(Some("^[A-Za-z0-9_-]+$")),
        };
        ParameterBuilder::new()
            .name(self.name)
            .parameter_in(ParameterIn::Query)
            .required(if self.required {
                Required::True
            } else {
                Required::False
            })
            .description(Some(self.rule.describe()))
            .schema(Some(schema.build()))
            .build()
    }
}

/// Decimal digits only (a sign or a space is not a canonical spelling to accept).
fn integer(value: &str) -> Option<i64> {
    (!value.is_empty()
        && value.len() <= MAX_INTEGER_CHARS
        && value.bytes().all(|b| b.is_ascii_digit()))
    .then(|| value.trim_start_matches('0'))
    .and_then(|digits| match digits {
        "" => Some(0),
        digits => digits.parse().ok(),
    })
}

/// The parameters of `declared` found in `pairs`, each once and in canonical form, in the
/// order of `declared`; the names nobody declared are dropped, and so are integers equal to
/// their default. A required parameter that is missing, one given twice, or a value out of
/// bounds is refused.
pub fn canonical_query<'a>(
    declared: &'static [Param],
    pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> Result<Vec<(&'static Param, String)>, Invalid> {
    let mut values: Vec<Option<String>> = vec![None; declared.len()];
    for (name, value) in pairs {
        let Some(index) = declared.iter().position(|param| param.name == name) else {
            continue;
        };
        let param = &declared[index];
        if values[index].is_some() {
            return Err(Invalid {
                field: param.name,
                message: format!("`{}` is given more than once", param.name),
            });
        }
        values[index] = Some(param.canonical(&value)?);
    }
    for (param, value) in declared.iter().zip(values.iter_mut()) {
        let default = param.default_integer().map(|default| default.to_string());
        if default.is_some() && *value == default {
            *value = None;
        }
    }
    declared
        .iter()
        .zip(values)
        .filter_map(|(param, value)| match value {
            Some(value) => Some(Ok((param, value))),
            None if param.required => Some(Err(param.invalid())),
            None => None,
        })
        .collect()
}

/// The query string of canonical parameters, as the edge sends it to the origin.
pub fn query_string(pairs: &[(&'static Param, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(param, value)| (param.name, value)))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(param: &Param, value: &str) -> Option<String> {
        param.canonical(value).ok()
    }

    #[test]
    fn integers_have_one_spelling_and_stay_in_bounds() {
        for (value, expected) in [
            ("50", Some("50")),
            ("050", Some("50")),
            (&format!("{}50", "0".repeat(30)), Some("50")),
            ("500", Some("500")),
            ("501", None),
            ("0", None),
            ("", None),
            ("+5", None),
            ("-5", None),
            (" 5", None),
            ("5e1", None),
            ("99999999999999999999", None),
            (&format!("{}1", "0".repeat(32)), None),
        ] {
            assert_eq!(
                canonical(&LIST_LIMIT, value).as_deref(),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn search_text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            canonical(&QUERY, "  New York ").as_deref(),
            Some("New York")
        );
        assert_eq!(canonical(&QUERY, "Île").as_deref(), Some("Île"));
        let longest = "é".repeat(100);
        assert_eq!(canonical(&QUERY, &longest), Some(longest.clone()));
        for bad in [
            "",
            "   ",
            "a\0b",
            "a\u{1f}",
            "\tparis",
            "x\u{85}",
            &"é".repeat(101),
        ] {
            assert_eq!(canonical(&QUERY, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_are_base64url_within_bounds() {
        assert!(canonical(&CURSOR, "NB8vd29ybGQ").is_some());
        let longest = "A".repeat(MAX_CURSOR_CHARS);
        assert!(canonical(&CURSOR, &longest).is_some());
        for bad in [
            "",
            "NB8vd29ybGQ=",
            "a+b/",
            "A",
            "ABCDE",
            &"A".repeat(MAX_CURSOR_CHARS + 4),
        ] {
            assert_eq!(canonical(&CURSOR, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_canonical_value_is_its_own_canonical_form() {
        for (param, value) in [
            (&LIST_LIMIT, "0007"),
            (&QUERY, "  ab c "),
            (&CURSOR, "NB8vd29ybGQ"),
        ] {
            let once = param.canonical(value).unwrap();
            assert_eq!(param.canonical(&once).unwrap(), once);
        }
    }

    #[test]
    fn queries_keep_declared_parameters_once_each() {
        const SEARCH: &[Param] = &[QUERY, SEARCH_LIMIT, CURSOR];
        let pairs = |list: &[(&'static str, &'static str)]| {
            list.iter()
                .map(|&(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value)))
                .collect::<Vec<_>>()
        };
        let query = canonical_query(
            SEARCH,
            pairs(&[("limit", "05"), ("junk", "1"), ("q", " x")]),
        )
        .unwrap();
        let named: Vec<(&str, &str)> = query.iter().map(|(p, v)| (p.name, v.as_str())).collect();
        assert_eq!(named, [("q", "x"), ("limit", "5")]);
        let default = canonical_query(SEARCH, pairs(&[("limit", "0020"), ("q", "x")])).unwrap();
        assert_eq!(
            default.len(),
            1,
            "the default limit is the page without one"
        );
        let twice = canonical_query(SEARCH, pairs(&[("q", "a"), ("q", "b")])).unwrap_err();
        assert_eq!(twice.field, "q");
        let missing = canonical_query(SEARCH, pairs(&[("limit", "5")])).unwrap_err();
        assert_eq!(missing.field, "q");
        let bounded = canonical_query(SEARCH, pairs(&[("q", "x"), ("limit", "101")]));
        assert_eq!(
            bounded.unwrap_err().message,
            "`limit` must be an integer from 1 to 100 (default 20)"
        );
    }
}
