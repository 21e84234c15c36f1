//! Google-signed identity tokens for Cloud Run: metadata server and service-account sources.
