//! shm_kv zones shared by every worker, as ngx_wasm_module keeps them: keys are found by the CRC32
//! of the whole key only (two keys with the same CRC32 are the same entry), CAS is strict, there is
//! no TTL, and a full zone evicts least-recently-used entries of the same slab size class first
//! (the default `eviction=slru`), then larger, then smaller ones.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Bytes an entry costs beyond its key and value (ngx_wa_shm_kv_node_t and slab rounding).
const NODE_OVERHEAD: usize = 80;
/// nginx page size: zone sizes must be multiples of it; larger allocations are whole pages.
const PAGE: usize = 4096;

/// Outcome of a set, mirroring the proxy-wasm statuses.
#[derive(Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Written,
    CasMismatch,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    cas: u32,
    footprint: usize,
    last_use: u64,
}

#[derive(Debug, Default)]
struct Zone {
    capacity: usize,
    used: usize,
    clock: u64,
    entries: HashMap<u32, Entry>,
}

/// All zones declared with `--shm-kv NAME=SIZE`.
#[derive(Debug, Default)]
pub struct Zones {
    zones: BTreeMap<String, Mutex<Zone>>,
}

/// Why a key could not be used: each traps in ngx_wasm_module.
#[derive(Debug, PartialEq, Eq)]
pub enum ZoneError {
    /// No zone matches the key's namespace and there is no default `*` zone.
    NoNamespace,
    /// The zone has no room even after evicting everything evictable.
    NoMemory,
}

impl Zones {
    /// Zones from `(name, size in bytes)`. Sizes must be page-aligned and at least 3 pages.
    pub fn new(decls: &[(String, usize)]) -> Result<Zones> {
        let mut zones = BTreeMap::new();
        for (name, size) in decls {
            if name.is_empty() {
                bail!("[wasm] invalid shm name \"{name}\"");
            }
            if *size < 3 * PAGE {
                bail!(
                    "[wasm] shm size of {size} bytes is too small, minimum required is {} bytes",
                    3 * PAGE
                );
            }
            if size % PAGE != 0 {
                bail!("[wasm] shm size of {size} bytes is not page-aligned, must be a multiple of {PAGE}");
            }
            let zone = Zone {
                capacity: *size,
                ..Zone::default()
            };
            if zones.insert(name.clone(), Mutex::new(zone)).is_some() {
                bail!("[wasm] \"{name}\" shm already defined");
            }
        }
        Ok(Zones { zones })
    }

    /// The zone a key goes to: `NAME/...` when zone NAME exists, else the default zone `*`.
    fn zone_for(&self, key: &[u8]) -> Result<&Mutex<Zone>, ZoneError> {
        if let Some(slash) = key.iter().position(|b| *b == b'/') {
            if slash > 0 {
                let ns = String::from_utf8_lossy(key.get(..slash).unwrap_or_default());
                if let Some(zone) = self.zones.get(ns.as_ref()) {
                    return Ok(zone);
                }
            }
        }
        self.zones.get("*").ok_or(ZoneError::NoNamespace)
    }

    /// `get_shared_data`: `Ok(None)` when absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, ZoneError> {
        let zone = self.zone_for(key)?;
        let mut zone = zone.lock().unwrap_or_else(|p| p.into_inner());
        zone.clock += 1;
        let now = zone.clock;
        Ok(zone.entries.get_mut(&crc32fast::hash(key)).map(|e| {
            e.last_use = now;
            (e.value.clone(), e.cas)
        }))
    }

    /// `set_shared_data`: `value == None` deletes. `cas` must equal the current cas (0 when absent).
    pub fn set(&self, key: &[u8], value: Option<&[u8]>, cas: u32) -> Result<SetOutcome, ZoneError> {
        let zone = self.zone_for(key)?;
        let mut zone = zone.lock().unwrap_or_else(|p| p.into_inner());
        zone.set(crc32fast::hash(key), key.len(), value, cas)
    }

    /// Number of entries per zone (for `/__status`).
    pub fn usage(&self) -> BTreeMap<String, (usize, usize, usize)> {
        self.zones
            .iter()
            .map(|(name, z)| {
                let z = z.lock().unwrap_or_else(|p| p.into_inner());
                (name.clone(), (z.entries.len(), z.used, z.capacity))
            })
            .collect()
    }
}

/// Slab size class of an allocation: powers of two up to half a page, whole pages above.
fn footprint(key_len: usize, value_len: usize) -> usize {
    let size = NODE_OVERHEAD + key_len + value_len;
    if size > PAGE / 2 {
        size.div_ceil(PAGE) * PAGE
    } else {
        size.next_power_of_two()
    }
}

fn size_class(footprint: usize) -> usize {
    if footprint > PAGE / 2 {
        usize::MAX
    } else {
        footprint
    }
}

impl Zone {
    fn set(
        &mut self,
        hash: u32,
        key_len: usize,
        value: Option<&[u8]>,
        cas: u32,
    ) -> Result<SetOutcome, ZoneError> {
        let current = self.entries.get(&hash).map(|e| e.cas).unwrap_or(0);
        if cas != current {
            return Ok(SetOutcome::CasMismatch);
        }
        self.clock += 1;
        let now = self.clock;
        let Some(value) = value else {
            if let Some(old) = self.entries.remove(&hash) {
                self.used -= old.footprint;
                return Ok(SetOutcome::Written);
            }
            // Deleting an absent key writes nothing: ngx_wasm_module reports a CAS mismatch.
            return Ok(SetOutcome::CasMismatch);
        };
        let need = footprint(key_len, value.len());
        let old = self.entries.remove(&hash);
        let old_footprint = old.as_ref().map(|e| e.footprint).unwrap_or(0);
        self.used -= old_footprint;
        if need > self.capacity {
            if let Some(old) = old {
                self.used += old.footprint;
                self.entries.insert(hash, old);
            }
            return Err(ZoneError::NoMemory);
        }
        while self.used + need > self.capacity {
            let Some(victim) = self.victim(size_class(need)) else {
                break;
            };
            if let Some(e) = self.entries.remove(&victim) {
                self.used -= e.footprint;
            }
        }
        if self.used + need > self.capacity {
            if let Some(old) = old {
                self.used += old.footprint;
                self.entries.insert(hash, old);
            }
            return Err(ZoneError::NoMemory);
        }
        let cas = old.map(|e| e.cas).unwrap_or(0).wrapping_add(1);
        self.used += need;
        self.entries.insert(
            hash,
            Entry {
                value: value.to_vec(),
                cas,
                footprint: need,
                last_use: now,
            },
        );
        Ok(SetOutcome::Written)
    }

    /// The least recently used entry of `class`, else of the next larger class, else smaller.
    fn victim(&self, class: usize) -> Option<u32> {
        let lru_of = |pred: &dyn Fn(usize) -> bool| {
            self.entries
                .iter()
                .filter(|(_, e)| pred(size_class(e.footprint)))
                .min_by_key(|(_, e)| (size_class(e.footprint), e.last_use))
                .map(|(h, _)| *h)
        };
        lru_of(&|c| c == class)
            .or_else(|| lru_of(&|c| c > class))
            .or_else(|| {
                self.entries
                    .iter()
                    .filter(|(_, e)| size_class(e.footprint) < class)
                    .max_by_key(|(_, e)| (size_class(e.footprint), u64::MAX - e.last_use))
                    .map(|(h, _)| *h)
            })
    }
}

/// Parses `4m`, `12m`, `64k`, `1g`, `65536` like nginx's `ngx_parse_size`.
pub fn parse_size(text: &str) -> Result<usize> {
    let text = text.trim();
    let (num, mult) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1024),
        Some((i, 'm' | 'M')) => (&text[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = num
        .parse()
        .with_context(|| format!("[wasm] invalid shm size \"{text}\""))?;
    n.checked_mul(mult).context("shm size overflows")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Zones {
        Zones::new(&[("z".to_string(), 3 * PAGE)]).unwrap()
    }

    #[test]
    fn cas_is_strict() {
        let z = zones();
        assert_eq!(z.set(b"z/a", Some(b"1"), 5), Ok(SetOutcome::CasMismatch));
        assert_eq!(z.set(b"z/a", Some(b"1"), 0), Ok(SetOutcome::Written));
        assert_eq!(z.set(b"z/a", Some(b"2"), 0), Ok(SetOutcome::CasMismatch));
        let (v, cas) = z.get(b"z/a").unwrap().unwrap();
        assert_eq!((v.as_slice(), cas), (&b"1"[..], 1));
        assert_eq!(z.set(b"z/a", Some(b"2"), 1), Ok(SetOutcome::Written));
        assert_eq!(z.get(b"z/a").unwrap().unwrap().1, 2);
    }

    #[test]
    fn unknown_namespace_is_an_error() {
        let z = zones();
        assert_eq!(z.get(b"nope/a"), Err(ZoneError::NoNamespace));
        assert_eq!(z.set(b"plain", Some(b"1"), 0), Err(ZoneError::NoNamespace));
    }

    #[test]
    fn full_zone_evicts_lru_and_refuses_oversized() {
        let z = zones();
        for i in 0..100 {
            let key = format!("z/k{i}");
            assert_eq!(
                z.set(key.as_bytes(), Some(&[0u8; 100]), 0),
                Ok(SetOutcome::Written)
            );
        }
        assert!(z.get(b"z/k0").unwrap().is_none());
        assert!(z.get(b"z/k99").unwrap().is_some());
        assert_eq!(
            z.set(b"z/big", Some(&vec![0u8; 4 * PAGE]), 0),
            Err(ZoneError::NoMemory)
        );
    }

    #[test]
    fn sizes_parse_like_nginx() {
        assert_eq!(parse_size("4m").unwrap(), 4 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert!(parse_size("x").is_err());
    }
}
