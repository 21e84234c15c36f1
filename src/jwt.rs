//! Compact JWS parsing: three segments, the unverified header and unverified claims.
