//! RSA signature verification (RFC 8017 RSASSA-PKCS1-v1_5 and RSASSA-PSS) on a specialised
//! public-key path: per-key Montgomery constants computed once when the JWK is parsed, `w`-bit
//! limbs (27 or 28 bits in `u32`) so that a whole column of products sums in a `u64` without
//! carries (product-scanning Montgomery multiplication, FIPS order), a dedicated squaring, and
//! a wasm SIMD128 dot product when the build enables `simd128`.
//!
//! Only public data is handled (key, signature, message), so nothing here is constant-time.
//! Every input is checked: the signature must be exactly the modulus length and below the
//! modulus; the encoded message is compared whole (PKCS#1 v1.5) or checked step by step (PSS,
//! salt length = hash length). No ASN.1 is ever parsed from a signature.

use rsa::BigUint;
use sha2::Digest;

/// Whether this build runs the wasm SIMD128 dot product (the shipped `.wasm` does; the vector
/// tests built for wasm32 check it, `spec/tests/wasm_vectors.rs`).
pub const SIMD128: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// An RSA public key with its precomputed Montgomery form (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKey {
    /// The modulus, big-endian, without leading zero bytes: its length is the signature length.
    n_be: Vec<u8>,
    /// The modulus size in bits.
    bits: usize,
    /// The public exponent (odd, 3 ..= 2^33 - 1, checked by the JWK parser).
    e: u64,
    /// Limb width in bits: 28 up to 3582-bit moduli, 27 above (column sums must fit a `u64`).
    w: u32,
    /// The modulus in `k` little-endian `w`-bit limbs, `R = 2^(w·k) > 4n`.
    n: Vec<u32>,
    /// `n` with its limbs reversed (the product-scanning columns read it backwards).
    n_rev: Vec<u32>,
    /// `-n⁻¹ mod 2^w`.
    n0inv: u32,
    /// `R² mod n`, reversed limbs (only ever used as the right operand).
    r2_rev: Vec<u32>,
}

/// Why a modulus/exponent pair cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidRsaKey;

impl RsaKey {
    /// Precomputes the Montgomery constants of an odd modulus `n` (big-endian, at most 8192
    /// bits, already validated by the caller) for the exponent `e` (odd, ≥ 3, < 2^33).
    pub fn new(n: &BigUint, e: u64) -> Result<RsaKey, InvalidRsaKey> {
        let bits = n.bits();
        if !(16..=8192).contains(&bits) || !(3..1 << 33).contains(&e) || e & 1 == 0 {
            return Err(InvalidRsaKey);
        }
        let n_be = n.to_bytes_be();
        if n_be.last().is_none_or(|b| b & 1 == 0) {
            return Err(InvalidRsaKey);
        }
        // R > 4n lets every Montgomery product stay below 2n without a final subtraction.
        let (w, k) = [28u32, 27, 26]
            .into_iter()
            .map(|w| (w, (bits + 2).div_ceil(w as usize)))
            .find(|&(w, k)| fits(w, k))
            .ok_or(InvalidRsaKey)?;
        let n_limbs = to_limbs(&n_be, w, k).ok_or(InvalidRsaKey)?;
        let r_squared: BigUint = (BigUint::from(1u32) << (2 * w as usize * k)) % n;
        let mut r2_rev = to_limbs(&r_squared.to_bytes_be(), w, k).ok_or(InvalidRsaKey)?;
        r2_rev.reverse();
        let n0 = *n_limbs.first().ok_or(InvalidRsaKey)?;
        // Newton's iteration: each step doubles the number of correct low bits (1 → 32).
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg() & ((1u32 << w) - 1);
        let mut n_rev = n_limbs.clone();
        n_rev.reverse();
        Ok(RsaKey {
            n_be,
            bits,
            e,
            w,
            n: n_limbs,
            n_rev,
            n0inv,
            r2_rev,
        })
    }

    /// The modulus length in bytes (the only accepted signature length).
    pub fn size(&self) -> usize {
        self.n_be.len()
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// RSAVP1: `signature^e mod n` as `size()` big-endian bytes, or `None` when the signature
    /// is not exactly `size()` bytes or not below the modulus.
    pub fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        // Same length, so the big-endian byte strings compare like the numbers.
        if signature.len() != self.n_be.len() || signature >= self.n_be.as_slice() {
            return None;
        }
        let k = self.n.len();
        let x = to_limbs(signature, self.w, k)?;
        let mut x_rev = x.clone();
        x_rev.reverse();
        let mut m = vec![0u32; k];
        let mut xr = vec![0u32; k];
        // x·R mod n (below 2n): the Montgomery form of the signature.
        self.mont_mul(&x, &self.r2_rev, &mut m, &mut xr)?;
        let mut xr_rev = xr.clone();
        xr_rev.reverse();
        let mut acc = xr.clone();
        let mut tmp = vec![0u32; k];
        let mut acc_rev = vec![0u32; k];
        let top = 63 - self.e.leading_zeros();
        // Left to right over the bits below the top one; the last bit (e is odd) multiplies
        // by the plain signature, which leaves the Montgomery domain for free.
        for bit in (0..top).rev() {
            self.mont_sqr(&acc, &mut acc_rev, &mut m, &mut tmp)?;
            std::mem::swap(&mut acc, &mut tmp);
            let last = bit == 0;
            if self.e >> bit & 1 == 1 {
                let by = if last { &x_rev } else { &xr_rev };
                self.mont_mul(&acc, by, &mut m, &mut tmp)?;
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // acc < 2n: one conditional subtraction gives the residue.
        if !less_than(&acc, &self.n) {
            sub_in_place(&mut acc, &self.n, self.w);
        }
        let mut out = vec![0u8; self.n_be.len()];
        to_be_bytes(&acc, self.w, &mut out)?;
        Some(out)
    }

    /// Montgomery product `a·b·R⁻¹`, below `2n` when `a, b < 2n`; `b_rev` holds `b`'s limbs
    /// reversed. Product scanning: column `i` sums `a_j·b_(i−j) + m_j·n_(i−j)` in one `u64`.
    fn mont_mul(&self, a: &[u32], b_rev: &[u32], m: &mut [u32], out: &mut [u32]) -> Option<()> {
        self.reduce_columns(m, out, |i, k| {
            if i < k {
                Some(dot(a.get(..=i)?, b_rev.get(k - 1 - i..)?))
            } else {
                let lo = i + 1 - k;
                Some(dot(a.get(lo..)?, b_rev.get(..k - lo)?))
            }
        })
    }

    /// Montgomery square `a²·R⁻¹`: each column's cross products are summed once and doubled.
    /// `a_rev` is scratch space of `a`'s length (it receives `a` reversed).
    fn mont_sqr(&self, a: &[u32], a_rev: &mut [u32], m: &mut [u32], out: &mut [u32]) -> Option<()> {
        let k = self.n.len();
        for (r, &x) in a_rev.iter_mut().zip(a.iter().rev()) {
            *r = x;
        }
        let a_rev = &*a_rev;
        self.reduce_columns(m, out, |i, _| {
            // Pairs j < i − j with both indices below k.
            let lo = (i + 1).saturating_sub(k);
            let mid = i.div_ceil(2).max(lo);
            let base = k - 1 + lo - i; // index of a_(i−lo) in a_rev
            let cross = dot(a.get(lo..mid)?, a_rev.get(base..base + (mid - lo))?);
            let diag = if i % 2 == 0 {
                let d = u64::from(*a.get(i / 2)?);
                d * d
            } else {
                0
            };
            Some(2 * cross + diag)
        })
    }

    /// The Montgomery reduction interleaved with the columns of a product whose column sums
    /// `product(i, k)` gives: `m_i` is chosen so that column `i < k` becomes divisible by
    /// `2^w`; the upper `k` columns are the result.
    fn reduce_columns(
        &self,
        m: &mut [u32],
        out: &mut [u32],
        product: impl Fn(usize, usize) -> Option<u64>,
    ) -> Option<()> {
        let k = self.n.len();
        let w = self.w;
        let mask = (1u64 << w) - 1;
        let n0 = u64::from(*self.n.first()?);
        let n0inv = u64::from(self.n0inv);
        let mut acc: u64 = 0;
        for i in 0..k {
            acc += product(i, k)?;
            acc += dot(m.get(..i)?, self.n_rev.get(k - 1 - i..k - 1)?);
            let mi = ((acc & mask) * n0inv) & mask;
            *m.get_mut(i)? = mi as u32;
            acc += mi * n0;
            acc >>= w;
        }
        for i in k..2 * k - 1 {
            let lo = i + 1 - k;
            acc += product(i, k)?;
            acc += dot(m.get(lo..)?, self.n_rev.get(..k - lo)?);
            *out.get_mut(i - k)? = (acc & mask) as u32;
            acc >>= w;
        }
        // The result is below 2n < R, so the last column fits one limb.
        *out.get_mut(k - 1)? = u32::try_from(acc).ok()?;
        Some(())
    }
}

/// Whether `k` limbs of `w` bits keep every column sum of a Montgomery product below 2^64:
/// at most `2k` products below `2^2w`, plus the previous column's carry (below `2^(64−w)`).
fn fits(w: u32, k: usize) -> bool {
    let Ok(k) = u128::try_from(k) else {
        return false;
    };
    let max_product = u128::from((1u64 << w) - 1).pow(2);
    2 * k * max_product + (1u128 << (64 - w)) < 1u128 << 64
}

/// `Σ x_i·y_i` over equal-length slices. The caller guarantees the sum fits (see [`fits`]).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| u64::from(a) * u64::from(b))
        .sum()
}

/// `Σ x_i·y_i` with wasm SIMD128: four limbs per load, two 32×32→64 products per `extmul`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    use core::arch::wasm32::{
        i64x2_add, u64x2, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane,
        v128_load,
    };
    let xs = x.chunks_exact(4);
    let ys = y.chunks_exact(4);
    let tail: u64 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(&a, &b)| u64::from(a) * u64::from(b))
        .sum();
    let mut lo = u64x2(0, 0);
    let mut hi = u64x2(0, 0);
    for (a, b) in xs.zip(ys) {
        // SAFETY: `chunks_exact(4)` yields exactly four `u32` (16 bytes); `v128_load` has no
        // alignment requirement.
        let (va, vb) = unsafe { (v128_load(a.as_ptr().cast()), v128_load(b.as_ptr().cast())) };
        lo = i64x2_add(lo, u64x2_extmul_low_u32x4(va, vb));
        hi = i64x2_add(hi, u64x2_extmul_high_u32x4(va, vb));
    }
    let sum = i64x2_add(lo, hi);
    u64x2_extract_lane::<0>(sum) + u64x2_extract_lane::<1>(sum) + tail
}

/// Big-endian bytes into `k` little-endian `w`-bit limbs; `None` if the value needs more.
fn to_limbs(be: &[u8], w: u32, k: usize) -> Option<Vec<u32>> {
    let mut out = vec![0u32; k];
    let mask = (1u64 << w) - 1;
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut idx = 0usize;
    for &b in be.iter().rev() {
        acc |= u64::from(b) << nbits;
        nbits += 8;
        if nbits >= w {
            *out.get_mut(idx)? = (acc & mask) as u32;
            idx += 1;
            acc >>= w;
            nbits -= w;
        }
    }
    if acc != 0 {
        *out.get_mut(idx)? = acc as u32;
    }
    Some(out)
}

/// `w`-bit limbs into exactly `out.len()` big-endian bytes; `None` if the value does not fit.
fn to_be_bytes(limbs: &[u32], w: u32, out: &mut [u8]) -> Option<()> {
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut dst = out.iter_mut().rev();
    for &limb in limbs {
        acc |= u64::from(limb) << nbits;
        nbits += w;
        while nbits >= 8 {
            let byte = (acc & 0xff) as u8;
            match dst.next() {
                Some(d) => *d = byte,
                None if byte == 0 => {}
                None => return None,
            }
            acc >>= 8;
            nbits -= 8;
        }
    }
    match dst.next() {
        Some(d) => *d = acc as u8,
        None if acc == 0 => {}
        None => return None,
    }
    dst.for_each(|d| *d = 0);
    Some(())
}

/// `a < b` for equal-length little-endian limb vectors.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// `a −= b` (`a ≥ b`), `w`-bit limbs.
fn sub_in_place(a: &mut [u32], b: &[u32], w: u32) {
    let mask = (1i64 << w) - 1;
    let mut borrow = 0i64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = i64::from(*x) - i64::from(y) + borrow;
        *x = (d & mask) as u32;
        borrow = d >> w;
    }
}

/// The DER `DigestInfo` prefix of each hash (RFC 8017 §9.2 note 1), with the `NULL` parameters.
pub const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// See [`SHA256_PREFIX`].
pub const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
/// See [`SHA256_PREFIX`].
pub const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.2): the recovered block must equal, byte for byte,
/// `00 01 FF…FF 00 ‖ DigestInfo prefix ‖ H(message)` (at least 8 `FF`).
pub fn verify_pkcs1v15<D: Digest>(
    key: &RsaKey,
    prefix: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Some(em) = key.public_op(signature) else {
        return false;
    };
    let hash = D::digest(message);
    let t_len = prefix.len() + hash.len();
    let Some(ps_len) = em.len().checked_sub(t_len + 3).filter(|&p| p >= 8) else {
        return false;
    };
    let mut expected = Vec::with_capacity(em.len());
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(2 + ps_len, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    expected.extend_from_slice(&hash);
    em == expected
}

/// RSASSA-PSS (RFC 8017 §8.1.2, EMSA-PSS-VERIFY §9.1.2) with MGF1 over the same hash and a
/// salt exactly as long as the hash (RFC 7518 §3.5).
pub fn verify_pss<D: Digest>(key: &RsaKey, message: &[u8], signature: &[u8]) -> bool {
    verify_pss_inner::<D>(key, message, signature).is_some_and(|ok| ok)
}

fn verify_pss_inner<D: Digest>(key: &RsaKey, message: &[u8], signature: &[u8]) -> Option<bool> {
    let out = key.public_op(signature)?;
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = key.bits().checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    // I2OSP(m, emLen): when emLen is one byte shorter than the modulus, that byte must be 0.
    let em = match out.len().checked_sub(em_len)? {
        0 => out.as_slice(),
        1 if out.first() == Some(&0) => out.get(1..)?,
        _ => return Some(false),
    };
    if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return Some(false);
    }
    let db_len = em_len - h_len - 1;
    let masked_db = em.get(..db_len)?;
    let h = em.get(db_len..db_len + h_len)?;
    // The leftmost 8·emLen − emBits bits (0..=7) of the block must be zero.
    let top_mask = 0xffu8 >> (8 * em_len - em_bits);
    if masked_db.first()? & !top_mask != 0 {
        return Some(false);
    }
    let mut db = mgf1::<D>(h, db_len);
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    *db.first_mut()? &= top_mask;
    let ps_len = db_len - s_len - 1;
    if db.get(..ps_len)?.iter().any(|&b| b != 0) || db.get(ps_len) != Some(&0x01) {
        return Some(false);
    }
    let salt = db.get(ps_len + 1..)?;
    let mut m_prime = D::new();
    m_prime.update([0u8; 8]);
    m_prime.update(D::digest(message));
    m_prime.update(salt);
    Some(m_prime.finalize()[..] == *h)
}

/// MGF1 (RFC 8017 §B.2.1): `len` bytes of `H(seed ‖ counter)`.
fn mgf1<D: Digest>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut counter = 0u32;
    while out.len() < len {
        let mut d = D::new();
        d.update(seed);
        d.update(counter.to_be_bytes());
        out.extend_from_slice(&d.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::{BigNum, BigNumContext};

    fn key_for(n: &BigNum, e: u64) -> RsaKey {
        RsaKey::new(&BigUint::from_bytes_be(&n.to_vec()), e).unwrap()
    }

    /// The public operation against OpenSSL's `mod_exp` for random moduli of every limb width,
    /// random bases (including 0, 1, n − 1) and several exponents.
    #[test]
    fn public_op_matches_openssl_mod_exp() {
        let mut ctx = BigNumContext::new().unwrap();
        for bits in [2048, 2049, 2056, 3072, 3582, 3583, 4096, 8192] {
            let mut n = BigNum::new().unwrap();
            n.rand(bits, openssl::bn::MsbOption::ONE, true).unwrap();
            for e in [3u64, 17, 65537, (1 << 33) - 1] {
                let key = key_for(&n, e);
                let len = key.size();
                let mut bases = vec![BigNum::new().unwrap(), BigNum::from_u32(1).unwrap()];
                let mut nm1 = BigNum::new().unwrap();
                nm1.checked_sub(&n, &BigNum::from_u32(1).unwrap()).unwrap();
                bases.push(nm1);
                for _ in 0..3 {
                    let mut x = BigNum::new().unwrap();
                    n.rand_range(&mut x).unwrap();
                    bases.push(x);
                }
                for x in bases {
                    let mut want = BigNum::new().unwrap();
                    want.mod_exp(
                        &x,
                        &BigNum::from_dec_str(&e.to_string()).unwrap(),
                        &n,
                        &mut ctx,
                    )
                    .unwrap();
                    let got = key.public_op(&x.to_vec_padded(len as i32).unwrap());
                    assert_eq!(
                        got,
                        Some(want.to_vec_padded(len as i32).unwrap()),
                        "bits {bits} e {e}"
                    );
                }
                // n itself and anything above is refused, as is a wrong length.
                assert_eq!(key.public_op(&n.to_vec()), None);
                assert_eq!(key.public_op(&vec![0xff; len]), None);
                assert_eq!(key.public_op(&vec![0; len - 1]), None);
                assert_eq!(key.public_op(&vec![0; len + 1]), None);
            }
        }
    }

    #[test]
    fn refuses_unusable_parameters() {
        let n = BigUint::from_bytes_be(&[0xff; 256]);
        assert!(RsaKey::new(&n, 1).is_err());
        assert!(RsaKey::new(&n, 4).is_err());
        assert!(RsaKey::new(&n, 1 << 33).is_err());
        assert!(RsaKey::new(&BigUint::from_bytes_be(&[0xfe; 256]), 3).is_err());
        assert!(RsaKey::new(&BigUint::from_bytes_be(&[0xff; 1025]), 3).is_err());
    }

    #[test]
    fn limb_conversions_round_trip() {
        let bytes: Vec<u8> = (1..=255u8).cycle().take(300).collect();
        for w in [27, 28] {
            let k = (bytes.len() * 8 + 2).div_ceil(w as usize);
            let limbs = to_limbs(&bytes, w, k).unwrap();
            let mut back = vec![0u8; bytes.len()];
            to_be_bytes(&limbs, w, &mut back).unwrap();
            assert_eq!(back, bytes);
            let mut short = vec![0u8; bytes.len() - 1];
            assert!(to_be_bytes(&limbs, w, &mut short).is_none());
            assert!(to_limbs(&bytes, w, k - 12).is_none());
        }
    }
}
