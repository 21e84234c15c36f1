//! Strict base64url (RFC 7515 §2): no padding, no stray characters, canonical trailing bits.
