//! One limit's counters in the host's shared data, exact across workers.
//!
//! Each limit owns a table of `max_callers` slots (`<prefix>/<index>`). A caller may sit in one
//! of two slots picked from its digest; a slot holds one caller's count for one window:
//! `caller (16 bytes) ‖ window start (u64) ‖ count (u64)`, always 32 bytes, so a slot once
//! written is rewritten in place and never grows (KONG_HOST.md: a write that does not fit the
//! zone traps). The table never holds more than `max_callers` entries, which is what the README's
//! zone sizing counts; a slot whose window is over is taken by the next caller that needs it.
//!
//! Every update is a strict CAS on the slot the count was read from, so workers never lose an
//! increment: the count is exact, and a request is admitted only when its own increment landed
//! below the limit. What cannot be counted (both slots held by other callers in this window, a
//! CAS race lost [`ATTEMPTS`] times, a host error) is a [`Fault`]: the caller decides (the filter
//! admits such a request uncounted; the token was verified).

use super::{Caller, RateLimit};
use crate::host::shared::{self, layout, Slot, Width};
use crate::host::{Host, SharedSetError};

/// CAS attempts before a count gives up as [`Fault::Contended`].
pub const ATTEMPTS: usize = 8;
const ENTRY_BYTES: usize = 32;

/// What counting one request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Counted; this many requests are left in the window.
    Counted { remaining: u64 },
    /// The window's budget is spent: nothing was counted.
    Limited,
    /// The request could not be counted.
    Unmetered(Fault),
}

/// Why a request could not be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Both of the caller's slots hold other callers' counts for this window (`max_callers`
    /// too small for the callers of one window).
    TableFull,
    /// Other workers updated the slot between every read and write.
    Contended,
    /// The host refused a shared-data call.
    Host,
}

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Fault::TableFull => {
                "both of the caller's counter slots hold other callers (raise max_callers)"
            }
            Fault::Contended => "the counter kept changing under concurrent updates",
            Fault::Host => "the host refused a shared-data call",
        }
    }
}

/// One slot's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    caller: [u8; 16],
    window_start: u64,
    count: u64,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_BYTES);
        out.extend_from_slice(&self.caller);
        layout::put_u64(&mut out, self.window_start);
        layout::put_u64(&mut out, self.count);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let (caller, mut rest) = bytes.split_first_chunk::<16>()?;
        let window_start = layout::take_u64(&mut rest)?;
        let count = layout::take_u64(&mut rest)?;
        rest.is_empty().then_some(Entry {
            caller: *caller,
            window_start,
            count,
        })
    }
}

/// A limit's table in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// `<namespace>/rl/<hash of the limit>` ([`RateLimit::table_prefix`]).
    prefix: String,
    slots: u32,
}

/// What a read of the caller's two slots found.
struct Found {
    /// The slot holding the caller's count for this window: (slot, entry, cas).
    own: Option<(usize, Entry, u32)>,
    /// The first slot that may be taken: (slot, cas; `None` = empty).
    free: Option<(usize, Option<u32>)>,
}

impl Table {
    pub fn new(limit: &RateLimit, namespace: &str) -> Table {
        Table {
            prefix: limit.table_prefix(namespace),
            slots: limit.max_callers.max(2),
        }
    }

    /// The caller's two slot keys (distinct).
    pub fn slot_keys(&self, caller: &Caller) -> [String; 2] {
        let word = |at: usize| {
            let mut b = [0u8; 4];
            for (out, byte) in b.iter_mut().zip(caller.id.iter().skip(at)) {
                *out = *byte;
            }
            u32::from_be_bytes(b)
        };
        let first = word(0) % self.slots;
        let mut second = word(4) % self.slots;
        if second == first {
            second = (first + 1) % self.slots;
        }
        [first, second].map(|i| format!("{}/{i}", self.prefix))
    }

    /// Counts one request of `caller` at `now` (seconds) against `limit`.
    pub fn take(
        &self,
        host: &mut dyn Host,
        keys: &[String; 2],
        caller: &Caller,
        limit: &RateLimit,
        now: u64,
    ) -> Taken {
        let window_start = limit.window.start(now);
        let taken = read_modify_write(host, keys, caller, window_start, |found| {
            let (slot, entry, cas) = match found.own {
                Some((_, entry, _)) if entry.count >= limit.requests => {
                    return Step::Finish(Taken::Limited)
                }
                Some((slot, entry, cas)) => (
                    slot,
                    Entry {
                        count: entry.count + 1,
                        ..entry
                    },
                    Some(cas),
                ),
                None => match found.free {
                    Some((slot, cas)) => (
                        slot,
                        Entry {
                            caller: caller.id,
                            window_start,
                            count: 1,
                        },
                        cas,
                    ),
                    None => return Step::Finish(Taken::Unmetered(Fault::TableFull)),
                },
            };
            let remaining = limit.requests.saturating_sub(entry.count);
            Step::Write {
                slot,
                entry,
                cas,
                then: Taken::Counted { remaining },
            }
        });
        taken.unwrap_or_else(Taken::Unmetered)
    }

    /// Takes back one request counted for `caller` in this window (another limit refused it).
    /// Best effort: a lost race leaves the count one high, never lower than what was admitted.
    pub fn give_back(
        &self,
        host: &mut dyn Host,
        keys: &[String; 2],
        caller: &Caller,
        limit: &RateLimit,
        now: u64,
    ) {
        let window_start = limit.window.start(now);
        // Best effort: a fault leaves the count as it is.
        let _ = read_modify_write(host, keys, caller, window_start, |found| match found.own {
            Some((slot, entry, cas)) if entry.count > 0 => Step::Write {
                slot,
                entry: Entry {
                    count: entry.count - 1,
                    ..entry
                },
                cas: Some(cas),
                then: (),
            },
            _ => Step::Finish(()),
        });
    }
}

/// What one attempt of [`read_modify_write`] does after reading the caller's slots.
enum Step<T> {
    /// Store `entry` in `slot` if it still has the `cas` read (`None`: still empty), then
    /// answer `then`.
    Write {
        slot: usize,
        entry: Entry,
        cas: Option<u32>,
        then: T,
    },
    /// Answer without writing.
    Finish(T),
}

/// Reads the caller's slots, lets `decide` choose a write and stores it with the CAS read;
/// when another worker wrote in between, reads again (at most [`ATTEMPTS`] times).
fn read_modify_write<T>(
    host: &mut dyn Host,
    keys: &[String; 2],
    caller: &Caller,
    window_start: u64,
    mut decide: impl FnMut(Found) -> Step<T>,
) -> Result<T, Fault> {
    for _ in 0..ATTEMPTS {
        let found = find(host, keys, caller, window_start).map_err(|()| Fault::Host)?;
        match decide(found) {
            Step::Finish(answer) => return Ok(answer),
            Step::Write {
                slot,
                entry,
                cas,
                then,
            } => match store(host, keys, slot, &entry, cas) {
                Ok(()) => return Ok(then),
                Err(SharedSetError::CasMismatch) => continue,
                Err(_) => return Err(Fault::Host),
            },
        }
    }
    Err(Fault::Contended)
}

/// Reads the caller's slots: its own count for this window (a later window written by a worker
/// whose clock is ahead counts as this one), or the first slot it may take.
fn find(
    host: &dyn Host,
    keys: &[String; 2],
    caller: &Caller,
    window_start: u64,
) -> Result<Found, ()> {
    let mut free = None;
    for (slot, key) in keys.iter().enumerate() {
        match shared::read(host, key).map_err(|_| ())? {
            Slot::Empty => {
                free = free.or(Some((slot, None)));
            }
            Slot::Foreign => {}
            Slot::Ours(record) => match Entry::decode(&record.payload) {
                Some(entry) if entry.window_start >= window_start => {
                    if entry.caller == caller.id {
                        return Ok(Found {
                            own: Some((slot, entry, record.cas)),
                            free: None,
                        });
                    }
                }
                // An earlier window, or a slot of ours that does not decode: free to take.
                Some(_) | None => {
                    free = free.or(Some((slot, Some(record.cas))));
                }
            },
        }
    }
    Ok(Found { own: None, free })
}

fn store(
    host: &mut dyn Host,
    keys: &[String; 2],
    slot: usize,
    entry: &Entry,
    cas: Option<u32>,
) -> Result<(), SharedSetError> {
    let key = keys.get(slot).ok_or(SharedSetError::CasMismatch)?;
    shared::write(host, key, &entry.encode(), cas, Width::Exact)
}
