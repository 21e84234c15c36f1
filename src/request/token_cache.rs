//! Per-worker cache of verified tokens so a repeated token costs no signature check.
//!
//! One cache per route (root context) per worker: a token valid for one route's rules may not
//! be valid for another's. Keys are the full token bytes (compared in full on every hit, so a
//! hash collision can never return another token's entry); only tokens that passed every check
//! are inserted, so callers cannot fill it with forged tokens. Bounded by entry count and by the
//! bytes entries really hold (the token, everything the caller says its value holds, and a
//! fixed overhead), so one token's many large mapped claims count in full; an entry larger than
//! the per-entry cap is not kept. Entries die at their expiry and can be dropped when their
//! signing key leaves the JWKS.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Default maximum number of cached tokens per route per worker.
pub const DEFAULT_MAX_ENTRIES: usize = 2048;
/// Default maximum bytes held per route per worker (tokens, their values, overheads). A wasm
/// instance's memory never shrinks, so this is memory a worker keeps for good, once per route:
/// 4 MiB holds some 400 to 1 000 typical entries (a 1–2 KiB token, its `Bearer` copy, the
/// claims header, a few mapped claims: 4–10 KiB), and a miss costs one signature check.
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Default maximum bytes of one entry: larger ones are not cached (their requests are served
/// all the same). 1/32 of the budget: a 32 KiB token with its copy, claims header and a few
/// mapped claims fits; 64 claims of 4 KiB (256 KiB) do not, and the cache always has room for
/// at least 32 entries.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = DEFAULT_MAX_BYTES / 32;
/// What an entry costs beyond the token and its value's own bytes: the map's slot (with the
/// slack of a table that grows by doubling), the key's and the value's allocations and their
/// allocator headers.
pub const ENTRY_OVERHEAD: usize = 256;

struct Slot<V> {
    value: V,
    /// Seconds since the epoch after which the entry is dead.
    expires_at: u64,
    /// Logical clock of the last hit, for least-recently-used eviction.
    last_used: u64,
    /// Bytes this entry holds: token, value, [`ENTRY_OVERHEAD`].
    cost: usize,
}

/// A bounded map from token bytes to what was derived from verifying them.
pub struct TokenCache<V> {
    map: HashMap<Box<[u8]>, Slot<V>, BuildHasherDefault<WordHasher>>,
    max_entries: usize,
    max_bytes: usize,
    max_entry_bytes: usize,
    /// Sum of the entries' costs.
    bytes: usize,
    clock: u64,
}

impl<V> TokenCache<V> {
    /// A cache of at most `max_entries` entries holding at most `max_bytes` together and
    /// `max_entry_bytes` each (capped at `max_bytes`).
    pub fn new(max_entries: usize, max_bytes: usize, max_entry_bytes: usize) -> Self {
        TokenCache {
            map: HashMap::default(),
            max_entries: max_entries.max(1),
            max_bytes,
            max_entry_bytes: max_entry_bytes.min(max_bytes),
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

    /// Caches `value` for `token` until `expires_at` (seconds); `value_bytes` is what `value`
    /// holds on the heap (strings, vectors). A full cache first drops its expired entries, then
    /// its least recently used ones. An entry costing more than the per-entry cap is not kept;
    /// whether it was is the answer.
    pub fn insert(
        &mut self,
        token: &[u8],
        value: V,
        value_bytes: usize,
        expires_at: u64,
        now: u64,
    ) -> bool {
        let cost = token
            .len()
            .saturating_add(value_bytes)
            .saturating_add(ENTRY_OVERHEAD);
        if expires_at <= now || cost > self.max_entry_bytes {
            return false;
        }
        self.remove(token);
        if !self.has_room(self.map.len(), self.bytes, cost) {
            self.make_room(cost, now);
        }
        self.clock += 1;
        self.bytes += cost;
        self.map.insert(
            token.into(),
            Slot {
                value,
                expires_at,
                last_used: self.clock,
                cost,
            },
        );
        true
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
        self.recount();
        if self.has_room(self.map.len(), self.bytes, len) {
            return;
        }
        let max_entries = self.max_entries - (self.max_entries / 8).max(1);
        let max_bytes = self.max_bytes.saturating_sub((self.max_bytes / 8).max(len));
        let mut by_age: Vec<(u64, usize)> = self
            .map
            .values()
            .map(|slot| (slot.last_used, slot.cost))
            .collect();
        by_age.sort_unstable();
        let (mut entries, mut bytes) = (self.map.len(), self.bytes);
        let mut cutoff = None;
        for (last_used, cost) in by_age {
            if entries <= max_entries && bytes <= max_bytes {
                break;
            }
            entries -= 1;
            bytes = bytes.saturating_sub(cost);
            cutoff = Some(last_used);
        }
        if let Some(cutoff) = cutoff {
            self.map.retain(|_, slot| slot.last_used > cutoff);
            self.recount();
        }
    }

    /// Keeps only entries for which `keep` is true (e.g. whose key is still in the JWKS).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.map.retain(|_, slot| keep(&slot.value));
        self.recount();
    }

    fn recount(&mut self) {
        self.bytes = self.map.values().map(|slot| slot.cost).sum();
    }

    /// Every live entry (token, value), for tests that account for them on their own.
    #[cfg(test)]
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.map.iter().map(|(token, slot)| (&**token, &slot.value))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn remove(&mut self, token: &[u8]) {
        if let Some(slot) = self.map.remove(token) {
            self.bytes = self.bytes.saturating_sub(slot.cost);
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
        let mut c = TokenCache::new(4, 1024, 1024);
        c.insert(b"tok", 7, 0, 100, 10);
        assert_eq!(c.get(b"tok", 99), Some(&7));
        assert_eq!(c.get(b"tok", 100), None);
        assert!(c.is_empty());
    }

    #[test]
    fn never_matches_a_different_token() {
        let mut c = TokenCache::new(4, 1024, 1024);
        c.insert(b"aaaaaaaa", 1, 0, 100, 0);
        assert_eq!(c.get(b"aaaaaaab", 1), None);
        assert_eq!(c.get(b"aaaaaaa", 1), None);
    }

    #[test]
    fn does_not_cache_already_expired_tokens() {
        let mut c = TokenCache::new(4, 1024, 1024);
        c.insert(b"tok", 1, 0, 10, 10);
        assert!(c.is_empty());
    }

    #[test]
    fn evicts_least_recently_used_when_full() {
        let mut c = TokenCache::new(2, 1024, 1024);
        c.insert(b"a", 1, 0, 100, 0);
        c.insert(b"b", 2, 0, 100, 0);
        assert_eq!(c.get(b"a", 1), Some(&1));
        c.insert(b"c", 3, 0, 100, 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b"b", 1), None);
        assert_eq!(c.get(b"a", 1), Some(&1));
        assert_eq!(c.get(b"c", 1), Some(&3));
    }

    #[test]
    fn evicts_expired_entries_before_live_ones() {
        let mut c = TokenCache::new(2, 1024, 1024);
        c.insert(b"old", 1, 0, 5, 0);
        c.insert(b"live", 2, 0, 100, 0);
        c.insert(b"new", 3, 0, 100, 6);
        assert_eq!(c.get(b"live", 7), Some(&2));
        assert_eq!(c.get(b"new", 7), Some(&3));
    }

    #[test]
    fn a_full_cache_drops_its_oldest_eighth_at_once() {
        let mut c = TokenCache::new(16, 1 << 20, 1 << 20);
        for i in 0..16u8 {
            c.insert(&[b'a', i], i, 0, 100, 0);
        }
        // Touch the two oldest: the next oldest two go instead.
        assert_eq!(c.get(&[b'a', 0], 1), Some(&0));
        assert_eq!(c.get(&[b'a', 1], 1), Some(&1));
        c.insert(b"new", 99, 0, 100, 1);
        assert_eq!(c.len(), 15);
        assert_eq!(c.get(&[b'a', 2], 1), None);
        assert_eq!(c.get(&[b'a', 3], 1), None);
        assert_eq!(c.get(&[b'a', 0], 1), Some(&0));
        assert_eq!(c.get(&[b'a', 4], 1), Some(&4));
        assert_eq!(c.get(b"new", 1), Some(&99));
        // Room is left: the next insert drops nothing.
        c.insert(b"next", 100, 0, 100, 1);
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn stays_within_byte_bound() {
        // Room for two 5-byte tokens with their overhead, not three.
        let mut c = TokenCache::new(100, 2 * (5 + ENTRY_OVERHEAD) + 10, 600);
        c.insert(b"12345", 1, 0, 100, 0);
        c.insert(b"67890", 2, 0, 100, 0);
        c.insert(b"abcde", 3, 0, 100, 0);
        assert_eq!(c.len(), 2);
        assert!(!c.insert(b"this token is too large", 4, 400, 100, 0));
        assert_eq!(c.get(b"this token is too large", 1), None);
    }

    #[test]
    fn what_a_value_holds_counts_against_the_byte_bound() {
        // Tiny tokens whose values hold 10 KiB each: the budget, not the token bytes, decides.
        let budget = 64 * 1024;
        let mut c = TokenCache::new(1000, budget, 16 * 1024);
        let mut held = std::collections::HashMap::new();
        for i in 0..100u32 {
            let token = i.to_be_bytes();
            let value = vec![b'v'; 10 * 1024];
            held.insert(token, value.len());
            assert!(c.insert(&token, value.clone(), value.len(), 100, 0));
            // Accounted here, from what the entries hold, not by the cache's own counter.
            let total: usize = c
                .entries()
                .map(|(token, value)| token.len() + value.len() + ENTRY_OVERHEAD)
                .sum();
            assert!(total <= budget, "{total} bytes held after {i} inserts");
        }
        assert!(c.len() >= 4, "the cache still caches: {}", c.len());
        assert!(c.len() <= 6);
    }

    #[test]
    fn an_entry_over_the_per_entry_cap_is_not_kept() {
        let mut c = TokenCache::new(10, 1 << 20, 1024);
        assert!(!c.insert(b"tok", 1, 1024, 100, 0));
        assert!(c.is_empty());
        assert!(c.insert(b"tok", 1, 1024 - 3 - ENTRY_OVERHEAD, 100, 0));
        assert_eq!(c.get(b"tok", 1), Some(&1));
    }

    #[test]
    fn retain_drops_entries_of_removed_keys() {
        let mut c = TokenCache::new(4, 1024, 1024);
        c.insert(b"a", "kid-1", 0, 100, 0);
        c.insert(b"b", "kid-2", 0, 100, 0);
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
