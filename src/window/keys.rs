//! The per-window key table: one lookup per record, and a key clone only when a key is new.
//!
//! `hashbrown::HashMap::entry` takes the key by value, which would clone (and for text keys
//! allocate) on every record that contributes to more than one window. This table looks keys
//! up by reference and clones only on insertion. It uses hashbrown's default hasher, the same
//! map a hand-written baseline would use.
//!
//! Keys that are small integers skip hashing: a hand-written loop over such keys (YSB's campaign
//! ids) indexes a dense array by key, and so does this table while it can. A key type says it is an
//! integer through [`dense_index`]: the primitive integer types (`u8` to `u64`, `usize`, and the
//! signed ones at non-negative values), and `()`, the one key of a window over all records. Such a
//! table starts *dense*: an array indexed by key holds each key's entry (or nothing), so that a
//! lookup is one bounds check and one test, as a hand-written array's. It stays dense while every
//! key inserted is below [`dense_limit`] (at most 4096, and fewer for entries so large that the
//! array would pass 64 KiB), so that the array stays in a core's cache, as a hand-written array
//! of YSB's 100 campaigns does, and otherwise moves its entries into a hash table for good (a
//! cleared table keeps its layout, as it keeps its allocation). Larger key domains (NEXMark's
//! growing auction and bidder ids) are hashed, probed record by record as a hand-written loop's
//! map is; a table whose first key is beyond the limit turns hashed before it holds anything.
//! Every other key type is hashed from its first insert. Both layouts hold the same entries, so
//! lookups, results and checkpoints (which sort entries by key) are the same; only the order of
//! [`KeyTable::iter`] differs (key order when dense, the hash table's otherwise), and no caller
//! relies on it. A dense table's iteration and clearing cost its array's length, not its entries:
//! at most the limit, once per window or pane.

use std::any::Any;
use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::fixed::StateGauge;

/// A dense table admits keys below this, or below [`dense_limit`] for large entries.
const DENSE_LIMIT: u64 = 4096;

/// The most bytes a dense table's array takes (see [`dense_limit`]).
const DENSE_BYTES: usize = 64 * 1024;

/// The keys a dense table of entries `(K, V)` admits are those below this: [`DENSE_LIMIT`], or
/// fewer where that many slots would take more than [`DENSE_BYTES`]. Decided at compile time.
#[inline]
fn dense_limit<K, V>() -> u64 {
    let slots = DENSE_BYTES / std::mem::size_of::<Option<(K, V)>>().max(1);
    DENSE_LIMIT.min(slots as u64)
}

/// `key`'s index in a dense array when `K` is a primitive integer type and `key` is not
/// negative, or `()` (index 0); `None` for every other type (which is then always hashed).
///
/// The downcasts are decided at compile time: for a given `K` this compiles to the integer
/// conversion or to `None` (checked on the assembly of a copy of this function, rustc 1.95
/// `-O`, for `u32`, `u64` and `String`).
#[inline]
pub(crate) fn dense_index<K: 'static>(key: &K) -> Option<u64> {
    let key = key as &dyn Any;
    macro_rules! integer {
        ($($t:ty),*) => {$(
            if let Some(k) = key.downcast_ref::<$t>() {
                return u64::try_from(*k).ok();
            }
        )*};
    }
    integer!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
    // The one key of a window over all records (NEXMark q7's).
    if key.is::<()>() {
        return Some(0);
    }
    None
}

/// Where a table keeps its entries; see the module docs.
enum Store<K, V> {
    /// `slots[dense_index(key)]` is the key's entry, `None` if absent (as are keys past the
    /// end); `len` counts the entries. One level, not an index into a vector of entries: the
    /// two levels cost YSB's window 13 instructions a lookup, two bounds checks and a test
    /// (callgrind, experiments/README.md "*One-level dense tables*").
    Dense {
        slots: Vec<Option<(K, V)>>,
        len: usize,
    },
    Hashed(HashTable<(K, V)>),
}

/// A map from keys to slots, looked up by reference: dense for small integer keys, hashed
/// otherwise (see the module docs).
pub(crate) struct KeyTable<K, V> {
    store: Store<K, V>,
    hasher: DefaultHashBuilder,
}

impl<K, V> Default for KeyTable<K, V> {
    /// An empty dense table; one whose keys are not integers turns hashed at its first insert.
    fn default() -> Self {
        KeyTable {
            store: Store::Dense {
                slots: Vec::new(),
                len: 0,
            },
            hasher: DefaultHashBuilder::default(),
        }
    }
}

/// The items of whichever of two iterators is given (a table's dense or hashed entries).
fn either<T>(
    dense: Option<impl Iterator<Item = T>>,
    hashed: Option<impl Iterator<Item = T>>,
) -> impl Iterator<Item = T> {
    dense
        .into_iter()
        .flatten()
        .chain(hashed.into_iter().flatten())
}

/// A hashed table's entries, borrowed for lookups ([`KeyTable::hashed_mut`]).
pub(crate) struct HashedMut<'a, K, V> {
    table: &'a mut HashTable<(K, V)>,
    hasher: &'a DefaultHashBuilder,
}

impl<K: Hash + Eq, V> HashedMut<'_, K, V> {
    /// The slot of `key`, if present: [`KeyTable::get_mut`] on a hashed table.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = self.hasher.hash_one(key);
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Where a key is, or would go, in a table.
enum Place {
    /// In a dense table's slot of this index.
    At(usize),
    /// Absent from a dense table that admits it at this index.
    Vacant(usize),
    /// In the hash table, or to go there.
    Hashed,
}

impl<K: Hash + Eq + 'static, V> KeyTable<K, V> {
    /// Where `key` is (or would be inserted) in this table as it is now.
    #[inline]
    fn place(&self, key: &K) -> Place {
        let Store::Dense { slots, .. } = &self.store else {
            return Place::Hashed;
        };
        let Some(i) = dense_index(key) else {
            return Place::Hashed;
        };
        match usize::try_from(i).ok().and_then(|i| slots.get(i)) {
            Some(Some(_)) => Place::At(i as usize),
            _ if i < dense_limit::<K, V>() => Place::Vacant(i as usize),
            _ => Place::Hashed,
        }
    }

    /// Moves a dense table's entries into a hash table (for a key the dense array cannot
    /// take); a hashed table is left as it is.
    #[cold]
    fn rehash(&mut self) {
        let Store::Dense { slots, len } = &mut self.store else {
            return;
        };
        let slots = std::mem::take(slots);
        let hasher = &self.hasher;
        let mut table = HashTable::with_capacity(*len);
        for entry in slots.into_iter().flatten() {
            table.insert_unique(hasher.hash_one(&entry.0), entry, |(k, _)| {
                hasher.hash_one(k)
            });
        }
        self.store = Store::Hashed(table);
    }

    /// The slot of `key`, if present. Inlinable: as a call (never inlined, through `place`'s
    /// two layouts) it cost q11's session hot loop 10 instructions a record more than the
    /// hand-written q11's inlined `HashMap::get_mut`, a seventh of the window's (callgrind,
    /// experiments/README.md "*One probe inlined*"). That loop now probes a hashed table
    /// through [`HashedMut`], and a dense one through this.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match &mut self.store {
            Store::Hashed(table) => {
                let hash = self.hasher.hash_one(key);
                table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
            }
            Store::Dense { slots, .. } => Self::dense_slot(slots, key),
        }
    }

    /// The slot of `key` if the table is dense and holds it; `None` otherwise (a hashed table,
    /// or a key the dense table lacks, which [`KeyTable::slot`] inserts). The dense hot loop's
    /// probe, which [`KeyTable::get_mut`] would make test for a hashed table and hash first.
    #[inline]
    pub(crate) fn dense_get_mut(&mut self, key: &K) -> Option<&mut V> {
        match &mut self.store {
            Store::Dense { slots, .. } => Self::dense_slot(slots, key),
            Store::Hashed(_) => None,
        }
    }

    /// `key`'s value in a dense table's slots, if present. A key with no dense index (not an
    /// integer, or negative) is absent from a dense table: `insert` and `entry` turn the table
    /// hashed before such a key goes in.
    #[inline]
    fn dense_slot<'a>(slots: &'a mut [Option<(K, V)>], key: &K) -> Option<&'a mut V> {
        let i = usize::try_from(dense_index(key)?).ok()?;
        slots.get_mut(i)?.as_mut().map(|(_, v)| v)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match (self.place(key), &self.store) {
            (Place::At(i), Store::Dense { slots, .. }) => slots[i].as_ref().map(|(_, v)| v),
            (_, Store::Dense { .. }) => None,
            (_, Store::Hashed(table)) => {
                let hash = self.hasher.hash_one(key);
                table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
            }
        }
    }

    /// Removes `key`'s entry, if any, and returns its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let place = self.place(key);
        let hash = matches!(place, Place::Hashed).then(|| self.hasher.hash_one(key));
        match (&mut self.store, place) {
            (Store::Dense { slots, len }, Place::At(i)) => {
                *len -= 1;
                slots[i].take().map(|(_, value)| value)
            }
            (Store::Hashed(table), Place::Hashed) => {
                let hash = hash.expect("computed for a hashed place");
                match table.find_entry(hash, |(k, _)| k == key) {
                    Ok(entry) => Some(entry.remove().0 .1),
                    Err(_) => None,
                }
            }
            _ => None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts `key`, which must be absent.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.place(&key) {
            Place::At(_) => debug_assert!(false, "inserting a present key"),
            Place::Vacant(i) => {
                self.push_dense(i, key, value);
            }
            Place::Hashed => {
                // Checked here, not only in `rehash`: on a hashed table's hot path this is one
                // compare, where the call (never inlined) cost q5 3% of its samples.
                if self.is_dense() {
                    self.rehash();
                }
                let Store::Hashed(table) = &mut self.store else {
                    unreachable!("rehashed")
                };
                let hasher = &self.hasher;
                let hash = hasher.hash_one(&key);
                table.insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
            }
        }
    }

    /// Puts `key` (of dense index `i`, absent) in a dense table and returns its value.
    #[inline]
    fn push_dense(&mut self, i: usize, key: K, value: V) -> &mut V {
        let Store::Dense { slots, len } = &mut self.store else {
            unreachable!("a vacant dense place")
        };
        if i >= slots.len() {
            slots.resize_with(i + 1, || None);
        }
        *len += 1;
        &mut slots[i].insert((key, value)).1
    }

    /// Removes every entry, keeping the allocation (and the layout).
    pub(crate) fn clear(&mut self) {
        match &mut self.store {
            Store::Dense { slots, len } => {
                slots.clear();
                *len = 0;
            }
            Store::Hashed(table) => table.clear(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let (dense, hashed) = match &self.store {
            Store::Dense { slots, .. } => (Some(slots.iter().flatten()), None),
            Store::Hashed(table) => (None, Some(table.iter())),
        };
        either(dense, hashed).map(|(k, v)| (k, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        let (dense, hashed) = match &mut self.store {
            Store::Dense { slots, .. } => (Some(slots.iter_mut().flatten()), None),
            Store::Hashed(table) => (None, Some(table.iter_mut())),
        };
        either(dense, hashed).map(|(k, v)| (&*k, v))
    }

    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Dense { len, .. } => *len,
            Store::Hashed(table) => table.len(),
        }
    }

    /// How many entries the table holds without growing (a dense table: how many keys its
    /// array's allocation indexes, which its clearing costs).
    pub(crate) fn capacity(&self) -> usize {
        match &self.store {
            Store::Dense { slots, .. } => slots.capacity(),
            Store::Hashed(table) => table.capacity(),
        }
    }

    /// The hash table and its hasher while the table is hashed, `None` while it is dense: for
    /// a hot loop that probes record after record with the layout tested once, not per probe.
    #[inline]
    pub(crate) fn hashed_mut(&mut self) -> Option<HashedMut<'_, K, V>> {
        match &mut self.store {
            Store::Hashed(table) => Some(HashedMut {
                table,
                hasher: &self.hasher,
            }),
            Store::Dense { .. } => None,
        }
    }

    /// Whether the table is dense now: probed by index.
    #[inline]
    pub(crate) fn is_dense(&self) -> bool {
        matches!(self.store, Store::Dense { .. })
    }
}

impl<K: Hash + Eq + Clone + 'static, V> KeyTable<K, V> {
    /// The slot of `key`, inserted (and counted on `gauge`) with `init` if absent.
    #[inline]
    pub(crate) fn slot(&mut self, key: &K, gauge: &StateGauge, init: impl FnOnce() -> V) -> &mut V {
        let (slot, inserted) = self.entry(key, init);
        if inserted {
            gauge.add(1);
        }
        slot
    }

    /// The slot of `key`, inserted with `init` if absent (for tables whose entries are not
    /// what a gauge counts).
    pub(crate) fn slot_uncounted(&mut self, key: &K, init: impl FnOnce() -> V) -> &mut V {
        self.entry(key, init).0
    }

    /// The slot of `key`, inserted with `init` if absent, and whether it was.
    #[inline]
    fn entry(&mut self, key: &K, init: impl FnOnce() -> V) -> (&mut V, bool) {
        match self.place(key) {
            Place::At(i) => match &mut self.store {
                Store::Dense { slots, .. } => match &mut slots[i] {
                    Some((_, value)) => (value, false),
                    None => unreachable!("a present dense place"),
                },
                Store::Hashed(_) => unreachable!("a dense place"),
            },
            Place::Vacant(i) => (self.push_dense(i, key.clone(), init()), true),
            Place::Hashed => {
                let hash = self.hasher.hash_one(key);
                // Checked here, not only in `rehash`: on a hashed table's hot path this is one
                // compare, where the call (never inlined) cost q5 3% of its samples.
                if self.is_dense() {
                    self.rehash();
                }
                let Store::Hashed(table) = &mut self.store else {
                    unreachable!("rehashed")
                };
                let hasher = &self.hasher;
                let eq = |(k, _): &(K, V)| k == key;
                match table.entry(hash, eq, |(k, _)| hasher.hash_one(k)) {
                    Entry::Occupied(entry) => (&mut entry.into_mut().1, false),
                    Entry::Vacant(entry) => {
                        (&mut entry.insert((key.clone(), init())).into_mut().1, true)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use proptest::prelude::*;

    use super::*;

    /// A key type that is not an integer: its tables are hashed from the start.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Opaque(i64);

    /// One step of a table's life.
    #[derive(Clone, Debug)]
    enum Op {
        /// Adds the value to the key's slot, inserting it at 0 if absent.
        Add(i64, u64),
        /// Reads the key.
        Get(i64),
        /// Removes the key.
        Remove(i64),
        /// Inserts the key with the value if absent.
        Insert(i64, u64),
        /// Empties the table.
        Clear,
    }

    /// Mostly small keys, some in the dense range's margin, some far out of it, and a few
    /// negative ones (which no dense table takes).
    fn key() -> impl Strategy<Value = i64> {
        prop_oneof![
            8 => 0i64..40,
            2 => 0i64..20_000,
            1 => any::<i64>(),
            1 => -5i64..0,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (key(), 0u64..100).prop_map(|(k, v)| Op::Add(k, v)),
            2 => key().prop_map(Op::Get),
            2 => key().prop_map(Op::Remove),
            1 => (key(), 0u64..100).prop_map(|(k, v)| Op::Insert(k, v)),
            1 => Just(Op::Clear),
        ]
    }

    /// Runs `ops` on a table of keys `key_of(k)` and on a `BTreeMap`, asserting after each
    /// step that they hold the same entries and answer alike.
    fn follow<K>(ops: &[Op], key_of: impl Fn(i64) -> K)
    where
        K: Hash + Eq + Ord + Clone + Debug + 'static,
    {
        let gauge = StateGauge::default();
        let mut table: KeyTable<K, u64> = KeyTable::default();
        let mut model: BTreeMap<K, u64> = BTreeMap::new();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Add(k, v) => {
                    *table.slot(&key_of(*k), &gauge, || 0) += v;
                    *model.entry(key_of(*k)).or_insert(0) += v;
                }
                Op::Get(k) => {
                    let key = key_of(*k);
                    assert_eq!(table.get(&key), model.get(&key), "step {step}");
                    assert_eq!(table.get_mut(&key).copied(), model.get(&key).copied());
                }
                Op::Remove(k) => {
                    let key = key_of(*k);
                    assert_eq!(table.remove(&key), model.remove(&key), "step {step}");
                }
                Op::Insert(k, v) => {
                    let key = key_of(*k);
                    if let std::collections::btree_map::Entry::Vacant(entry) =
                        model.entry(key.clone())
                    {
                        table.insert(key, *v);
                        entry.insert(*v);
                    }
                }
                Op::Clear => {
                    table.clear();
                    model.clear();
                }
            }
            let mut entries: Vec<(K, u64)> = table.iter().map(|(k, v)| (k.clone(), *v)).collect();
            entries.sort();
            let expected: Vec<(K, u64)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            assert_eq!(entries, expected, "step {step}: {op:?}");
            assert_eq!(table.len(), model.len());
            assert_eq!(table.is_empty(), model.is_empty());
            assert_eq!(table.iter_mut().count(), model.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Dense tables (integer keys, which may leave the dense range mid-stream and turn the
        /// table hashed) and hashed ones (keys that are not integers) hold the same entries
        /// as a `BTreeMap` after every step, whatever the mix of adds, reads, removals,
        /// inserts and clears.
        #[test]
        fn dense_and_hashed_tables_agree_with_a_map(ops in prop::collection::vec(op(), 0..200)) {
            follow(&ops, |k| k);
            follow(&ops, |k| k as u64);
            follow(&ops, |k| k as u32);
            follow(&ops, |k| k as u8);
            follow(&ops, Opaque);
        }
    }

    /// Small integer keys keep a table dense; a key at the bound turns it hashed at once, with
    /// its entries; a negative key never enters a dense table. The bound keeps the array within
    /// 64 KiB.
    #[test]
    fn a_table_is_dense_while_its_keys_are_small() {
        let gauge = StateGauge::default();
        let mut table: KeyTable<u32, u64> = KeyTable::default();
        for key in 0..100 {
            *table.slot(&key, &gauge, || 0) += 1;
        }
        let limit = dense_limit::<u32, u64>() as u32;
        *table.slot(&(limit - 1), &gauge, || 0) += 1;
        assert!(table.is_dense());
        *table.slot(&limit, &gauge, || 0) += 1;
        assert!(!table.is_dense());
        assert_eq!(table.len(), 102);
        assert_eq!(table.get(&7), Some(&1));
        assert_eq!(gauge.live(), 102);

        let mut signed: KeyTable<i64, u64> = KeyTable::default();
        signed.insert(3, 1);
        assert!(signed.is_dense());
        signed.insert(-3, 1);
        assert!(!signed.is_dense());
        assert_eq!((signed.get(&3), signed.get(&-3)), (Some(&1), Some(&1)));

        let mut opaque: KeyTable<Opaque, u64> = KeyTable::default();
        opaque.insert(Opaque(3), 1);
        assert!(
            !opaque.is_dense(),
            "other keys are hashed from their first insert"
        );

        assert_eq!(dense_limit::<u32, u64>(), 65536 / 24);
        assert_eq!(dense_limit::<(), u64>(), 4096);
        assert_eq!(dense_index(&7u16), Some(7));
        assert_eq!(dense_index(&-1i32), None);
        assert_eq!(dense_index(&()), Some(0));
        assert_eq!(dense_index(&"7"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Entries wide enough that the array bound, not [`DENSE_LIMIT`], sets the dense range
        /// (240 keys for `(u64, [u64; 32])`): keys on both sides of it, arriving in any order,
        /// removed and re-inserted, and cleared, give a `BTreeMap`'s entries; a dense table
        /// iterates in key order and turns hashed exactly at the first key at the bound.
        #[test]
        fn wide_entries_agree_with_a_map_across_the_array_bound(
            ops in prop::collection::vec((0u64..300, 0u8..4), 0..300),
        ) {
            let limit = dense_limit::<u64, [u64; 32]>();
            prop_assert_eq!(limit, 65536 / 272);
            let gauge = StateGauge::default();
            let mut table: KeyTable<u64, [u64; 32]> = KeyTable::default();
            let mut model: BTreeMap<u64, [u64; 32]> = BTreeMap::new();
            let mut crossed = false;
            for (key, op) in ops {
                match op {
                    0 | 1 => {
                        table.slot(&key, &gauge, || [0; 32])[(key % 32) as usize] += 1;
                        model.entry(key).or_insert([0; 32])[(key % 32) as usize] += 1;
                        crossed |= key >= limit;
                    }
                    2 => prop_assert_eq!(table.remove(&key), model.remove(&key)),
                    _ => {
                        prop_assert_eq!(table.get_mut(&key).copied(), model.get(&key).copied());
                        prop_assert_eq!(table.dense_get_mut(&key).is_some(),
                            table.is_dense() && model.contains_key(&key));
                    }
                }
                prop_assert_eq!(table.is_dense(), !crossed);
                let entries: Vec<(u64, [u64; 32])> = table.iter().map(|(k, v)| (*k, *v)).collect();
                let mut sorted = entries.clone();
                sorted.sort();
                if table.is_dense() {
                    prop_assert_eq!(&entries, &sorted, "a dense table iterates in key order");
                }
                let expected: Vec<(u64, [u64; 32])> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(sorted, expected);
                prop_assert_eq!(table.len(), model.len());
            }
            // A restore inserts entries sorted by key, into a fresh table that then grows.
            let mut restored: KeyTable<u64, [u64; 32]> = KeyTable::default();
            for (k, v) in &model {
                restored.insert(*k, *v);
            }
            restored.insert(10_000, [1; 32]);
            model.insert(10_000, [1; 32]);
            prop_assert!(!restored.is_dense());
            let mut back: Vec<(u64, [u64; 32])> = restored.iter().map(|(k, v)| (*k, *v)).collect();
            back.sort();
            prop_assert_eq!(back, model.into_iter().collect::<Vec<_>>());
        }
    }
}
