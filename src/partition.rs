//! Partitioners: which worker a keyed record goes to.
//!
//! This module owns routing and nothing else. Routing must agree across processes, so the hash
//! is seeded with a constant (never per process), and it must mix the low bits, because timely
//! routes on `hash & (peers - 1)` when the number of workers is a power of two.

use std::hash::{BuildHasher, Hash};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The hash that routes keys: fast, well mixed in every bit, and the same in every process.
///
/// ```
/// use tidemark::partition::route_hash;
/// assert_eq!(route_hash(&"user-7"), route_hash(&"user-7".to_string()));
/// // Consecutive integer keys spread over the low bits.
/// let low: std::collections::HashSet<u64> = (0..64u64).map(|k| route_hash(&k) & 3).collect();
/// assert_eq!(low.len(), 4);
/// ```
#[inline]
pub fn route_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    const SEED: u64 = 0x7469_6465_6d61_726b; // "tidemark"
    foldhash::quality::FixedState::with_seed(SEED).hash_one(key)
}

/// How keyed records are spread over workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitioner<K> {
    /// By a well-mixed hash of the key.
    Hash,
    /// By sorted split points: keys below the first point form range 0, keys from point `i - 1`
    /// up to (excluding) point `i` form range `i`; range `r` goes to worker `r % workers`.
    Range(Vec<K>),
    /// Evenly and without regard to the key. Keyed aggregation then runs in two phases: partial
    /// aggregates per worker, merged on the key's hash worker.
    Random,
    /// Every record to every worker. Keyed aggregation then runs on every worker, and each
    /// worker reports the keys that hash to it.
    Broadcast,
}

/// Why a partitioner specification was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionSpecError {
    /// Not one of the known forms.
    #[error("expected hash, range:K1,K2,..., random or broadcast, got {0:?}")]
    Syntax(String),
    /// Range split points must be strictly increasing.
    #[error("range split points must be strictly increasing, got {0:?}")]
    Unsorted(String),
}

impl<K: Ord> Partitioner<K> {
    /// A range partitioner, checking that the split points are strictly increasing.
    pub fn range(points: Vec<K>) -> Result<Self, PartitionSpecError>
    where
        K: std::fmt::Debug,
    {
        if points.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PartitionSpecError::Unsorted(format!("{points:?}")));
        }
        Ok(Partitioner::Range(points))
    }
}

impl<K: Hash + Ord> Partitioner<K> {
    /// The route of `key` for the key-respecting partitioners (`Hash`, `Range`); the others
    /// route keyed state by the key's hash.
    #[inline]
    pub fn route(&self, key: &K) -> u64 {
        match self {
            Partitioner::Range(points) => points.partition_point(|p| p <= key) as u64,
            _ => route_hash(key),
        }
    }
}

impl<K> Partitioner<K> {
    /// The same partitioner over keys of another type: `convert` maps each range split point
    /// (and must keep their order). Hash routing hashes keys as their type hashes them.
    ///
    /// ```
    /// use tidemark::partition::Partitioner;
    /// use tidemark::source::csv::CsvKey;
    /// let points: Partitioner<String> = "range:b,m".parse().unwrap();
    /// let points = points.map_keys(CsvKey::from);
    /// assert_eq!(points, Partitioner::Range(vec![CsvKey::new("b"), CsvKey::new("m")]));
    /// ```
    pub fn map_keys<L>(self, convert: impl FnMut(K) -> L) -> Partitioner<L> {
        match self {
            Partitioner::Hash => Partitioner::Hash,
            Partitioner::Range(points) => {
                Partitioner::Range(points.into_iter().map(convert).collect())
            }
            Partitioner::Random => Partitioner::Random,
            Partitioner::Broadcast => Partitioner::Broadcast,
        }
    }
}

impl<K> FromStr for Partitioner<K>
where
    K: Ord + std::fmt::Debug + for<'a> From<&'a str>,
{
    type Err = PartitionSpecError;

    /// Reads `hash`, `range:K1,K2,...`, `random` or `broadcast` (split points as text keys:
    /// `String`, or the CSV input's [`crate::source::csv::CsvKey`]).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let plain = [
            ("hash", Partitioner::Hash),
            ("random", Partitioner::Random),
            ("broadcast", Partitioner::Broadcast),
        ];
        if let Some(partitioner) = by_name(text, plain) {
            return Ok(partitioner);
        }
        let points = text
            .strip_prefix("range:")
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| PartitionSpecError::Syntax(text.to_string()))?;
        Partitioner::range(points.split(',').map(K::from).collect())
            .map_err(|_| PartitionSpecError::Unsorted(text.to_string()))
    }
}

/// The value `text` names in `table` (exact match), if any: the one parser of the names of
/// [`Partitioner`] and [`Scheme`].
fn by_name<T, const N: usize>(text: &str, table: [(&str, T); N]) -> Option<T> {
    table
        .into_iter()
        .find_map(|(name, value)| (name == text).then_some(value))
}

/// A partitioner chosen by name for benchmark workloads, whose keys are the integers of a known
/// domain `0..domain` (YSB campaigns, word ids); `tidemark bench --partitioner`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// [`Partitioner::Hash`].
    #[default]
    Hash,
    /// [`Partitioner::Range`] with split points evenly spaced over the key domain, one range
    /// per worker.
    Range,
    /// [`Partitioner::Random`]: two-phase keyed aggregation.
    Random,
}

impl Scheme {
    /// The scheme's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Hash => "hash",
            Scheme::Range => "range",
            Scheme::Random => "random",
        }
    }

    /// Every scheme, in the order the command line's help lists them.
    const ALL: [Scheme; 3] = [Scheme::Hash, Scheme::Range, Scheme::Random];

    /// The partitioner for keys in `0..domain` spread over `peers` workers.
    ///
    /// ```
    /// use tidemark::partition::{Partitioner, Scheme};
    /// assert_eq!(Scheme::Range.for_domain::<u32>(100, 4), Partitioner::Range(vec![25, 50, 75]));
    /// assert_eq!(Scheme::Random.for_domain::<u64>(100, 4), Partitioner::Random);
    /// ```
    pub fn for_domain<K: Ord + TryFrom<u64>>(self, domain: u64, peers: usize) -> Partitioner<K> {
        match self {
            Scheme::Hash => Partitioner::Hash,
            Scheme::Random => Partitioner::Random,
            Scheme::Range => {
                let peers = peers.max(1) as u64;
                let mut points: Vec<u64> = (1..peers).map(|i| domain * i / peers).collect();
                points.dedup();
                points.retain(|&p| p > 0);
                Partitioner::Range(
                    points
                        .into_iter()
                        .filter_map(|p| K::try_from(p).ok())
                        .collect(),
                )
            }
        }
    }
}

impl FromStr for Scheme {
    type Err = String;

    /// Reads `hash`, `range` or `random`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        by_name(text, Scheme::ALL.map(|scheme| (scheme.name(), scheme)))
            .ok_or_else(|| format!("expected hash, range or random, got {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_routes_by_split_points() {
        let p = Partitioner::range(vec!["g".to_string(), "p".to_string()]).unwrap();
        assert_eq!(p.route(&"a".to_string()), 0);
        assert_eq!(p.route(&"g".to_string()), 1);
        assert_eq!(p.route(&"o".to_string()), 1);
        assert_eq!(p.route(&"z".to_string()), 2);
    }

    #[test]
    fn parses_specs() {
        assert_eq!("hash".parse::<Partitioner<String>>(), Ok(Partitioner::Hash));
        assert_eq!(
            "range:b,m".parse::<Partitioner<String>>(),
            Ok(Partitioner::Range(vec!["b".into(), "m".into()]))
        );
        assert!(matches!(
            "range:m,b".parse::<Partitioner<String>>(),
            Err(PartitionSpecError::Unsorted(_))
        ));
        assert!(matches!(
            "range:".parse::<Partitioner<String>>(),
            Err(PartitionSpecError::Syntax(_))
        ));
        assert!(matches!(
            "modulo".parse::<Partitioner<String>>(),
            Err(PartitionSpecError::Syntax(_))
        ));
    }

    #[test]
    fn schemes_split_the_domain_evenly() {
        assert_eq!(
            Scheme::Range.for_domain::<u32>(10, 1),
            Partitioner::Range(vec![])
        );
        assert_eq!(
            Scheme::Range.for_domain::<u64>(3, 8),
            Partitioner::Range(vec![1, 2])
        );
        let p = Scheme::Range.for_domain::<u64>(1000, 4);
        let mut per_range = [0; 4];
        for k in 0..1000u64 {
            per_range[p.route(&k) as usize] += 1;
        }
        assert_eq!(per_range, [250; 4]);
        assert_eq!("range".parse::<Scheme>(), Ok(Scheme::Range));
        assert!("modulo".parse::<Scheme>().is_err());
    }

    #[test]
    fn hash_spreads_low_bits() {
        let mut buckets = [0u32; 16];
        for k in 0..16_000u64 {
            buckets[(route_hash(&k) & 15) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }
}
