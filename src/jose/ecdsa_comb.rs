//! ECDSA P-256 / P-384 verification (SEC 1 §4.1.4, raw `r‖s` as in RFC 7518 §3.4) with
//! precomputed comb tables: `u1·G + u2·Q` becomes one mixed point addition per signed `W`-bit
//! digit of each scalar and no doublings. The table of `G` is built once per process (per wasm
//! instance); a key's table is built on its first verification and shared by its clones.
//! Tables hold affine points; the sum is Jacobian ([`crate::jose::ec_field`]: 32-bit field
//! arithmetic for wasm) and is compared with `r` without an inversion. Scalars mod `n`, key
//! decoding and the curve check are RustCrypto's (`p256`, `p384`).
//!
//! All inputs are public: nothing here needs to be constant-time.

use std::fmt;
use std::sync::{Arc, OnceLock};

macro_rules! curve {
    ($module:ident, $krate:ident, $uint:ty, $hash:ty, $invert:ident, $wg:literal, $wq:literal, $name:literal) => {
        #[doc = concat!("ECDSA over ", $name, ".")]
        pub mod $module {
            use super::*;
            use crate::jose::ec_field::$module::{Affine, Jacobian};
            use ::$krate::elliptic_curve::ff::{Field, PrimeField};
            use ::$krate::elliptic_curve::ops::{Invert, Reduce};
            use ::$krate::elliptic_curve::sec1::ToEncodedPoint;
            use ::$krate::{AffinePoint, FieldBytes, Scalar};
            use sha2::Digest;

            /// Bytes of a scalar or coordinate.
            const LEN: usize = <$uint>::BYTES;
            /// Window width (bits) of the generator's table, shared by the whole process.
            const W_G: usize = $wg;
            /// Window width (bits) of each key's table (memory per key matters more).
            const W_Q: usize = $wq;

            /// `d·2^(W·i)·P` for every window `i` and `d` in `1..=2^(W−1)`, affine.
            struct Table<const W: usize>(Vec<Affine>);

            impl<const W: usize> Table<W> {
                /// Entries per window.
                const HALF: usize = 1 << (W - 1);
                /// Windows of a scalar, plus one for the final carry.
                const WINDOWS: usize = (8 * LEN).div_ceil(W) + 1;

                /// The window bases `2^(W·i)·P` by doublings, normalised together; then each
                /// window's multiples by mixed additions, normalised together: two inversions
                /// per table.
                fn new(p: Affine) -> Option<Table<W>> {
                    let mut bases = Vec::with_capacity(Self::WINDOWS);
                    let mut base = Jacobian::from_affine(&p);
                    for i in 0..Self::WINDOWS {
                        if i > 0 {
                            for _ in 0..W {
                                base = base.double();
                            }
                        }
                        bases.push(base);
                    }
                    let bases = Jacobian::normalize_batch(&bases)?;
                    let mut points = Vec::with_capacity(Self::WINDOWS * Self::HALF);
                    for base in &bases {
                        let mut multiple = Jacobian::from_affine(base);
                        points.push(multiple);
                        for _ in 1..Self::HALF {
                            multiple.add_affine(base, false);
                            points.push(multiple);
                        }
                    }
                    Some(Table(Jacobian::normalize_batch(&points)?))
                }

                /// `acc += k·P`.
                fn add_into(&self, acc: &mut Jacobian, k: &Scalar) {
                    let digits = recode::<W>(k);
                    for (window, &d) in self.0.chunks_exact(Self::HALF).zip(&digits) {
                        let Some(point) = window.get(usize::from(d.unsigned_abs()).wrapping_sub(1))
                        else {
                            continue; // d = 0
                        };
                        acc.add_affine(point, d < 0);
                    }
                }
            }

            /// The affine point of a key or the generator in this module's arithmetic.
            fn affine(p: &AffinePoint) -> Option<Affine> {
                let encoded = p.to_encoded_point(false);
                Affine::from_coordinates(encoded.x()?, encoded.y()?)
            }

            /// The scalar in signed base-2^W digits in `−2^(W−1)..2^(W−1)`, least significant
            /// first; the last digit takes the final carry (0 or 1).
            fn recode<const W: usize>(k: &Scalar) -> Vec<i16> {
                let be = k.to_repr();
                let byte = |i: usize| {
                    LEN.checked_sub(1 + i)
                        .and_then(|j| be.get(j))
                        .map_or(0u16, |&b| u16::from(b))
                };
                let half = 1i16 << (W - 1);
                let windows = Table::<W>::WINDOWS;
                let mut digits = Vec::with_capacity(windows);
                let mut carry = 0i16;
                for i in 0..windows {
                    let bit = i * W;
                    let raw = (byte(bit / 8) | byte(bit / 8 + 1) << 8) >> (bit % 8);
                    // W ≤ 8 bits plus a carry of at most 1: fits an i16.
                    let v = (raw & ((1 << W) - 1)) as i16 + carry;
                    let (digit, c) = if v >= half { (v - 2 * half, 1) } else { (v, 0) };
                    digits.push(digit);
                    carry = c;
                }
                digits
            }

            fn generator_table() -> Option<&'static Table<W_G>> {
                static G: OnceLock<Option<Table<W_G>>> = OnceLock::new();
                G.get_or_init(|| Table::new(affine(&AffinePoint::GENERATOR)?))
                    .as_ref()
            }

            /// A verified-on-the-curve public key and its (lazily built, shared) comb table.
            #[derive(Clone)]
            pub struct Key {
                point: AffinePoint,
                table: Arc<OnceLock<Option<Table<W_Q>>>>,
            }

            impl Key {
                /// From SEC1 bytes; `None` for an invalid encoding, a point off the curve or the
                /// identity.
                pub fn from_sec1_bytes(sec1: &[u8]) -> Option<Key> {
                    let vk = ::$krate::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()?;
                    Some(Key {
                        point: *vk.as_affine(),
                        table: Arc::new(OnceLock::new()),
                    })
                }

                /// Whether `signature` (`r‖s`, each exactly the scalar length, `0 < r, s < n`)
                /// is a valid signature of `message`.
                pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
                    self.verify_inner(message, signature).unwrap_or(false)
                }

                fn verify_inner(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
                    if signature.len() != 2 * LEN {
                        return None;
                    }
                    let (r_bytes, s) = signature.split_at(LEN);
                    let r = scalar(r_bytes)?;
                    let s = scalar(s)?;
                    // The hash is exactly as long as a scalar here (SHA-256/P-256, SHA-384/P-384).
                    let hash: FieldBytes = <$hash>::digest(message);
                    let z = <Scalar as Reduce<$uint>>::reduce_bytes(&hash);
                    let w = Option::<Scalar>::from(Invert::$invert(&s))?;
                    let table = self
                        .table
                        .get_or_init(|| Table::new(affine(&self.point)?))
                        .as_ref()?;
                    let mut acc = Jacobian::IDENTITY;
                    generator_table()?.add_into(&mut acc, &(z * w));
                    table.add_into(&mut acc, &(r * w));
                    Some(acc.x_matches(r_bytes))
                }
            }

            /// A scalar in `1..n` from exactly `LEN` big-endian bytes.
            fn scalar(bytes: &[u8]) -> Option<Scalar> {
                if bytes.len() != LEN {
                    return None;
                }
                let mut repr = FieldBytes::default();
                repr.copy_from_slice(bytes);
                Option::<Scalar>::from(Scalar::from_repr(repr))
                    .filter(|k| !bool::from(Field::is_zero(k)))
            }

            impl PartialEq for Key {
                fn eq(&self, other: &Key) -> bool {
                    self.point == other.point
                }
            }

            impl Eq for Key {}

            impl fmt::Debug for Key {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.debug_struct("Key").field("point", &self.point).finish()
                }
            }

            #[cfg(test)]
            mod tests {
                use super::*;

                fn round_trip<const W: usize>(k: Scalar) {
                    let digits = recode::<W>(&k);
                    let mut back = Scalar::ZERO;
                    for &d in digits.iter().rev() {
                        back *= Scalar::from(1u64 << W);
                        let abs = Scalar::from(u64::from(d.unsigned_abs()));
                        back += if d < 0 { -abs } else { abs };
                    }
                    assert_eq!(back, k, "W = {W}");
                    let half = 1i16 << (W - 1);
                    assert!(digits.iter().all(|d| (-half..half).contains(d)));
                }

                #[test]
                fn recode_round_trips() {
                    for k in [
                        Scalar::ZERO,
                        Scalar::ONE,
                        -Scalar::ONE,
                        -Scalar::from(2u64),
                        Scalar::from(0x8888_8888u64),
                    ] {
                        round_trip::<4>(k);
                        round_trip::<5>(k);
                        round_trip::<6>(k);
                        round_trip::<7>(k);
                        round_trip::<8>(k);
                    }
                }

                use ::$krate::ProjectivePoint;

                fn coordinates(p: ProjectivePoint) -> (Vec<u8>, Vec<u8>) {
                    let e = p.to_affine().to_encoded_point(false);
                    (e.x().unwrap().to_vec(), e.y().unwrap().to_vec())
                }

                #[test]
                fn comb_matches_scalar_multiplication() {
                    let p = ProjectivePoint::GENERATOR * Scalar::from(12345u64);
                    let q = Table::<W_Q>::new(affine(&p.to_affine()).unwrap()).unwrap();
                    let g = generator_table().unwrap();
                    let big = Scalar::from(0xfedc_ba98_7654_3210u64);
                    for k in [
                        Scalar::ONE,
                        -Scalar::ONE,
                        Scalar::from(0xfedc_ba98u64),
                        -Scalar::from(7u64),
                        big * big * big * big,
                        -(big * big * big),
                    ] {
                        let mut acc = Jacobian::IDENTITY;
                        q.add_into(&mut acc, &k);
                        assert_eq!(acc.to_affine_bytes().unwrap(), coordinates(p * k));
                        let mut acc = Jacobian::IDENTITY;
                        g.add_into(&mut acc, &k);
                        assert_eq!(
                            acc.to_affine_bytes().unwrap(),
                            coordinates(ProjectivePoint::GENERATOR * k)
                        );
                        // Both tables into one sum, equal points and opposites included.
                        let mut acc = Jacobian::IDENTITY;
                        g.add_into(&mut acc, &k);
                        q.add_into(&mut acc, &k);
                        let want = ProjectivePoint::GENERATOR * k + p * k;
                        assert_eq!(acc.to_affine_bytes().unwrap(), coordinates(want));
                    }
                    // k·G + (−k)·G is the identity; k·G + k·G doubles inside a mixed addition.
                    let k = big * big;
                    let mut acc = Jacobian::IDENTITY;
                    g.add_into(&mut acc, &k);
                    g.add_into(&mut acc, &-k);
                    assert!(acc.is_identity());
                    let mut acc = Jacobian::IDENTITY;
                    g.add_into(&mut acc, &k);
                    g.add_into(&mut acc, &k);
                    assert_eq!(
                        acc.to_affine_bytes().unwrap(),
                        coordinates(ProjectivePoint::GENERATOR * (k + k))
                    );
                }

                #[test]
                fn x_matches_compares_x_mod_n() {
                    let k = Scalar::from(0x1234_5678_9abc_def0u64);
                    let point = ProjectivePoint::GENERATOR * k;
                    let (x, _) = coordinates(point);
                    let g = generator_table().unwrap();
                    let mut acc = Jacobian::IDENTITY;
                    g.add_into(&mut acc, &k);
                    assert!(acc.x_matches(&x));
                    let mut other = x.clone();
                    *other.last_mut().unwrap() ^= 1;
                    assert!(!acc.x_matches(&other));
                    assert!(!Jacobian::IDENTITY.x_matches(&x));
                }
            }
        }
    };
}

// Inversion of `s`: `invert_vartime` measured faster for P-256 (302 vs 370 µs per verification
// with the crate's field), `invert` for P-384 (1.79 vs 1.86 ms). Windows (generator, key), tables
// affine (2 coordinates): P-256 (7, 6): the generator's 38 × 64 points × 64 B ≈ 156 KB once per
// worker, a key's 44 × 32 × 64 B ≈ 90 KB; P-384 (7, 5): 56 × 64 × 96 B ≈ 344 KB and
// 78 × 16 × 96 B ≈ 120 KB. 38 + 44 (P-256) and 56 + 78 (P-384) mixed additions per verification
// (BENCHMARKS.md, issue 20).
curve!(
    p256,
    p256,
    ::p256::U256,
    sha2::Sha256,
    invert_vartime,
    7,
    6,
    "P-256 with SHA-256"
);
curve!(
    p384,
    p384,
    ::p384::U384,
    sha2::Sha384,
    invert,
    7,
    5,
    "P-384 with SHA-384"
);
