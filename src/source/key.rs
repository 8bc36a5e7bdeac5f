//! The key of a CSV record ([`CsvKey`]): its text, held inline when short, and its hash,
//! computed once when the row is read.
//!
//! A record's key is hashed twice downstream: by the exchange that routes it to its worker
//! ([`crate::partition::route_hash`]) and by the window operator's key table. Hashing the text
//! each time walks its bytes; a `CsvKey` hashes as the one `u64` it carries, so both are a
//! multiply or two. The text stays exact: keys are equal when their texts are (the hashes are
//! compared first, as a quick refusal), they order and print as their texts, and they
//! serialize as their texts alone (the hash is recomputed when read back), so results,
//! changelogs and checkpoints are those of plain text keys. Only which worker a key goes to
//! differs from a `String` key's, which no result depends on.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// A key read from CSV input: the key field's text and its hash.
///
/// Text of up to 23 bytes is held inline (`smol_str::SmolStr`), so reading a row allocates
/// nothing for its key. The hash is [`crate::partition::route_hash`] of the text: the same in
/// every process.
///
/// ```
/// use tidemark::source::csv::CsvKey;
/// let key = CsvKey::new("user-7");
/// assert_eq!(key, CsvKey::from("user-7"));
/// assert_eq!(key.as_str(), "user-7");
/// assert!(CsvKey::new("a") < CsvKey::new("b"));
/// assert_eq!(format!("{key} {key:?}"), "user-7 \"user-7\"");
/// ```
#[derive(Clone)]
pub struct CsvKey {
    hash: u64,
    text: SmolStr,
}

impl CsvKey {
    /// The key with text `text`, hashed.
    #[inline]
    pub fn new(text: &str) -> CsvKey {
        CsvKey {
            hash: crate::partition::route_hash(text),
            text: SmolStr::new(text),
        }
    }

    /// The key's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }
}

impl From<&str> for CsvKey {
    fn from(text: &str) -> CsvKey {
        CsvKey::new(text)
    }
}

impl From<String> for CsvKey {
    fn from(text: String) -> CsvKey {
        CsvKey::new(&text)
    }
}

impl AsRef<str> for CsvKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for CsvKey {
    #[inline]
    fn eq(&self, other: &CsvKey) -> bool {
        // Equal texts have equal hashes: a differing hash refuses without reading the texts.
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for CsvKey {}

impl Ord for CsvKey {
    /// By text (so consistent with equality, which is equality of texts).
    fn cmp(&self, other: &CsvKey) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialOrd for CsvKey {
    fn partial_cmp(&self, other: &CsvKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for CsvKey {
    /// The hash computed when the key was read: equal keys have equal hashes.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Display for CsvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for CsvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for CsvKey {
    /// As the text alone, as a `String` key serializes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CsvKey {
    /// From the text, hashing it again.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CsvKey, D::Error> {
        let text = SmolStr::deserialize(deserializer)?;
        Ok(CsvKey::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys compare, order and round-trip through serialization as their texts do, including
    /// texts too long to be held inline.
    #[test]
    fn keys_behave_as_their_texts() {
        let long = "a key longer than twenty-three bytes";
        let texts = ["", "a", "b", "k1", "k10", "k2", "é", long, &long[..30]];
        for a in texts {
            let key = CsvKey::new(a);
            let bytes = bincode::serialize(&key).unwrap();
            assert_eq!(bytes, bincode::serialize(&a.to_string()).unwrap(), "{a:?}");
            assert_eq!(bincode::deserialize::<CsvKey>(&bytes).unwrap(), key);
            for b in texts {
                let other = CsvKey::new(b);
                assert_eq!(key == other, a == b, "{a:?} == {b:?}");
                assert_eq!(key.cmp(&other), a.cmp(b), "{a:?} cmp {b:?}");
            }
        }
    }
}
