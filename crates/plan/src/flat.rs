//! Sorted-vector maps and sets for a service's real servers.
//!
//! A service has a handful of reals, and a large table has many services: at 100,000 services
//! × 4 reals, a `BTreeMap` per service spends a whole node (room for eleven entries) on four,
//! about 560 bytes of the 800 a service costs, once in the configuration, once in the kept
//! table and once in the ownership record. A sorted vector holds the same entries in the same
//! order in the bytes they need, finds one by binary search, and iterates in key order, so
//! the planner's output does not change. The API is the part of `BTreeMap`'s that lvsd uses,
//! with the same meaning (a later duplicate in `collect` wins, `insert` returns the old value).
//!
//! An insertion in the middle moves the entries after it, which is cheap for the tens of reals
//! a service has; building a large one goes through `collect`, which sorts once.

use std::fmt;

/// A map from `K` to `V` kept as a vector sorted by key (see the module's documentation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlatMap<K, V> {
    entries: Vec<(K, V)>,
}

/// Iterator over a [`FlatMap`]'s entries in key order.
pub type Iter<'a, K, V> =
    std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

/// Iterator over a [`FlatMap`]'s entries in key order, values mutable.
pub type IterMut<'a, K, V> =
    std::iter::Map<std::slice::IterMut<'a, (K, V)>, fn(&'a mut (K, V)) -> (&'a K, &'a mut V)>;

impl<K, V> Default for FlatMap<K, V> {
    fn default() -> Self {
        FlatMap::new()
    }
}

impl<K, V> FlatMap<K, V> {
    /// An empty map; allocates nothing.
    pub const fn new() -> Self {
        FlatMap {
            entries: Vec::new(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Entries in key order, values mutable (keys are not: that would break the order).
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in key order, mutable.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `f` says yes to, in order.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| f(k, v));
    }
}

impl<K: Ord, V> FlatMap<K, V> {
    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// The value of `key`, if there is one.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, mutable, if there is one.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced, as `BTreeMap::insert` does.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Takes `key`'s entry out; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for FlatMap<K, V> {
    /// Sorts once; of two entries with the same key the later wins, as in `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = FlatMap {
            entries: iter.into_iter().collect(),
        };
        map.restore_order();
        map.entries.shrink_to_fit();
        map
    }
}

impl<K: Ord, V> FlatMap<K, V> {
    /// Sorts the entries by key after unsorted pushes; of equal keys the last pushed stays.
    fn restore_order(&mut self) {
        if self.entries.is_sorted_by(|a, b| a.0 < b.0) {
            return;
        }
        // Stable: equal keys stay in their order, so the last of them is the later one.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(K, V)> = Vec::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => kept.push(e),
            }
        }
        self.entries = kept;
    }
}

impl<K: Ord, V> Extend<(K, V)> for FlatMap<K, V> {
    /// Appends, then sorts once: adding many entries does not move the others once each.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.entries.extend(iter);
        self.restore_order();
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for FlatMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K, V> IntoIterator for FlatMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a FlatMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, K, V> IntoIterator for &'a mut FlatMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for FlatMap<K, V> {
    /// As a `BTreeMap` prints, so logs and test messages read the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A set of `K` kept as a sorted vector (see the module's documentation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlatSet<K> {
    keys: Vec<K>,
}

impl<K> Default for FlatSet<K> {
    fn default() -> Self {
        FlatSet::new()
    }
}

impl<K> FlatSet<K> {
    /// An empty set; allocates nothing.
    pub const fn new() -> Self {
        FlatSet { keys: Vec::new() }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Members in order.
    pub fn iter(&self) -> std::slice::Iter<'_, K> {
        self.keys.iter()
    }

    /// Keeps the members `f` says yes to.
    pub fn retain(&mut self, f: impl FnMut(&K) -> bool) {
        self.keys.retain(f);
    }
}

impl<K: Ord> FlatSet<K> {
    /// Whether `key` is a member.
    pub fn contains(&self, key: &K) -> bool {
        self.keys.binary_search(key).is_ok()
    }

    /// Adds `key`; says whether it was new, as `BTreeSet::insert` does.
    pub fn insert(&mut self, key: K) -> bool {
        match self.keys.binary_search(&key) {
            Ok(_) => false,
            Err(i) => {
                self.keys.insert(i, key);
                true
            }
        }
    }

    /// Takes `key` out; says whether it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.keys.binary_search(key) {
            Ok(i) => {
                self.keys.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

impl<K: Ord> FromIterator<K> for FlatSet<K> {
    /// Sorts once and drops duplicates.
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut set = FlatSet {
            keys: iter.into_iter().collect(),
        };
        set.restore_order();
        set.keys.shrink_to_fit();
        set
    }
}

impl<K: Ord> FlatSet<K> {
    /// Sorts the members after unsorted pushes and drops duplicates.
    fn restore_order(&mut self) {
        if !self.keys.is_sorted_by(|a, b| a < b) {
            self.keys.sort();
            self.keys.dedup();
        }
    }
}

impl<K: Ord> Extend<K> for FlatSet<K> {
    /// Appends, then sorts once.
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        self.keys.extend(iter);
        self.restore_order();
    }
}

impl<K: Ord, const N: usize> From<[K; N]> for FlatSet<K> {
    fn from(keys: [K; N]) -> Self {
        keys.into_iter().collect()
    }
}

impl<K> IntoIterator for FlatSet<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.into_iter()
    }
}

impl<'a, K> IntoIterator for &'a FlatSet<K> {
    type Item = &'a K;
    type IntoIter = std::slice::Iter<'a, K>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter()
    }
}

impl<K: fmt::Debug> fmt::Debug for FlatSet<K> {
    /// As a `BTreeSet` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone)]
    enum MapOp {
        Insert(u8, u16),
        Remove(u8),
        Retain(u8),
        Extend(Vec<(u8, u16)>),
    }

    fn map_op() -> impl Strategy<Value = MapOp> {
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(k, v)| MapOp::Insert(k % 32, v)),
            any::<u8>().prop_map(|k| MapOp::Remove(k % 32)),
            any::<u8>().prop_map(|k| MapOp::Retain(k % 32)),
            proptest::collection::vec((0u8..32, any::<u16>()), 0..6).prop_map(MapOp::Extend),
        ]
    }

    proptest! {
        /// Whatever is collected, inserted, removed and retained, the map says what a
        /// `BTreeMap` given the same says, in the same order, and prints the same.
        #[test]
        fn a_flat_map_behaves_as_a_btree_map(
            start in proptest::collection::vec((0u8..32, any::<u16>()), 0..40),
            ops in proptest::collection::vec(map_op(), 0..60),
        ) {
            let mut flat: FlatMap<u8, u16> = start.iter().copied().collect();
            let mut tree: BTreeMap<u8, u16> = start.iter().copied().collect();
            for op in ops {
                match op {
                    MapOp::Insert(k, v) => prop_assert_eq!(flat.insert(k, v), tree.insert(k, v)),
                    MapOp::Remove(k) => prop_assert_eq!(flat.remove(&k), tree.remove(&k)),
                    MapOp::Extend(more) => {
                        flat.extend(more.iter().copied());
                        tree.extend(more.iter().copied());
                    }
                    MapOp::Retain(m) => {
                        flat.retain(|k, _| k % (m % 5 + 1) != 0);
                        tree.retain(|k, _| k % (m % 5 + 1) != 0);
                    }
                }
                prop_assert_eq!(flat.len(), tree.len());
                prop_assert!(flat.iter().eq(tree.iter()));
                for k in 0..32u8 {
                    prop_assert_eq!(flat.get(&k), tree.get(&k));
                    prop_assert_eq!(flat.contains_key(&k), tree.contains_key(&k));
                }
            }
            prop_assert!(flat.keys().eq(tree.keys()));
            prop_assert!(flat.values().eq(tree.values()));
            prop_assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
            prop_assert!(flat.clone().into_iter().eq(tree.clone().into_iter()));
            for v in flat.values_mut() { *v = v.wrapping_add(1); }
            for v in tree.values_mut() { *v = v.wrapping_add(1); }
            prop_assert!(flat.iter().eq(tree.iter()));
        }

        /// The same for the set.
        #[test]
        fn a_flat_set_behaves_as_a_btree_set(
            start in proptest::collection::vec(0u8..32, 0..40),
            ops in proptest::collection::vec((0u8..3, 0u8..32), 0..60),
        ) {
            let mut flat: FlatSet<u8> = start.iter().copied().collect();
            let mut tree: BTreeSet<u8> = start.iter().copied().collect();
            for (what, k) in ops {
                if what == 2 {
                    flat.extend([k, k / 2, k]);
                    tree.extend([k, k / 2, k]);
                } else if what == 1 {
                    prop_assert_eq!(flat.insert(k), tree.insert(k));
                } else {
                    prop_assert_eq!(flat.remove(&k), tree.remove(&k));
                }
                prop_assert!(flat.iter().eq(tree.iter()));
                for k in 0..32u8 {
                    prop_assert_eq!(flat.contains(&k), tree.contains(&k));
                }
            }
            prop_assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
        }
    }

    #[test]
    fn a_later_duplicate_wins_when_collected_as_in_a_btree_map() {
        let flat: FlatMap<u8, &str> = [(2, "a"), (1, "b"), (2, "c")].into();
        let tree: BTreeMap<u8, &str> = [(2, "a"), (1, "b"), (2, "c")].into();
        assert!(flat.iter().eq(tree.iter()));
        assert_eq!(flat.get(&2), Some(&"c"));
    }
}
