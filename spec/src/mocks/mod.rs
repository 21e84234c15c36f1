//! Mock servers: OpenID Provider, Google (metadata + OAuth + JWKS), Cloud Run stand-in.
