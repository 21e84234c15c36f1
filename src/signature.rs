//! Signature verification backends, one entry point per algorithm family.
