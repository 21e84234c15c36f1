//! shm_kv zones shared by every worker, as ngx_wasm_module 9136e463 keeps them
//! (`src/common/shm/ngx_wa_shm_kv.c`, `ngx_wa_shm.c`, `src/wasm/ngx_wasm_directives.c`, on
//! nginx's slab allocator `src/core/ngx_slab.c`): keys are found by the CRC32 of the whole key
//! only (two keys with the same CRC32 are the same entry), CAS is strict, there is no TTL.
//!
//! Memory is modelled page by page, as the slab allocator hands it out: a zone of SIZE bytes
//! keeps a few of its pages for the allocator's own tables; an entry takes one node of
//! `96 + key + value` bytes, in a power-of-two chunk when that is at most half a page, else in
//! whole contiguous pages; the zone's own header takes the first chunk. A write that needs a new
//! node (a new key, or a value longer than the node's) allocates it while the old one still
//! stands, evicting per the zone's policy until it fits: `slru` (default) the least recently
//! used entry of the same size class, then of larger, then of smaller classes; `lru` the least
//! recently used entry; `none` nothing. What still does not fit is an error the host turns into
//! a trap (spec/README.md, "Shared data").

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// `sizeof(ngx_wa_shm_kv_node_t)` on x86_64: rbtree node 40 + key `ngx_str_t` 16 + value
/// `ngx_str_t` 16 + cas 4 (+4 padding) + queue 16.
pub const NODE_BYTES: usize = 96;
/// nginx page size: zone sizes must be multiples of it; larger allocations are whole pages.
pub const PAGE: usize = 4096;
/// Smallest zone (`NGX_WA_SHM_MIN_SIZE`, 3 pages).
pub const MIN_ZONE: usize = 3 * PAGE;
/// Largest chunk (`NGX_WASM_SLAB_MAX_SIZE`): half a page.
const SLAB_MAX: usize = PAGE / 2;
/// nginx's `min_shift` for shared zones (8-byte chunks): 9 chunk classes below a page.
const MIN_SHIFT: u32 = 3;
const SLOTS: usize = 12 - MIN_SHIFT as usize;
/// `sizeof(ngx_slab_pool_t)`, `ngx_slab_page_t` and `ngx_slab_stat_t` on x86_64 (nginx 1.25).
const POOL_HEADER: usize = 208;
const PAGE_DESC: usize = 24;
const STAT: usize = 32;

/// What a zone does when a new node does not fit (`shm_kv NAME SIZE [eviction=...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Slru,
    Lru,
    None,
}

impl Eviction {
    /// `eviction=slru|lru|none`, as the directive spells it.
    pub fn parse(option: &str) -> Result<Eviction> {
        match option {
            "eviction=slru" => Ok(Eviction::Slru),
            "eviction=lru" => Ok(Eviction::Lru),
            "eviction=none" => Ok(Eviction::None),
            other => match other.strip_prefix("eviction=") {
                Some(policy) => bail!("[wasm] invalid eviction policy \"{policy}\""),
                None => bail!("[wasm] invalid option \"{other}\""),
            },
        }
    }
}

/// One zone declaration: `NAME=SIZE[ eviction=MODE]` (the value of
/// `KONG_NGINX_WASM_SHM_KV_<NAME>`, which Kong writes after `shm_kv NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneDecl {
    pub name: String,
    pub size: usize,
    pub eviction: Eviction,
}

impl ZoneDecl {
    pub fn parse(text: &str) -> Result<ZoneDecl> {
        let (name, rest) = text
            .split_once('=')
            .with_context(|| format!("--shm-kv {text:?}: expected NAME=SIZE[ eviction=MODE]"))?;
        let mut words = rest.split_whitespace();
        let size = parse_size(words.next().unwrap_or_default())?;
        let eviction = match words.next() {
            Some(option) => Eviction::parse(option)?,
            None => Eviction::Slru,
        };
        if let Some(extra) = words.next() {
            bail!("[wasm] invalid number of arguments in \"shm_kv\" directive near \"{extra}\"");
        }
        Ok(ZoneDecl {
            name: name.to_string(),
            size,
            eviction,
        })
    }
}

/// Outcome of a set, mirroring the proxy-wasm statuses.
#[derive(Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Written,
    CasMismatch,
    /// Written, but eviction freed the very node the write was replacing: the engine then
    /// unlinks and frees it a second time (`ngx_wa_shm_kv_set_locked`, ngx_wa_shm_kv.c:345-350),
    /// corrupting the zone. The host logs an alert.
    WrittenAfterEvictingItself,
}

/// Where an allocation lives in the slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alloc {
    Pages { start: usize, count: usize },
    Chunk { class: usize, page: usize },
}

/// The pages of a zone and the chunk pages of each class.
#[derive(Debug, Default)]
struct Slab {
    free: Vec<bool>,
    /// Per chunk class: (page, chunks in use).
    chunks: BTreeMap<usize, Vec<(usize, usize)>>,
}

impl Slab {
    /// The pages `ngx_slab_init` leaves for allocations in a zone of `size` bytes.
    fn for_zone(size: usize) -> Slab {
        let tables = POOL_HEADER + SLOTS * (PAGE_DESC + STAT);
        let mut pages = size.saturating_sub(tables) / (PAGE + PAGE_DESC);
        let start = (tables + pages * PAGE_DESC).div_ceil(PAGE) * PAGE;
        pages = pages.min(size.saturating_sub(start) / PAGE);
        Slab {
            free: vec![true; pages],
            chunks: BTreeMap::new(),
        }
    }

    fn pages(&self) -> usize {
        self.free.len()
    }

    fn used_pages(&self) -> usize {
        self.free.iter().filter(|f| !**f).count()
    }

    fn alloc(&mut self, size: usize) -> Option<Alloc> {
        if size > SLAB_MAX {
            let count = size.div_ceil(PAGE);
            let start = self.run(count)?;
            self.free[start..start + count].fill(false);
            return Some(Alloc::Pages { start, count });
        }
        let class = size.max(1 << MIN_SHIFT).next_power_of_two();
        let per_page = PAGE / class;
        if let Some(slot) = self
            .chunks
            .get_mut(&class)
            .and_then(|pages| pages.iter_mut().find(|(_, used)| *used < per_page))
        {
            slot.1 += 1;
            return Some(Alloc::Chunk {
                class,
                page: slot.0,
            });
        }
        let page = self.run(1)?;
        self.free[page] = false;
        self.chunks.entry(class).or_default().push((page, 1));
        Some(Alloc::Chunk { class, page })
    }

    /// First run of `count` free pages.
    fn run(&self, count: usize) -> Option<usize> {
        let mut len = 0;
        for (i, free) in self.free.iter().enumerate() {
            len = if *free { len + 1 } else { 0 };
            if len == count {
                return Some(i + 1 - count);
            }
        }
        None
    }

    fn release(&mut self, alloc: Alloc) {
        match alloc {
            Alloc::Pages { start, count } => self.free[start..start + count].fill(true),
            Alloc::Chunk { class, page } => {
                let Some(pages) = self.chunks.get_mut(&class) else {
                    return;
                };
                if let Some(i) = pages.iter().position(|(p, _)| *p == page) {
                    pages[i].1 -= 1;
                    if pages[i].1 == 0 {
                        pages.swap_remove(i);
                        self.free[page] = true;
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    key_len: usize,
    value: Vec<u8>,
    cas: u32,
    alloc: Alloc,
    last_use: u64,
}

impl Entry {
    /// The SLRU queue the engine keeps this node in (`queue_for_node`: by its current length).
    fn queue(&self) -> usize {
        slru_index(NODE_BYTES + self.key_len + self.value.len())
    }
}

/// `slru_index_for_size`: one queue per chunk class, one for page-sized nodes.
fn slru_index(size: usize) -> usize {
    if size > SLAB_MAX {
        return SLOTS;
    }
    let shift = usize::BITS - (size.max(2) - 1).leading_zeros();
    (shift as usize).saturating_sub(MIN_SHIFT as usize)
}

#[derive(Debug)]
struct Zone {
    eviction: Eviction,
    slab: Slab,
    clock: u64,
    entries: HashMap<u32, Entry>,
}

/// All zones declared with `--shm-kv NAME=SIZE[ eviction=MODE]`.
#[derive(Debug, Default)]
pub struct Zones {
    zones: BTreeMap<String, Mutex<Zone>>,
}

/// Why a key could not be used: each traps in ngx_wasm_module.
#[derive(Debug, PartialEq, Eq)]
pub enum ZoneError {
    /// No zone matches the key's namespace and there is no default `*` zone.
    NoNamespace,
    /// The zone has no room even after evicting everything its policy lets it evict.
    NoMemory,
}

impl Zones {
    /// `slru` zones from `(name, size in bytes)`.
    pub fn new(decls: &[(String, usize)]) -> Result<Zones> {
        let decls: Vec<ZoneDecl> = decls
            .iter()
            .map(|(name, size)| ZoneDecl {
                name: name.clone(),
                size: *size,
                eviction: Eviction::Slru,
            })
            .collect();
        Zones::declare(&decls)
    }

    /// Zones as declared; sizes must be page-aligned and at least 3 pages (the engine's
    /// `validate_shm_size`, ngx_wasm_directives.c:136-160).
    pub fn declare(decls: &[ZoneDecl]) -> Result<Zones> {
        let mut zones = BTreeMap::new();
        for ZoneDecl {
            name,
            size,
            eviction,
        } in decls
        {
            if name.is_empty() {
                bail!("[wasm] invalid shm name \"{name}\"");
            }
            if *size < MIN_ZONE {
                bail!("[wasm] shm size of {size} bytes is too small, minimum required is {MIN_ZONE} bytes");
            }
            if size % PAGE != 0 {
                bail!("[wasm] shm size of {size} bytes is not page-aligned, must be a multiple of {PAGE}");
            }
            let mut zone = Zone {
                eviction: *eviction,
                slab: Slab::for_zone(*size),
                clock: 0,
                entries: HashMap::new(),
            };
            // `ngx_wa_shm_kv_init`: the store's header (rbtree, count, eviction queues).
            let header = 88
                + if *eviction == Eviction::Slru {
                    (SLOTS + 1) * 16
                } else {
                    0
                };
            if zone.slab.alloc(header).is_none() {
                bail!("[wasm] could not initialize shm \"{name}\"");
            }
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

    /// The name of the zone `key` goes to (for the engine's log lines).
    pub fn zone_name(&self, key: &[u8]) -> Option<&str> {
        let zone = self.zone_for(key).ok()?;
        self.zones
            .iter()
            .find(|(_, z)| std::ptr::eq(*z, zone))
            .map(|(name, _)| name.as_str())
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

    /// Entries, bytes in use and bytes allocatable per zone (for `/__status`).
    pub fn usage(&self) -> BTreeMap<String, (usize, usize, usize)> {
        self.zones
            .iter()
            .map(|(name, z)| {
                let z = z.lock().unwrap_or_else(|p| p.into_inner());
                (
                    name.clone(),
                    (
                        z.entries.len(),
                        z.slab.used_pages() * PAGE,
                        z.slab.pages() * PAGE,
                    ),
                )
            })
            .collect()
    }
}

impl Zone {
    /// `ngx_wa_shm_kv_set_locked` (ngx_wa_shm_kv.c:267-387).
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
                self.slab.release(old.alloc);
                return Ok(SetOutcome::Written);
            }
            // Deleting an absent key writes nothing: ngx_wasm_module reports a CAS mismatch.
            return Ok(SetOutcome::CasMismatch);
        };
        // A value no longer than the node's is written in place: no allocation.
        if let Some(entry) = self.entries.get_mut(&hash) {
            if value.len() <= entry.value.len() {
                entry.value = value.to_vec();
                entry.cas = entry.cas.wrapping_add(1);
                entry.last_use = now;
                return Ok(SetOutcome::Written);
            }
        }
        // A new node while the old one (if any) still stands, evicting until it fits.
        let size = NODE_BYTES + key_len + value.len();
        let mut evicted_itself = false;
        let alloc = loop {
            if let Some(alloc) = self.slab.alloc(size) {
                break alloc;
            }
            let Some(victim) = self.victim(size) else {
                return Err(ZoneError::NoMemory);
            };
            if victim == hash {
                evicted_itself = true;
            }
            if let Some(e) = self.entries.remove(&victim) {
                self.slab.release(e.alloc);
            }
        };
        let old_cas = match self.entries.remove(&hash) {
            Some(old) => {
                self.slab.release(old.alloc);
                old.cas
            }
            None if evicted_itself => current,
            None => 0,
        };
        self.entries.insert(
            hash,
            Entry {
                key_len,
                value: value.to_vec(),
                cas: old_cas.wrapping_add(1),
                alloc,
                last_use: now,
            },
        );
        Ok(if evicted_itself {
            SetOutcome::WrittenAfterEvictingItself
        } else {
            SetOutcome::Written
        })
    }

    /// The entry the zone's policy evicts to make room for a node of `size` bytes, if any
    /// (`slru_expire`, ngx_wa_shm_kv.c:204-238; `lru_expire`, :241-253).
    fn victim(&self, size: usize) -> Option<u32> {
        let lru_in = |pred: &dyn Fn(usize) -> bool| {
            self.entries
                .iter()
                .filter(|(_, e)| pred(e.queue()))
                .min_by_key(|(_, e)| e.last_use)
                .map(|(h, _)| *h)
        };
        match self.eviction {
            Eviction::None => None,
            Eviction::Lru => lru_in(&|_| true),
            Eviction::Slru => {
                let start = slru_index(size);
                (start..=SLOTS)
                    .chain((0..start).rev())
                    .find_map(|queue| lru_in(&|q| q == queue))
            }
        }
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

    fn zone(size: &str, eviction: &str) -> Zones {
        let decl = ZoneDecl::parse(&format!("z={size} {eviction}")).unwrap();
        Zones::declare(&[decl]).unwrap()
    }

    /// A value whose node takes exactly `pages` pages under a 4-byte key (`z/k1`).
    fn value_of_pages(pages: usize) -> Vec<u8> {
        vec![0u8; pages * PAGE - NODE_BYTES - 4]
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
        assert_eq!(z.set(b"z/a", Some(b"longer"), 2), Ok(SetOutcome::Written));
        assert_eq!(
            z.get(b"z/a").unwrap().unwrap().1,
            3,
            "a new node keeps the cas"
        );
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
    fn zone_sizes_are_checked_and_lose_pages_to_the_allocator_like_the_engine() {
        for bad in ["8k", "15k", "13000", "x"] {
            let decl = ZoneDecl::parse(&format!("z={bad}"));
            assert!(decl.and_then(|d| Zones::declare(&[d])).is_err(), "{bad}");
        }
        let usable = |size: &str| zone(size, "").usage()["z"].2 / PAGE;
        assert_eq!(usable("12k"), 2);
        assert_eq!(usable("128k"), 31);
        assert_eq!(usable("12m"), 3053);
        assert!(ZoneDecl::parse("z=128k eviction=fifo").is_err());
        assert!(ZoneDecl::parse("z=128k lru").is_err());
        assert_eq!(
            ZoneDecl::parse("z=128k eviction=none").unwrap().eviction,
            Eviction::None
        );
        assert_eq!(ZoneDecl::parse("z=128k").unwrap().eviction, Eviction::Slru);
    }

    #[test]
    fn a_value_larger_than_the_zone_can_hold_fails_under_every_policy() {
        // 128k: 31 pages, the first holds the store's header: 30 contiguous pages at most.
        for eviction in ["eviction=slru", "eviction=lru", "eviction=none", ""] {
            let z = zone("128k", eviction);
            assert_eq!(
                z.set(b"z/k1", Some(&value_of_pages(31)), 0),
                Err(ZoneError::NoMemory),
                "{eviction}"
            );
            assert_eq!(
                z.set(b"z/k1", Some(&value_of_pages(30)), 0),
                Ok(SetOutcome::Written),
                "{eviction}"
            );
        }
        // 300 kB never fits 128k, however empty.
        let z = zone("128k", "");
        assert_eq!(
            z.set(b"z/jwks", Some(&vec![0u8; 300_000]), 0),
            Err(ZoneError::NoMemory)
        );
    }

    #[test]
    fn eviction_none_refuses_any_new_node_in_a_full_zone_but_rewrites_in_place() {
        let z = zone("12k", "eviction=none");
        let mut written = 0;
        while z.set(format!("z/{written}").as_bytes(), Some(&[1u8; 100]), 0)
            == Ok(SetOutcome::Written)
        {
            written += 1;
        }
        // Page 0 holds the store's header (a 128-byte chunk); page 1, sixteen 256-byte nodes.
        assert_eq!(written, 16);
        assert_eq!(
            z.set(b"z/new", Some(&[1u8; 100]), 0),
            Err(ZoneError::NoMemory)
        );
        let (_, cas) = z.get(b"z/0").unwrap().unwrap();
        assert_eq!(
            z.set(b"z/0", Some(&[2u8; 100]), cas),
            Ok(SetOutcome::Written)
        );
        assert_eq!(
            z.set(b"z/0", Some(&[3u8; 10]), cas + 1),
            Ok(SetOutcome::Written)
        );
        // The node now says 10 bytes: growing back needs a new node, which does not fit.
        assert_eq!(
            z.set(b"z/0", Some(&[4u8; 100]), cas + 2),
            Err(ZoneError::NoMemory)
        );
        assert_eq!(z.get(b"z/0").unwrap().unwrap().0, vec![3u8; 10]);
    }

    #[test]
    fn lru_evicts_the_oldest_entry_and_slru_one_of_the_same_size_first() {
        for (eviction, small_survives) in [("eviction=lru", false), ("eviction=slru", true)] {
            let z = zone("20k", eviction);
            z.set(b"z/small", Some(&[0u8; 10]), 0).unwrap();
            for page in ["z/p1", "z/p2", "z/p3"] {
                assert_eq!(
                    z.set(page.as_bytes(), Some(&value_of_pages(1)), 0),
                    Ok(SetOutcome::Written)
                );
            }
            for page in ["z/p1", "z/p2", "z/p3"] {
                z.get(page.as_bytes()).unwrap();
            }
            assert_eq!(
                z.set(b"z/p4", Some(&value_of_pages(1)), 0),
                Ok(SetOutcome::Written)
            );
            assert_eq!(
                z.get(b"z/small").unwrap().is_some(),
                small_survives,
                "{eviction}"
            );
        }
    }

    #[test]
    fn growing_a_value_in_a_full_zone_may_evict_the_node_being_replaced() {
        let z = zone("128k", "");
        assert_eq!(
            z.set(b"z/k1", Some(&value_of_pages(20)), 0),
            Ok(SetOutcome::Written)
        );
        assert_eq!(
            z.set(b"z/k1", Some(&value_of_pages(25)), 1),
            Ok(SetOutcome::WrittenAfterEvictingItself)
        );
        assert_eq!(z.get(b"z/k1").unwrap().unwrap().1, 2);
    }

    #[test]
    fn sizes_parse_like_nginx() {
        assert_eq!(parse_size("4m").unwrap(), 4 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert!(parse_size("x").is_err());
    }
}
