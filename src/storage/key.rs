//! Object keys: the only way a name reaches a backend.

use std::fmt;

/// A validated object key relative to the store's root (bucket + prefix, or
/// directory): `/`-separated segments, none empty, `.` or `..`, no control
/// characters, at most 1024 bytes. A key can therefore never escape the root
/// of a local store nor mean different things to different backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a text is not an [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not a valid object key: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        let invalid = |reason| InvalidKey {
            key: key.clone(),
            reason,
        };
        if key.is_empty() || key.len() > 1024 {
            return Err(invalid("must be 1 to 1024 bytes"));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid("contains a control character"));
        }
        if key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(invalid("has an empty, '.' or '..' segment"));
        }
        Ok(Self(key))
    }

    /// This key with `segment` (itself `/`-separated) appended.
    pub fn join(&self, segment: &str) -> Result<Self, InvalidKey> {
        Self::new(format!("{}/{segment}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Joins the store's root prefix (possibly empty) and a key or listing
/// prefix into the provider's full name.
pub(crate) fn full_name(root: &str, key: &str) -> String {
    if root.is_empty() {
        key.to_string()
    } else {
        format!("{root}/{key}")
    }
}

/// Strips the store's root prefix from a provider name; `None` when the
/// name is not under the root (or not a valid key).
pub(crate) fn relative_key(root: &str, name: &str) -> Option<ObjectKey> {
    let rest = if root.is_empty() {
        name
    } else {
        name.strip_prefix(root)?.strip_prefix('/')?
    };
    ObjectKey::new(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_or_be_ambiguous() {
        assert!(ObjectKey::new("backups/dc1/node-1/manifest.json").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\nb"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn root_prefix_round_trip() {
        assert_eq!(full_name("team/prod", "a/b"), "team/prod/a/b");
        assert_eq!(full_name("", "a/b"), "a/b");
        assert_eq!(
            relative_key("team/prod", "team/prod/a/b").unwrap().as_str(),
            "a/b"
        );
        assert_eq!(relative_key("team/prod", "team/production/a"), None);
        assert_eq!(relative_key("", "a").unwrap().as_str(), "a");
    }
}
