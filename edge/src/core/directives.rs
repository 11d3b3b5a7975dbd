//! Parsing of `Cache-Control`-style directive lists (RFC 9111 §5.2), as found in
//! `Cache-Control` and `Surrogate-Control`, and of `CDN-Cache-Control`'s dictionary (RFC 9213).
//!
//! Parsing is defensive: a delta-seconds directive that is malformed, negative or repeated
//! with different values is recorded as [`Seconds::Invalid`], which the freshness rules read
//! as "already stale" (RFC 9111 §4.2.1).

use super::structured::Item;

/// Largest delta-seconds value honoured (RFC 9111 §1.2.2 caps at 2^31).
const MAX_DELTA_SECONDS: u64 = 1 << 31;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seconds {
    #[default]
    Absent,
    Valid(u64),
    Invalid,
}

impl Seconds {
    /// The value, with invalid treated as 0 (stale) and absent as `None`.
    pub fn get(self) -> Option<u64> {
        match self {
            Seconds::Absent => None,
            Seconds::Valid(n) => Some(n),
            Seconds::Invalid => Some(0),
        }
    }

    fn merge(self, value: Option<&str>) -> Self {
        let parsed = value
            .map(|v| v.trim_matches('"'))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .map(|v| v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_DELTA_SECONDS));
        match (self, parsed) {
            (_, None) => Seconds::Invalid,
            (Seconds::Absent, Some(n)) => Seconds::Valid(n),
            (Seconds::Valid(old), Some(n)) if old == n => self,
            _ => Seconds::Invalid,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    /// Also set by the qualified form `no-cache="field"`, conservatively.
    pub no_cache: bool,
    /// Also set by the qualified form `private="field"`, conservatively.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub max_age: Seconds,
    pub s_maxage: Seconds,
    pub stale_while_revalidate: Seconds,
    pub stale_if_error: Seconds,
}

/// Where a directive's value goes.
enum Slot<'a> {
    Flag(&'a mut bool),
    Seconds(&'a mut Seconds),
}

impl Directives {
    fn slot(&mut self, name: &str) -> Option<Slot<'_>> {
        Some(match name {
            "no-store" => Slot::Flag(&mut self.no_store),
            "no-cache" => Slot::Flag(&mut self.no_cache),
            "private" => Slot::Flag(&mut self.private),
            "public" => Slot::Flag(&mut self.public),
            "must-revalidate" => Slot::Flag(&mut self.must_revalidate),
            "proxy-revalidate" => Slot::Flag(&mut self.proxy_revalidate),
            "immutable" => Slot::Flag(&mut self.immutable),
            "max-age" => Slot::Seconds(&mut self.max_age),
            "s-maxage" => Slot::Seconds(&mut self.s_maxage),
            "stale-while-revalidate" => Slot::Seconds(&mut self.stale_while_revalidate),
            "stale-if-error" => Slot::Seconds(&mut self.stale_if_error),
            _ => return None, // unknown directives are ignored (RFC 9111 §5.2.3)
        })
    }

    /// Parses every value of a directive header (several header lines are one list).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut directives = Directives::default();
        for item in values.into_iter().flat_map(split_list) {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (item.trim(), None),
            };
            match directives.slot(&name.to_ascii_lowercase()) {
                Some(Slot::Flag(flag)) => *flag = true,
                Some(Slot::Seconds(seconds)) => *seconds = seconds.merge(value),
                None => {}
            }
        }
        directives
    }

    /// The directives of a Structured Field Dictionary (`CDN-Cache-Control`, RFC 9213): a
    /// directive whose value has the wrong type is ignored, a negative age reads as stale.
    pub fn from_dictionary(members: &[(String, Item)]) -> Self {
        let mut directives = Directives::default();
        for (name, item) in members {
            match (directives.slot(name), item) {
                (Some(Slot::Flag(flag)), Item::Boolean(value)) => *flag = *value,
                // The qualified forms (`private="field"`, `no-cache="field"`) count as the
                // whole directive, conservatively, as in `Cache-Control`.
                (Some(Slot::Flag(flag)), Item::Other)
                    if matches!(name.as_str(), "private" | "no-cache") =>
                {
                    *flag = true
                }
                (Some(Slot::Seconds(seconds)), Item::Integer(n)) => {
                    *seconds = u64::try_from(*n)
                        .map(|n| Seconds::Valid(n.min(MAX_DELTA_SECONDS)))
                        .unwrap_or(Seconds::Invalid)
                }
                _ => {}
            }
        }
        directives
    }
}

/// Splits a comma-separated list, keeping commas inside quoted strings.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut items = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Directives {
        Directives::parse([value])
    }

    #[test]
    fn directives_table() {
        let cases: &[(&str, Directives)] = &[
            ("", Directives::default()),
            (
                "public, max-age=60, s-maxage=300",
                Directives {
                    public: true,
                    max_age: Seconds::Valid(60),
                    s_maxage: Seconds::Valid(300),
                    ..Default::default()
                },
            ),
            (
                "No-Store, MAX-AGE=5",
                Directives {
                    no_store: true,
                    max_age: Seconds::Valid(5),
                    ..Default::default()
                },
            ),
            (
                "max-age=\"60\", stale-while-revalidate=30, stale-if-error=600",
                Directives {
                    max_age: Seconds::Valid(60),
                    stale_while_revalidate: Seconds::Valid(30),
                    stale_if_error: Seconds::Valid(600),
                    ..Default::default()
                },
            ),
            (
                "private=\"set-cookie, x-user\", no-cache=\"a\"",
                Directives {
                    private: true,
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                "max-age=abc",
                Directives {
                    max_age: Seconds::Invalid,
                    ..Default::default()
                },
            ),
            (
                "max-age=-1",
                Directives {
                    max_age: Seconds::Invalid,
                    ..Default::default()
                },
            ),
            (
                "max-age",
                Directives {
                    max_age: Seconds::Invalid,
                    ..Default::default()
                },
            ),
            (
                "max-age=60, max-age=120",
                Directives {
                    max_age: Seconds::Invalid,
                    ..Default::default()
                },
            ),
            (
                "max-age=60, max-age=60",
                Directives {
                    max_age: Seconds::Valid(60),
                    ..Default::default()
                },
            ),
            (
                "max-age=99999999999999999999999",
                Directives {
                    max_age: Seconds::Valid(MAX_DELTA_SECONDS),
                    ..Default::default()
                },
            ),
            (
                ",,, immutable ,, must-revalidate, proxy-revalidate, x-unknown=1",
                Directives {
                    immutable: true,
                    must_revalidate: true,
                    proxy_revalidate: true,
                    ..Default::default()
                },
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(&parse(value), expected, "{value:?}");
        }
    }

    #[test]
    fn several_header_lines_form_one_list() {
        let d = Directives::parse(["public", "max-age=10"]);
        assert!(d.public);
        assert_eq!(d.max_age, Seconds::Valid(10));
    }

    #[test]
    fn structured_dictionaries_map_to_directives() {
        let members = crate::core::structured::parse_dictionary(
            "max-age=60, no-store=?0, private, s-maxage=-1, stale-if-error=\"x\", no-cache=\"set-cookie\"",
        )
        .unwrap();
        assert_eq!(
            Directives::from_dictionary(&members),
            Directives {
                max_age: Seconds::Valid(60),
                private: true,
                no_cache: true,
                s_maxage: Seconds::Invalid,
                ..Default::default()
            }
        );
    }

    #[test]
    fn invalid_seconds_read_as_stale() {
        assert_eq!(Seconds::Invalid.get(), Some(0));
        assert_eq!(Seconds::Absent.get(), None);
    }
}
