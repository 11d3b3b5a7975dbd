//! A Structured Field Dictionary parser (RFC 8941 §4.2.2), for `CDN-Cache-Control`
//! (RFC 9213 §2.1 defines it as one). A value that does not parse is rejected whole, so the
//! caller can ignore the field as RFC 9213 requires; parameters are checked and dropped.

/// A member's value; the kinds the cache directives use are kept, the others only checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Integer(i64),
    Boolean(bool),
    /// Strings, tokens, decimals, byte sequences and inner lists.
    Other,
}

/// Parses a dictionary; `None` when it is not valid RFC 8941 syntax.
pub fn parse_dictionary(input: &str) -> Option<Vec<(String, Item)>> {
    let mut parser = Parser {
        rest: input.trim_matches(' ').as_bytes(),
    };
    let mut members = Vec::new();
    while !parser.rest.is_empty() {
        let key = parser.key()?;
        let item = if parser.eat(b'=') {
            if parser.peek() == Some(b'(') {
                parser.inner_list()?;
                Item::Other
            } else {
                parser.bare_item()?
            }
        } else {
            Item::Boolean(true)
        };
        parser.parameters()?;
        members.push((key, item));
        parser.skip_ows();
        if parser.rest.is_empty() {
            break;
        }
        if !parser.eat(b',') {
            return None;
        }
        parser.skip_ows();
        if parser.rest.is_empty() {
            return None; // a trailing comma
        }
    }
    Some(members)
}

struct Parser<'a> {
    rest: &'a [u8],
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.rest = &self.rest[1..];
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &[u8] {
        let end = self
            .rest
            .iter()
            .position(|&b| !keep(b))
            .unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    fn skip_ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    fn key(&mut self) -> Option<String> {
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        let key = self
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        Some(String::from_utf8_lossy(key).into_owned())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.take_while(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn inner_list(&mut self) -> Option<()> {
        self.eat(b'(');
        loop {
            self.take_while(|b| b == b' ');
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            match self.peek()? {
                b' ' | b')' => {}
                _ => return None,
            }
        }
    }

    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.eat(b'?');
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.rest = &self.rest[1..];
                Some(Item::Boolean(value))
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.take_while(|b| is_tchar(b) || b == b':' || b == b'/');
                Some(Item::Other)
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let integer = self.take_while(|b| b.is_ascii_digit()).to_vec();
        if integer.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            return (integer.len() <= 12 && (1..=3).contains(&fraction.len()))
                .then_some(Item::Other);
        }
        if integer.len() > 15 {
            return None;
        }
        let value: i64 = std::str::from_utf8(&integer).ok()?.parse().ok()?;
        Some(Item::Integer(if negative { -value } else { value }))
    }

    fn string(&mut self) -> Option<Item> {
        self.eat(b'"');
        loop {
            match self.peek()? {
                b'\\' => {
                    self.rest = &self.rest[1..];
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.rest = &self.rest[1..];
                }
                b'"' => {
                    self.rest = &self.rest[1..];
                    return Some(Item::Other);
                }
                0x20..=0x7e => self.rest = &self.rest[1..],
                _ => return None,
            }
        }
    }

    fn byte_sequence(&mut self) -> Option<Item> {
        self.eat(b':');
        self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        self.eat(b':').then_some(Item::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_dictionaries() {
        let cases: &[(&str, &[(&str, Item)])] = &[
            ("max-age=60", &[("max-age", Item::Integer(60))]),
            (
                "no-store, max-age=0",
                &[
                    ("no-store", Item::Boolean(true)),
                    ("max-age", Item::Integer(0)),
                ],
            ),
            (
                "  s-maxage=10 ,\tmust-revalidate;x=1  ",
                &[
                    ("s-maxage", Item::Integer(10)),
                    ("must-revalidate", Item::Boolean(true)),
                ],
            ),
            ("private=?0", &[("private", Item::Boolean(false))]),
            (
                "a=\"x\\\"y\", b=tok/en, c=1.5, d=:aGk=:, e=(1 2);p",
                &[
                    ("a", Item::Other),
                    ("b", Item::Other),
                    ("c", Item::Other),
                    ("d", Item::Other),
                    ("e", Item::Other),
                ],
            ),
            ("max-age=-5", &[("max-age", Item::Integer(-5))]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            let expected: Vec<(String, Item)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(parse_dictionary(input), Some(expected), "{input:?}");
        }
    }

    #[test]
    fn invalid_dictionaries_are_rejected_whole() {
        for input in [
            "Max-Age=60",
            "max-age=60,",
            "max-age==60",
            "max-age=6 0",
            "max-age=\"60",
            "max-age=1234567890123456",
            "max-age=-",
            ", max-age=60",
            "max-age=60;;",
            "max-age=é",
            "a=?2",
            "a=(1 2",
        ] {
            assert_eq!(parse_dictionary(input), None, "{input:?}");
        }
    }
}
