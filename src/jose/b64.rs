//! Strict base64url (RFC 7515 §2): no padding, no stray characters, canonical trailing bits.
//!
//! Every base64url segment of a token or JWK goes through [`decode`]. Strictness matters: a lenient
//! decoder lets several encodings stand for the same bytes, which breaks "same token bytes → same
//! cache entry" reasoning and hides tampering (Wycheproof's `ModifiedPadding` vectors).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// URL-safe alphabet, no padding on output, padding refused on input, non-zero trailing bits
/// refused (so every byte string has exactly one accepted encoding).
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Key material as IdPs publish it: base64url, or the standard alphabet (`+`, `/`), with or
/// without `=` padding; one alphabet per value; canonical trailing bits. RFC 7518 asks for
/// base64url, but production JWKS documents carry standard base64 with padding (Battle.net,
/// Microsoft's Azure AD v1 fixtures). Leniency here cannot make two *tokens* equivalent: it only
/// applies to keys the operator's IdP publishes. Never use it for token segments.
const KEY_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);
const KEY_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes a JWK member (see `KEY_URL` above): base64url or standard base64, padding optional.
/// `None` for whitespace, mixed alphabets, bad padding or non-canonical trailing bits.
pub fn decode_key_material(input: &[u8]) -> Option<Vec<u8>> {
    KEY_URL
        .decode(input)
        .ok()
        .or_else(|| KEY_STANDARD.decode(input).ok())
}

/// Decodes strict base64url. `None` for padding (`=`), whitespace, `+`/`/`, any other byte
/// outside the URL-safe alphabet, an impossible length (4n+1), or non-canonical trailing bits.
/// The empty input decodes to the empty vector.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    STRICT.decode(input).ok()
}

/// Encodes as base64url without padding.
pub fn encode(input: &[u8]) -> String {
    STRICT.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&bytes);
            assert!(!text.contains('='));
            assert_eq!(decode(text.as_bytes()), Some(bytes));
        }
    }

    #[test]
    fn decodes_url_safe_alphabet() {
        assert_eq!(decode(b"-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode(b""), Some(vec![]));
        assert_eq!(decode(b"Zm9v"), Some(b"foo".to_vec()));
    }

    #[test]
    fn rejects_padding() {
        assert_eq!(decode(b"Zm8="), None);
        assert_eq!(decode(b"Zg=="), None);
        assert_eq!(decode(b"Zm9v===="), None);
    }

    #[test]
    fn rejects_standard_alphabet() {
        assert_eq!(decode(b"+/8"), None);
    }

    #[test]
    fn rejects_whitespace_and_controls() {
        for bad in [
            &b"Zm 9v"[..],
            b"Zm9v\n",
            b" Zm9v",
            b"Zm\t9v",
            b"Zm9v\0",
            b"Zm9v.",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "Zg" is canonical for "f"; "Zh" sets trailing bits that carry no data.
        assert_eq!(decode(b"Zg"), Some(b"f".to_vec()));
        assert_eq!(decode(b"Zh"), None);
        assert_eq!(decode(b"Zm8"), Some(b"fo".to_vec()));
        assert_eq!(decode(b"Zm9"), None);
    }

    #[test]
    fn rejects_impossible_length() {
        assert_eq!(decode(b"Z"), None);
        assert_eq!(decode(b"Zm9vY"), None);
    }

    #[test]
    fn key_material_accepts_standard_alphabet_and_padding() {
        assert_eq!(decode_key_material(b"-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_key_material(b"+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_key_material(b"+/8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_key_material(b"Zg=="), Some(b"f".to_vec()));
    }

    #[test]
    fn key_material_rejects_mixed_alphabets_and_junk() {
        for bad in [&b"-/8="[..], b"Z g=", b"Zh==", b"Zg===", b"Zm9v\n"] {
            assert_eq!(decode_key_material(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_non_ascii() {
        assert_eq!(decode("Zm9vé".as_bytes()), None);
    }
}
