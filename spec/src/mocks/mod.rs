//! Mock servers: OpenID Provider, Google (metadata + OAuth + JWKS + STS + IAM Credentials), EC2
//! instance metadata, Cloud Run stand-in.

pub mod aws;
pub mod client;
pub mod cloudrun;
pub mod common;
pub mod google;
pub mod idp;
pub mod server;
pub mod sigv4;
