//! Token verification in a fixed order: size, segments, header, alg, key, signature, claims.
