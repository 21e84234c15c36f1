//! Test-side JOSE: key generation, signing and verification with OpenSSL (independent of the filter).
