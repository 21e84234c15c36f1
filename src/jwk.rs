//! One JSON Web Key parsed into a typed public key the signature module can use.
