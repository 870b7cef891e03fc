//! Tags: `KEY=VALUE` labels a user puts on a resource (AWS's and Azure's
//! tags), kept with it and searchable. A key is 1 to 128 characters, a
//! value 0 to 256, neither with control characters; a key is unique per
//! resource (setting it again replaces the value); keys starting with
//! `coffer:` are reserved for the tags Coffer itself shows (provenance),
//! and a resource holds at most 50 tags (AWS's limit).

use std::fmt;

/// Longest tag key.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE: usize = 256;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// The prefix of keys Coffer reserves.
pub const RESERVED_PREFIX: &str = "coffer:";

/// Why a tag is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// No `=`.
    #[error("tag '{0}' has no '=': write tags as KEY=VALUE, e.g. --tag app=web")]
    NoEquals(String),
    /// Empty key.
    #[error("a tag key must not be empty: write tags as KEY=VALUE")]
    EmptyKey,
    /// A part too long.
    #[error("tag {part} is {len} characters long; the limit is {max}")]
    TooLong {
        /// `key` or `value`.
        part: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A control character.
    #[error("tag {part} holds a control character at position {pos}")]
    Control {
        /// `key` or `value`.
        part: &'static str,
        /// Where (0-based, in characters).
        pos: usize,
    },
    /// A reserved key.
    #[error("tag keys starting with 'coffer:' are reserved for the tags Coffer sets")]
    Reserved,
    /// Too many.
    #[error("a resource holds at most {MAX_TAGS} tags; this one would hold {0}")]
    TooMany(usize),
}

/// A validated tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

fn check(part: &'static str, s: &str, max: usize) -> Result<(), TagError> {
    let len = s.chars().count();
    if len > max {
        return Err(TagError::TooLong { part, len, max });
    }
    if let Some(pos) = s.chars().position(char::is_control) {
        return Err(TagError::Control { part, pos });
    }
    Ok(())
}

impl Tag {
    /// A tag from its parts.
    pub fn new(key: &str, value: &str) -> Result<Self, TagError> {
        if key.is_empty() {
            return Err(TagError::EmptyKey);
        }
        check("key", key, MAX_TAG_KEY)?;
        check("value", value, MAX_TAG_VALUE)?;
        if key.starts_with(RESERVED_PREFIX) {
            return Err(TagError::Reserved);
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// `KEY=VALUE` (the first `=` splits; the value may hold more).
    pub fn parse(s: &str) -> Result<Self, TagError> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| TagError::NoEquals(s.chars().take(60).collect()))?;
        Self::new(k, v)
    }

    /// A set of tags for one resource: later keys replace earlier ones,
    /// at most [`MAX_TAGS`].
    pub fn set(tags: impl IntoIterator<Item = Tag>) -> Result<Vec<Tag>, TagError> {
        let mut map = std::collections::BTreeMap::new();
        for t in tags {
            map.insert(t.key, t.value);
        }
        if map.len() > MAX_TAGS {
            return Err(TagError::TooMany(map.len()));
        }
        Ok(map
            .into_iter()
            .map(|(key, value)| Tag { key, value })
            .collect())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_refuse_what_they_must() {
        let t = Tag::parse("app=web=1").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_str()), ("app", "web=1"));
        assert_eq!(Tag::parse("empty=").unwrap().value, "");
        assert!(matches!(Tag::parse("novalue"), Err(TagError::NoEquals(_))));
        assert_eq!(Tag::parse("=v"), Err(TagError::EmptyKey));
        assert_eq!(Tag::parse("coffer:x=1"), Err(TagError::Reserved));
        assert!(matches!(
            Tag::parse(&format!("{}=1", "k".repeat(129))),
            Err(TagError::TooLong { part: "key", .. })
        ));
        assert!(matches!(
            Tag::parse("a=b\nc"),
            Err(TagError::Control {
                part: "value",
                pos: 1
            })
        ));
        let set = Tag::set([Tag::parse("a=1").unwrap(), Tag::parse("a=2").unwrap()]).unwrap();
        assert_eq!(set, vec![Tag::parse("a=2").unwrap()]);
        let many = (0..51).map(|i| Tag::new(&format!("k{i}"), "v").unwrap());
        assert_eq!(Tag::set(many), Err(TagError::TooMany(51)));
    }
}
