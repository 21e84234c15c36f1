//! Mock servers: OpenID Provider, Google (metadata + OAuth + JWKS), Cloud Run stand-in.

pub mod client;
pub mod cloudrun;
pub mod common;
pub mod google;
pub mod idp;
pub mod server;
