//! The test world for cloudrun_oidc (see README.md).
