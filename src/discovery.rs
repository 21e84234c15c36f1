//! OIDC discovery documents: where the JWKS is, checked against the configured issuer.
