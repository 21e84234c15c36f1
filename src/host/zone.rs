//! The rules for proving a shared-data namespace (see the adapter's `zone` module for why):
//! which namespace a key belongs to, and when an unfinished probe means the zone is missing.

/// How long after a probe that trapped requests are refused without probing again.
pub const PROBE_RETRY_MS: u64 = 10_000;

/// The namespace of shared-data `key`: up to its first `/` (the host's zone is picked by it).
pub fn namespace_of(key: &str) -> Option<&str> {
    key.split_once('/').map(|(ns, _)| ns)
}

/// How long ago a probe started at `pending_since` (0: none pending) trapped, if that is recent
/// enough to refuse without probing. A clock that went back still counts as recent.
pub fn recent_trap(pending_since: u64, now_ms: u64) -> Option<u64> {
    if pending_since == 0 {
        return None;
    }
    let ago = now_ms.saturating_sub(pending_since);
    (ago < PROBE_RETRY_MS).then_some(ago)
}

/// The gauge holding the start time (ms) of the namespace's unfinished probe; Kong exports it as
/// `pw_cloudrun_oidc_shm_probe_pending_since_ms_<namespace>`.
pub fn gauge_name(namespace: &str) -> String {
    format!("shm_probe_pending_since_ms_{namespace}")
}

/// The key a request reads to prove `namespace` (never written).
pub fn probe_key(namespace: &str) -> String {
    format!("{namespace}/zone-probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_or_old_probe_does_not_refuse() {
        assert_eq!(recent_trap(0, 50_000), None);
        assert_eq!(recent_trap(40_000, 40_000 + PROBE_RETRY_MS), None);
        assert_eq!(recent_trap(40_000, 40_000 + PROBE_RETRY_MS + 1), None);
    }

    #[test]
    fn a_recent_unfinished_probe_refuses() {
        assert_eq!(recent_trap(40_000, 40_000), Some(0));
        assert_eq!(recent_trap(40_000, 49_999), Some(9_999));
        assert_eq!(recent_trap(40_000, 39_000), Some(0));
    }

    #[test]
    fn a_key_belongs_to_the_namespace_before_its_first_slash() {
        assert_eq!(namespace_of("ns_a/keys/x"), Some("ns_a"));
        assert_eq!(namespace_of("ns_a/#abc"), Some("ns_a"));
        assert_eq!(namespace_of("ns_a"), None);
        assert_eq!(probe_key("ns_a"), "ns_a/zone-probe");
        assert_eq!(namespace_of(&probe_key("ns_a")), Some("ns_a"));
    }
}
