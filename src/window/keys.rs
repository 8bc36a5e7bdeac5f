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
        let hash = self.hasher.hash_one(key);
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
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

    /// [`KeyTable::slot`] with the key's hash (from [`KeyTable::hash`]) already computed.
    #[inline]
    pub(crate) fn slot_hashed(
        &mut self,
        hash: u64,
        key: &K,
        gauge: &StateGauge,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        let hasher = &self.hasher;
        let eq = |(k, _): &(K, V)| k == key;
        match self.table.entry(hash, eq, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(entry) => &mut entry.into_mut().1,
            Entry::Vacant(entry) => {
                gauge.add(1);
                &mut entry.insert((key.clone(), init())).into_mut().1
            }
        }
    }
}
