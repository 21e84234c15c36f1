//! JOSE, kept apart from the filter: JWS parsing, JWKs and JWK Sets, algorithms, signature
//! backends and the fixed verification order. Nothing here knows about the host, the request or
//! the route beyond the rules a verification is given; refusals are its own [`TokenError`], which
//! the filter maps to its refusals (`reject::AuthError`) in one place.
//!
//! Reading order: [`verifier`] (the order), then the steps it calls.

pub mod alg;
pub mod b64;
pub mod ec_field;
pub mod ecdsa_comb;
pub mod error;
pub mod jwk;
pub mod jwk_set;
pub mod jwt;
pub mod rsa_public;
pub mod signature;
pub mod verifier;

pub use error::TokenError;
