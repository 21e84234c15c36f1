//! When cached keys are fresh, due for refresh, stale-but-usable or unusable; refetch cooldowns.
