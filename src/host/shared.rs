//! Values in the host's shared data: full key and expiry stored inside, and CAS leases.
//!
//! Kong's shared-data zones compare keys by CRC32 only, so two different keys can land on one
//! slot. Every value therefore starts with a header carrying the full key; a read whose stored
//! key differs is treated as "not ours" ([`Slot::Foreign`]). Kong keeps no TTL, so records carry
//! the time they were written and each kind of payload carries its own expiry.
//!
//! Keys are built from configuration (URLs up to 2 KiB), so they can be long. The host is handed
//! a bounded key ([`host_key`]: the key itself, or a SHA-256 of it when it is long); the full key
//! still travels inside the value and is compared whole on read, so a hash changes which slot a
//! key lands on, never what counts as ours.
//!
//! Kong's engine traps on a write that does not fit its zone, so what is written is bounded
//! ([`crate::host::MAX_SHARED_VALUE_BYTES`], refused by the host adapter) and never grows: a value
//! whose length varies (a JWKS, a token) is padded to the full bound ([`Width::Full`]), so after
//! its first write every rewrite reuses the engine's node in place (no allocation: nothing that
//! can fail in a full zone, and no replacement during which the engine may evict the node it is
//! replacing). Leases and back-offs have one length per key ([`Width::Exact`]).

use crate::host::{Host, HostError, SharedSetError, MAX_SHARED_VALUE_BYTES};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write;

const MAGIC: &[u8; 4] = b"CRO3";
/// Longest key handed to the host as is; longer keys are hashed (see [`host_key`]).
pub const MAX_HOST_KEY_BYTES: usize = 256;

/// A decoded shared-data value that belongs to the key it was read under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub payload: Vec<u8>,
    /// The CAS the host returned with it, for a conditional update.
    pub cas: u32,
}

/// What a shared-data key holds from our point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Nothing stored: a create-only write (`cas = None`) may claim it.
    Empty,
    /// A value written for this exact key.
    Ours(Record),
    /// A value written under another key with the same CRC32, or bytes we cannot decode.
    /// Writing would destroy someone else's value, so callers treat the slot as unusable.
    Foreign,
}

/// The key the host sees for `key`: `key` itself up to [`MAX_HOST_KEY_BYTES`], else
/// `<namespace>/#<SHA-256 of key, hex>` (the namespace, up to the first `/`, picks the host's
/// zone, so it stays). `#` never starts a segment of a key the filter builds, so a hashed key
/// cannot equal a literal one.
pub fn host_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_HOST_KEY_BYTES {
        return Cow::Borrowed(key);
    }
    let namespace = key.split_once('/').map_or(key, |(ns, _)| ns);
    let mut out = String::with_capacity(namespace.len() + 2 + 64);
    out.push_str(namespace);
    out.push_str("/#");
    for byte in Sha256::digest(key.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    Cow::Owned(out)
}

/// How much room a value takes in the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// The record as is: for payloads of one length per key (leases, back-offs).
    Exact,
    /// Padded with zeros to [`MAX_SHARED_VALUE_BYTES`]: for payloads whose length varies, so
    /// that a rewrite never needs a larger node than the first write got.
    Full,
}

/// Serialises `payload` with the header that names its full key and the payload's length (never
/// cut: a key longer than a u32 cannot be built from a configuration capped at 64 KiB). `None`
/// when the record would be larger than [`MAX_SHARED_VALUE_BYTES`]: such a payload is kept by
/// the worker only.
pub fn encode(key: &str, payload: &[u8], width: Width) -> Option<Vec<u8>> {
    let key = key.as_bytes();
    let exact = 4 + 4 + key.len() + 4 + payload.len();
    if exact > MAX_SHARED_VALUE_BYTES {
        return None;
    }
    let len = match width {
        Width::Exact => exact,
        Width::Full => MAX_SHARED_VALUE_BYTES,
    };
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(key.len()).ok()?.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&u32::try_from(payload.len()).ok()?.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(len, 0);
    Some(out)
}

/// Whether `payload` under `key` fits in shared data at all.
pub fn fits(key: &str, payload: &[u8]) -> bool {
    4 + 4 + key.len() + 4 + payload.len() <= MAX_SHARED_VALUE_BYTES
}

/// The payload of `bytes` when its header names exactly `key` (padding ignored).
pub fn decode<'a>(key: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let stored_key = layout::take_bytes(&mut rest)?;
    let payload = layout::take_bytes(&mut rest)?;
    (stored_key == key.as_bytes()).then_some(payload)
}

fn too_large(bytes: usize) -> HostError {
    HostError(format!(
        "a value of {bytes} bytes is over the {MAX_SHARED_VALUE_BYTES}-byte bound for shared data"
    ))
}

/// Reads `key` and classifies what is there.
pub fn read(host: &dyn Host, key: &str) -> Result<Slot, HostError> {
    Ok(match host.shared_get(&host_key(key))? {
        None => Slot::Empty,
        Some((bytes, cas)) => match decode(key, &bytes) {
            Some(payload) => Slot::Ours(Record {
                payload: payload.to_vec(),
                cas,
            }),
            None => Slot::Foreign,
        },
    })
}

/// Writes `payload` under `key`: create-only when `cas` is `None`, else conditional on `cas`.
/// A record over [`MAX_SHARED_VALUE_BYTES`] is refused here, the host never sees it.
pub fn write(
    host: &mut dyn Host,
    key: &str,
    payload: &[u8],
    cas: Option<u32>,
    width: Width,
) -> Result<(), SharedSetError> {
    let record_len = 4 + 4 + key.len() + 4 + payload.len();
    let value = encode(key, payload, width).ok_or(SharedSetError::TooLarge(record_len))?;
    host.shared_set(&host_key(key), &value, cas)
}

/// Replaces whatever `key` holds (if it is ours or empty), retrying a few times on CAS races.
/// Returns `false` when the slot is foreign or the races did not settle; `Err` when the host
/// failed or the payload is too large to share ([`fits`]).
pub fn overwrite(
    host: &mut dyn Host,
    key: &str,
    payload: &[u8],
    width: Width,
) -> Result<bool, HostError> {
    const ATTEMPTS: usize = 4;
    for _ in 0..ATTEMPTS {
        let cas = match read(host, key)? {
            Slot::Empty => None,
            Slot::Ours(record) => Some(record.cas),
            Slot::Foreign => return Ok(false),
        };
        match write(host, key, payload, cas, width) {
            Ok(()) => return Ok(true),
            Err(SharedSetError::CasMismatch) => continue,
            Err(SharedSetError::TooLarge(n)) => return Err(too_large(n)),
            Err(SharedSetError::Host(e)) => return Err(e),
        }
    }
    Ok(false)
}

/// Outcome of trying to take a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// We hold it until the given time (ms); the caller does the guarded work.
    Acquired,
    /// Someone else holds an unexpired lease.
    Held,
    /// The slot is foreign (CRC32 collision): no cross-worker coordination is possible, so the
    /// caller proceeds as if it held the lease (work may be duplicated, never skipped forever).
    Uncoordinated,
}

/// Takes the lease `key` for `duration_ms` when it is free or expired. A lease is a payload of
/// `until_ms` (8 bytes, big endian) and `holder` (8 bytes). Leases also serve as rate limits:
/// taking one and never releasing it means "at most once per `duration_ms`".
pub fn try_lease(
    host: &mut dyn Host,
    key: &str,
    holder: u64,
    duration_ms: u64,
) -> Result<Lease, HostError> {
    let now = host.now_ms();
    let cas = match read(host, key)? {
        Slot::Foreign => return Ok(Lease::Uncoordinated),
        Slot::Empty => None,
        Slot::Ours(record) => match parse_lease(&record.payload) {
            Some((until, _)) if until > now => return Ok(Lease::Held),
            _ => Some(record.cas),
        },
    };
    match write(
        host,
        key,
        &lease_payload(now.saturating_add(duration_ms), holder),
        cas,
        Width::Exact,
    ) {
        Ok(()) => Ok(Lease::Acquired),
        Err(SharedSetError::CasMismatch) => Ok(Lease::Held),
        Err(SharedSetError::TooLarge(n)) => Err(too_large(n)),
        Err(SharedSetError::Host(e)) => Err(e),
    }
}

/// Releases a lease we hold, so the next holder need not wait for it to expire. A lease taken
/// over by someone else in the meantime is left alone.
pub fn release_lease(host: &mut dyn Host, key: &str, holder: u64) -> Result<(), HostError> {
    if let Slot::Ours(record) = read(host, key)? {
        if matches!(parse_lease(&record.payload), Some((_, h)) if h == holder) {
            match write(
                host,
                key,
                &lease_payload(0, holder),
                Some(record.cas),
                Width::Exact,
            ) {
                Ok(()) | Err(SharedSetError::CasMismatch) => {}
                Err(SharedSetError::TooLarge(n)) => return Err(too_large(n)),
                Err(SharedSetError::Host(e)) => return Err(e),
            }
        }
    }
    Ok(())
}

fn lease_payload(until_ms: u64, holder: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (a, b) = out.split_at_mut(8);
    a.copy_from_slice(&until_ms.to_be_bytes());
    b.copy_from_slice(&holder.to_be_bytes());
    out
}

fn parse_lease(payload: &[u8]) -> Option<(u64, u64)> {
    let (until, rest) = payload.split_first_chunk::<8>()?;
    let (holder, _) = rest.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*until), u64::from_be_bytes(*holder)))
}

/// Little helpers for fixed-layout payloads: a u64 followed by length-prefixed byte strings.
pub mod layout {
    /// Appends a big-endian u64.
    pub fn put_u64(out: &mut Vec<u8>, value: u64) {
        out.extend_from_slice(&value.to_be_bytes());
    }

    /// Appends a u32-length-prefixed byte string.
    pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// Reads a big-endian u64 from the front of `input`.
    pub fn take_u64(input: &mut &[u8]) -> Option<u64> {
        let (head, rest) = input.split_first_chunk::<8>()?;
        *input = rest;
        Some(u64::from_be_bytes(*head))
    }

    /// Reads a u32-length-prefixed byte string from the front of `input`.
    pub fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = input.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let bytes = rest.get(..len)?;
        *input = rest.get(len..)?;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn round_trips_payload_under_its_key() {
        for width in [Width::Exact, Width::Full] {
            let bytes = encode("ns/jwks/a", b"payload", width).unwrap();
            assert_eq!(decode("ns/jwks/a", &bytes), Some(&b"payload"[..]));
        }
    }

    #[test]
    fn treats_value_of_another_key_as_foreign() {
        // The host compares keys by CRC32 only: simulate a collision by storing another key's
        // value under ours.
        let mut host = FakeHost::at(1_000);
        host.shared.insert(
            "ns/a".into(),
            (encode("ns/colliding", b"x", Width::Exact).unwrap(), 7),
        );
        assert_eq!(read(&host, "ns/a").unwrap(), Slot::Foreign);
        host.shared.insert("ns/a".into(), (b"garbage".to_vec(), 7));
        assert_eq!(read(&host, "ns/a").unwrap(), Slot::Foreign);
        assert!(!overwrite(&mut host, "ns/a", b"mine", Width::Full).unwrap());
    }

    #[test]
    fn refuses_truncated_headers() {
        for bytes in [
            &b""[..],
            b"CRO",
            b"CRO3",
            b"CRO3\x00",
            b"CRO3\x00\x00\x00\x04ns/a",
            b"CRO3\x00\x00\x00\x04ns/a\x00\x00\x00\x05abcd",
        ] {
            assert_eq!(decode("ns/a", bytes), None);
        }
    }

    #[test]
    fn long_keys_are_bounded_and_still_exact() {
        // Keys built from a ~1 KiB URL (as every key of such a key source is).
        let mut host = FakeHost::at(1_000);
        let long = format!("ns/jwks-kid/jwks:https://idp.example/{}", "k".repeat(1100));
        assert!(overwrite(&mut host, &long, b"mine", Width::Full).unwrap());
        match read(&host, &long).unwrap() {
            Slot::Ours(r) => assert_eq!(r.payload, b"mine"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            try_lease(&mut host, &long, 1, 5_000).unwrap(),
            Lease::Acquired
        );
        assert_eq!(
            try_lease(&mut host, &long, 2, 5_000).unwrap(),
            Lease::Held,
            "the lease coordinates workers"
        );
        // What the host is handed stays bounded and in the namespace's zone.
        assert!(host
            .shared
            .keys()
            .all(|k| k.len() <= MAX_HOST_KEY_BYTES && k.starts_with("ns/")));
        // A key that differs only past the first KiB is another key.
        let sibling = format!("{}x", &long[..1030]);
        assert_eq!(read(&host, &sibling).unwrap(), Slot::Empty);
        assert_eq!(
            try_lease(&mut host, &sibling, 3, 5_000).unwrap(),
            Lease::Acquired
        );
    }

    #[test]
    fn hashed_slot_holding_another_keys_value_is_foreign() {
        let mut host = FakeHost::at(1_000);
        let long = format!("ns/jwks/{}", "a".repeat(400));
        let slot = host_key(&long).into_owned();
        assert!(
            slot.starts_with("ns/#") && slot.len() == 3 + 1 + 64,
            "{slot}"
        );
        assert_eq!(host_key("ns/short"), "ns/short");
        host.shared.insert(
            slot,
            (encode("ns/jwks/other", b"x", Width::Exact).unwrap(), 1),
        );
        assert_eq!(read(&host, &long).unwrap(), Slot::Foreign);
        assert!(!overwrite(&mut host, &long, b"mine", Width::Full).unwrap());
    }

    #[test]
    fn values_never_exceed_the_bound_and_full_width_ones_never_grow() {
        let mut host = FakeHost::at(1_000);
        // Every rewrite of a varying payload has the same length: the engine reuses its node.
        for payload in [&b"short"[..], &[7u8; 40_000][..], b""] {
            assert!(overwrite(&mut host, "ns/k", payload, Width::Full).unwrap());
            let (bytes, _) = host.shared.get("ns/k").unwrap();
            assert_eq!(bytes.len(), MAX_SHARED_VALUE_BYTES);
            assert_eq!(decode("ns/k", bytes), Some(payload));
        }
        // A payload over the bound is refused before the host is asked.
        let writes = host.shared_writes;
        let big = vec![1u8; MAX_SHARED_VALUE_BYTES];
        assert!(!fits("ns/big", &big));
        assert!(overwrite(&mut host, "ns/big", &big, Width::Full).is_err());
        assert!(overwrite(&mut host, "ns/big", &big, Width::Exact).is_err());
        assert_eq!(host.shared_writes, writes, "the host never saw it");
        assert_eq!(read(&host, "ns/big").unwrap(), Slot::Empty);
        // The largest payload that fits, fits exactly.
        let room = MAX_SHARED_VALUE_BYTES - 4 - 4 - "ns/big".len() - 4;
        assert!(fits("ns/big", &big[..room]) && !fits("ns/big", &big[..room + 1]));
        assert!(overwrite(&mut host, "ns/big", &big[..room], Width::Full).unwrap());
    }

    #[test]
    fn the_host_bound_refuses_any_value_over_it() {
        let mut host = FakeHost::at(1_000);
        let over = vec![0u8; MAX_SHARED_VALUE_BYTES + 1];
        assert_eq!(
            host.shared_set("ns/x", &over, None),
            Err(SharedSetError::TooLarge(MAX_SHARED_VALUE_BYTES + 1))
        );
        assert_eq!(host.shared_writes, 0);
        let at = vec![0u8; MAX_SHARED_VALUE_BYTES];
        assert_eq!(host.shared_set("ns/x", &at, None), Ok(()));
    }

    #[test]
    fn overwrite_creates_then_updates() {
        let mut host = FakeHost::at(1_000);
        assert!(overwrite(&mut host, "ns/k", b"one", Width::Full).unwrap());
        assert!(overwrite(&mut host, "ns/k", b"two", Width::Full).unwrap());
        match read(&host, "ns/k").unwrap() {
            Slot::Ours(r) => assert_eq!(r.payload, b"two"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lease_is_exclusive_until_it_expires() {
        let mut host = FakeHost::at(1_000);
        assert_eq!(
            try_lease(&mut host, "ns/lease", 1, 5_000).unwrap(),
            Lease::Acquired
        );
        assert_eq!(
            try_lease(&mut host, "ns/lease", 2, 5_000).unwrap(),
            Lease::Held
        );
        host.advance_secs(6);
        assert_eq!(
            try_lease(&mut host, "ns/lease", 2, 5_000).unwrap(),
            Lease::Acquired
        );
    }

    #[test]
    fn released_lease_can_be_taken_at_once() {
        let mut host = FakeHost::at(1_000);
        assert_eq!(
            try_lease(&mut host, "ns/lease", 1, 60_000).unwrap(),
            Lease::Acquired
        );
        release_lease(&mut host, "ns/lease", 1).unwrap();
        assert_eq!(
            try_lease(&mut host, "ns/lease", 2, 60_000).unwrap(),
            Lease::Acquired
        );
    }

    #[test]
    fn release_leaves_another_holders_lease_alone() {
        let mut host = FakeHost::at(1_000);
        try_lease(&mut host, "ns/lease", 1, 1_000).unwrap();
        host.advance_secs(2);
        assert_eq!(
            try_lease(&mut host, "ns/lease", 2, 60_000).unwrap(),
            Lease::Acquired
        );
        release_lease(&mut host, "ns/lease", 1).unwrap();
        assert_eq!(
            try_lease(&mut host, "ns/lease", 3, 60_000).unwrap(),
            Lease::Held
        );
    }

    #[test]
    fn foreign_lease_slot_is_uncoordinated() {
        let mut host = FakeHost::at(1_000);
        host.shared.insert(
            "ns/lease".into(),
            (encode("ns/other", b"", Width::Exact).unwrap(), 1),
        );
        assert_eq!(
            try_lease(&mut host, "ns/lease", 1, 1_000).unwrap(),
            Lease::Uncoordinated
        );
    }

    #[test]
    fn layout_round_trips_and_refuses_short_input() {
        let mut out = Vec::new();
        layout::put_u64(&mut out, 42);
        layout::put_bytes(&mut out, b"abc");
        let mut input = out.as_slice();
        assert_eq!(layout::take_u64(&mut input), Some(42));
        assert_eq!(layout::take_bytes(&mut input), Some(&b"abc"[..]));
        assert!(input.is_empty());
        let mut short = &out[..10];
        layout::take_u64(&mut short);
        assert_eq!(layout::take_bytes(&mut short), None);
    }
}
