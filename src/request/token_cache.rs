//! Per-worker cache of verified tokens so a repeated token costs no signature check.
//!
//! One cache per route (root context) per worker: a token valid for one route's rules may not
//! be valid for another's. Keys are the full token bytes (compared in full on every hit, so a
//! hash collision can never return another token's entry); only tokens that passed every check
//! are inserted, so callers cannot fill it with forged tokens. Bounded by entry count and bytes;
//! entries die at their expiry and can be dropped when their signing key leaves the JWKS.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Default maximum number of cached tokens per route per worker.
pub const DEFAULT_MAX_ENTRIES: usize = 2048;
/// Default maximum bytes of token text held per route per worker.
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

struct Slot<V> {
    value: V,
    /// Seconds since the epoch after which the entry is dead.
    expires_at: u64,
    /// Logical clock of the last hit, for least-recently-used eviction.
    last_used: u64,
}

/// A bounded map from token bytes to what was derived from verifying them.
pub struct TokenCache<V> {
    map: HashMap<Box<[u8]>, Slot<V>, BuildHasherDefault<WordHasher>>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    clock: u64,
}

impl<V> TokenCache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        TokenCache {
            map: HashMap::default(),
            max_entries: max_entries.max(1),
            max_bytes,
            bytes: 0,
            clock: 0,
        }
    }

    /// The entry for `token` if it has not expired at `now` (seconds).
    pub fn get(&mut self, token: &[u8], now: u64) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        let expired = match self.map.get_mut(token) {
            None => return None,
            Some(slot) if slot.expires_at <= now => true,
            Some(slot) => {
                slot.last_used = clock;
                false
            }
        };
        if expired {
            self.remove(token);
            return None;
        }
        self.map.get(token).map(|slot| &slot.value)
    }

    /// Caches `value` for `token` until `expires_at` (seconds). A full cache first drops its
    /// expired entries, then its least recently used ones. A token larger than the byte bound is
    /// not kept.
    pub fn insert(&mut self, token: &[u8], value: V, expires_at: u64, now: u64) {
        if expires_at <= now || token.len() > self.max_bytes {
            return;
        }
        self.remove(token);
        if !self.has_room(self.map.len(), self.bytes, token.len()) {
            self.make_room(token.len(), now);
        }
        self.clock += 1;
        self.bytes += token.len();
        self.map.insert(
            token.into(),
            Slot {
                value,
                expires_at,
                last_used: self.clock,
            },
        );
    }

    fn has_room(&self, entries: usize, bytes: usize, len: usize) -> bool {
        entries < self.max_entries && bytes.saturating_add(len) <= self.max_bytes
    }

    /// Drops expired entries and, if that is not enough, the least recently used eighth of
    /// the cache (at least what `len` more bytes need): a full cache pays one pass over its
    /// entries per many inserts, not one per insert (a new token on every request would
    /// otherwise scan every entry every time).
    fn make_room(&mut self, len: usize, now: u64) {
        self.map.retain(|_, slot| slot.expires_at > now);
        self.bytes = self.map.keys().map(|k| k.len()).sum();
        if self.has_room(self.map.len(), self.bytes, len) {
            return;
        }
        let max_entries = self.max_entries - (self.max_entries / 8).max(1);
        let max_bytes = self.max_bytes.saturating_sub((self.max_bytes / 8).max(len));
        let mut by_age: Vec<(u64, usize)> = self
            .map
            .iter()
            .map(|(key, slot)| (slot.last_used, key.len()))
            .collect();
        by_age.sort_unstable();
        let (mut entries, mut bytes) = (self.map.len(), self.bytes);
        let mut cutoff = None;
        for (last_used, key_len) in by_age {
            if entries <= max_entries && bytes <= max_bytes {
                break;
            }
            entries -= 1;
            bytes = bytes.saturating_sub(key_len);
            cutoff = Some(last_used);
        }
        if let Some(cutoff) = cutoff {
            self.map.retain(|_, slot| slot.last_used > cutoff);
            self.bytes = self.map.keys().map(|k| k.len()).sum();
        }
    }

    /// Keeps only entries for which `keep` is true (e.g. whose key is still in the JWKS).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.map.retain(|_, slot| keep(&slot.value));
        self.bytes = self.map.keys().map(|k| k.len()).sum();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn remove(&mut self, token: &[u8]) {
        if let Some((key, _)) = self.map.remove_entry(token) {
            self.bytes = self.bytes.saturating_sub(key.len());
        }
    }
}

/// A fast word-at-a-time hasher (FxHash's multiply-rotate). Flooding is not a concern: only
/// verified tokens are ever inserted, and every hit compares the full token.
#[derive(Default)]
pub struct WordHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        if let Some(t) = tail.get_mut(..rest.len()) {
            t.copy_from_slice(rest);
        }
        self.add(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 56);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_cached_value_until_expiry() {
        let mut c = TokenCache::new(4, 1024);
        c.insert(b"tok", 7, 100, 10);
        assert_eq!(c.get(b"tok", 99), Some(&7));
        assert_eq!(c.get(b"tok", 100), None);
        assert!(c.is_empty());
    }

    #[test]
    fn never_matches_a_different_token() {
        let mut c = TokenCache::new(4, 1024);
        c.insert(b"aaaaaaaa", 1, 100, 0);
        assert_eq!(c.get(b"aaaaaaab", 1), None);
        assert_eq!(c.get(b"aaaaaaa", 1), None);
    }

    #[test]
    fn does_not_cache_already_expired_tokens() {
        let mut c = TokenCache::new(4, 1024);
        c.insert(b"tok", 1, 10, 10);
        assert!(c.is_empty());
    }

    #[test]
    fn evicts_least_recently_used_when_full() {
        let mut c = TokenCache::new(2, 1024);
        c.insert(b"a", 1, 100, 0);
        c.insert(b"b", 2, 100, 0);
        assert_eq!(c.get(b"a", 1), Some(&1));
        c.insert(b"c", 3, 100, 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b"b", 1), None);
        assert_eq!(c.get(b"a", 1), Some(&1));
        assert_eq!(c.get(b"c", 1), Some(&3));
    }

    #[test]
    fn evicts_expired_entries_before_live_ones() {
        let mut c = TokenCache::new(2, 1024);
        c.insert(b"old", 1, 5, 0);
        c.insert(b"live", 2, 100, 0);
        c.insert(b"new", 3, 100, 6);
        assert_eq!(c.get(b"live", 7), Some(&2));
        assert_eq!(c.get(b"new", 7), Some(&3));
    }

    #[test]
    fn a_full_cache_drops_its_oldest_eighth_at_once() {
        let mut c = TokenCache::new(16, 1 << 20);
        for i in 0..16u8 {
            c.insert(&[b'a', i], i, 100, 0);
        }
        // Touch the two oldest: the next oldest two go instead.
        assert_eq!(c.get(&[b'a', 0], 1), Some(&0));
        assert_eq!(c.get(&[b'a', 1], 1), Some(&1));
        c.insert(b"new", 99, 100, 1);
        assert_eq!(c.len(), 15);
        assert_eq!(c.get(&[b'a', 2], 1), None);
        assert_eq!(c.get(&[b'a', 3], 1), None);
        assert_eq!(c.get(&[b'a', 0], 1), Some(&0));
        assert_eq!(c.get(&[b'a', 4], 1), Some(&4));
        assert_eq!(c.get(b"new", 1), Some(&99));
        // Room is left: the next insert drops nothing.
        c.insert(b"next", 100, 100, 1);
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn stays_within_byte_bound() {
        let mut c = TokenCache::new(100, 10);
        c.insert(b"12345", 1, 100, 0);
        c.insert(b"67890", 2, 100, 0);
        c.insert(b"abcde", 3, 100, 0);
        assert_eq!(c.len(), 2);
        c.insert(b"this token is too large", 4, 100, 0);
        assert_eq!(c.get(b"this token is too large", 1), None);
    }

    #[test]
    fn retain_drops_entries_of_removed_keys() {
        let mut c = TokenCache::new(4, 1024);
        c.insert(b"a", "kid-1", 100, 0);
        c.insert(b"b", "kid-2", 100, 0);
        c.retain(|kid| *kid != "kid-1");
        assert_eq!(c.get(b"a", 1), None);
        assert_eq!(c.get(b"b", 1), Some(&"kid-2"));
    }

    #[test]
    fn hasher_distinguishes_lengths_and_tails() {
        let h = |b: &[u8]| {
            let mut x = WordHasher::default();
            x.write(b);
            x.finish()
        };
        assert_ne!(h(b"abc"), h(b"abc\0"));
        assert_ne!(h(b"12345678a"), h(b"12345678b"));
    }
}
