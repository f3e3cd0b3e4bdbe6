//! The idempotency keys' index, kept in the history writer's memory.
//!
//! On SQLite, the keys are an append-only table with no index on `key`: an
//! index on random strings costs a random page per key per commit, most of
//! what a batch wrote. The history writer is the only one that writes keys,
//! so it keeps this index instead: a key's hash to the id of its row, loaded
//! from the table at start and updated as it appends.
//!
//! The index is a hint the writer always checks: a hit is confirmed by
//! reading the row it names (a hash can collide, a row can have been pruned),
//! and only then is the key a repeat; a hit that does not hold falls back to
//! a scan of the table. What must never happen is a miss for a key the table
//! holds, so every row appended is indexed before its transaction commits,
//! and a transaction rolled back takes its entries back with it.

use std::collections::HashMap;
use std::hash::BuildHasher;

/// Key hash to row id, with the entries of the open transaction journaled.
pub struct KeyIndex<S = std::hash::RandomState> {
    /// Seeded per process, so nobody can choose keys that collide.
    hasher: S,
    ids: HashMap<u64, i64>,
    /// (hash, what it named before) for each entry of the open transaction.
    journal: Vec<(u64, Option<i64>)>,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::with_hasher(std::hash::RandomState::new())
    }
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::new()
    }
}

impl<S: BuildHasher> KeyIndex<S> {
    pub fn with_hasher(hasher: S) -> KeyIndex<S> {
        KeyIndex {
            hasher,
            ids: HashMap::new(),
            journal: Vec::new(),
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The row that may hold `key`. `None` means no row holds it.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.ids.get(&self.hash(key)).copied()
    }

    /// Records that row `id` holds `key`, as part of the open transaction.
    pub fn insert(&mut self, key: &str, id: i64) {
        let hash = self.hash(key);
        let before = self.ids.insert(hash, id);
        self.journal.push((hash, before));
    }

    /// Loads a row committed before (at start): not journaled.
    pub fn load(&mut self, key: &str, id: i64) {
        let hash = self.hash(key);
        // Rows come in id order; a collision keeps the newer row, and the
        // older one is still found by the scan a failed check falls back to.
        self.ids.insert(hash, id);
    }

    /// The open transaction committed: its entries stand.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// The open transaction rolled back: its entries are taken back, newest
    /// first, so each hash names what it named before.
    pub fn rollback(&mut self) {
        while let Some((hash, before)) = self.journal.pop() {
            match before {
                Some(id) => self.ids.insert(hash, id),
                None => self.ids.remove(&hash),
            };
        }
    }

    /// Forgets entries naming rows older than `oldest` (the oldest row the
    /// table still has; `None`: it is empty), which pruning deleted.
    pub fn forget_before(&mut self, oldest: Option<i64>) {
        match oldest {
            Some(oldest) => self.ids.retain(|_, id| *id >= oldest),
            None => self.ids.clear(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Every key hashes alike: with it, every lookup is a collision.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Colliding;

#[cfg(test)]
impl std::hash::Hasher for Colliding {
    fn finish(&self) -> u64 {
        7
    }
    fn write(&mut self, _: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasherDefault;

    #[test]
    fn a_key_inserted_is_found_and_one_never_inserted_is_not() {
        let mut index = KeyIndex::new();
        index.insert("slack:a", 1);
        index.commit();
        assert_eq!(index.get("slack:a"), Some(1));
        assert_eq!(index.get("slack:b"), None);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_rollback_takes_back_only_the_open_transaction() {
        let mut index = KeyIndex::new();
        index.insert("a", 1);
        index.commit();
        index.insert("b", 2);
        index.insert("c", 3);
        index.rollback();
        assert_eq!(index.get("a"), Some(1));
        assert_eq!(index.get("b"), None);
        assert_eq!(index.get("c"), None);
        // Nothing left journaled: a second rollback changes nothing.
        index.rollback();
        assert_eq!(index.get("a"), Some(1));
    }

    #[test]
    fn a_rollback_of_a_colliding_entry_restores_what_the_hash_named() {
        let mut index = KeyIndex::with_hasher(BuildHasherDefault::<Colliding>::default());
        index.load("old", 4);
        index.insert("new", 9);
        assert_eq!(index.get("old"), Some(9), "one hash, the newest row");
        index.rollback();
        assert_eq!(index.get("old"), Some(4));
        assert_eq!(index.get("anything"), Some(4), "every key collides here");
    }

    #[test]
    fn forgetting_drops_rows_before_the_oldest_and_all_when_empty() {
        let mut index = KeyIndex::new();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            index.load(key, i as i64 + 1);
        }
        index.forget_before(Some(3));
        assert_eq!(index.get("a"), None);
        assert_eq!(index.get("b"), None);
        assert_eq!(index.get("c"), Some(3));
        assert_eq!(index.get("d"), Some(4));
        index.forget_before(None);
        assert!(index.is_empty());
    }
}
