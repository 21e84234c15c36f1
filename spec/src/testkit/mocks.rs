//! Typed wrappers around the running mock binaries (`mock-idp`, `mock-google`, `cloudrun`).
