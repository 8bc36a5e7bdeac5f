//! The per-window key table: one hash lookup per record, and a key clone only when a key is new.
//!
//! `hashbrown::HashMap::entry` takes the key by value, which would clone (and for text keys
//! allocate) on every record that contributes to more than one window. This table looks keys
//! up by reference and clones only on insertion. It uses hashbrown's default hasher, the same
//! map a hand-written baseline would use.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::fixed::StateGauge;

/// A hash map from keys to slots, looked up by reference.
pub(crate) struct KeyTable<K, V> {
    table: HashTable<(K, V)>,
    hasher: DefaultHashBuilder,
}

impl<K, V> Default for KeyTable<K, V> {
    fn default() -> Self {
        KeyTable {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<K: Hash + Eq, V> KeyTable<K, V> {
    /// The hash this table files `key` under.
    #[inline]
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.get_hashed_mut(self.hasher.hash_one(key), key)
    }

    /// [`KeyTable::get_mut`] with the key's hash (from [`KeyTable::hash`]) already computed:
    /// a hot loop hashes a run of keys first and probes after, so that the processor overlaps
    /// the probes' cache misses.
    #[inline]
    pub(crate) fn get_hashed_mut(&mut self, hash: u64, key: &K) -> Option<&mut V> {
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`'s entry, if any, and returns its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        match self.table.find_entry(hash, |(k, _)| k == key) {
            Ok(entry) => Some(entry.remove().0 .1),
            Err(_) => None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Inserts `key`, which must be absent.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        self.table
            .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
    }

    /// Removes every entry, keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.table.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// How many entries the table holds without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

impl<K: Hash + Eq + Clone, V> KeyTable<K, V> {
    /// The slot of `key`, inserted (and counted on `gauge`) with `init` if absent.
    #[inline]
    pub(crate) fn slot(&mut self, key: &K, gauge: &StateGauge, init: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(key);
        self.slot_hashed(hash, key, gauge, init)
    }

    /// The slot of `key`, inserted with `init` if absent (for tables whose entries are not
    /// what a gauge counts).
    pub(crate) fn slot_uncounted(&mut self, key: &K, init: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(key);
        self.entry_hashed(hash, key, init).0
    }

    /// [`KeyTable::slot`] with the key's hash (from [`KeyTable::hash`]) already computed.
    #[inline]
    pub(crate) fn slot_hashed(
        &mut self,
        hash: u64,
        key: &K,
        gauge: &StateGauge,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        let (slot, inserted) = self.entry_hashed(hash, key, init);
        if inserted {
            gauge.add(1);
        }
        slot
    }

    /// The slot of `key` (of hash `hash`), inserted with `init` if absent, and whether it was.
    #[inline]
    fn entry_hashed(&mut self, hash: u64, key: &K, init: impl FnOnce() -> V) -> (&mut V, bool) {
        let hasher = &self.hasher;
        let eq = |(k, _): &(K, V)| k == key;
        match self.table.entry(hash, eq, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(entry) => (&mut entry.into_mut().1, false),
            Entry::Vacant(entry) => (&mut entry.insert((key.clone(), init())).into_mut().1, true),
        }
    }
}
