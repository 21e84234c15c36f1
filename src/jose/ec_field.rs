//! Field and point arithmetic of P-256 and P-384 written for 32-bit targets (wasm32): field
//! elements in Montgomery form over 32-bit limbs (every partial product one `u64`
//! multiplication, which wasm has natively; `p256`'s own field uses 64-bit limbs and emulates
//! each 64×64→128 product with four), Jacobian points, and the mixed addition (`8M + 3S`) that
//! [`crate::jose::ecdsa_comb`] runs once per comb digit.
//!
//! Only public data reaches this module (keys, signatures, messages): the code branches on
//! values and is not constant-time.

macro_rules! field {
    ($module:ident, $n:literal, $p:expr, $order:expr, $r2:expr, $one:expr, $name:literal) => {
        #[doc = concat!("The ", $name, " base field and its points.")]
        pub mod $module {
            /// Limbs of an element.
            const N: usize = $n;
            /// The field modulus `p`, little-endian 32-bit limbs.
            const P: [u32; N] = $p;
            /// The group order `n`, little-endian 32-bit limbs.
            const ORDER: [u32; N] = $order;
            /// `R² mod p` with `R = 2^(32·N)`: converts into the Montgomery form.
            const R2: [u32; N] = $r2;
            /// `R mod p`: one in the Montgomery form.
            const ONE: [u32; N] = $one;
            /// `−p⁻¹ mod 2^32` (1 for both NIST primes, computed to stay general).
            const P0INV: u32 = neg_inverse(P[0]);
            /// Bytes of an element.
            pub const BYTES: usize = 4 * N;

            const fn neg_inverse(p0: u32) -> u32 {
                // Newton's iteration: each step doubles the number of correct low bits.
                let mut inv: u32 = 1;
                let mut i = 0;
                while i < 5 {
                    inv = inv.wrapping_mul(2u32.wrapping_sub(p0.wrapping_mul(inv)));
                    i += 1;
                }
                inv.wrapping_neg()
            }

            /// `a < b` for little-endian limbs.
            fn less(a: &[u32; N], b: &[u32; N]) -> bool {
                a.iter().rev().cmp(b.iter().rev()) == core::cmp::Ordering::Less
            }

            /// `a −= b`, returning the borrow.
            fn sub_limbs(a: &mut [u32; N], b: &[u32; N]) -> bool {
                let mut borrow = 0u64;
                for (x, &y) in a.iter_mut().zip(b) {
                    let d = u64::from(*x)
                        .wrapping_sub(u64::from(y))
                        .wrapping_sub(borrow);
                    *x = d as u32;
                    borrow = (d >> 63) & 1;
                }
                borrow != 0
            }

            /// `a += b`, returning the carry.
            fn add_limbs(a: &mut [u32; N], b: &[u32; N]) -> bool {
                let mut carry = 0u64;
                for (x, &y) in a.iter_mut().zip(b) {
                    let s = u64::from(*x) + u64::from(y) + carry;
                    *x = s as u32;
                    carry = s >> 32;
                }
                carry != 0
            }

            /// Exactly `BYTES` big-endian bytes into little-endian limbs.
            fn limbs_from_be(bytes: &[u8]) -> Option<[u32; N]> {
                if bytes.len() != BYTES {
                    return None;
                }
                let mut out = [0u32; N];
                for (limb, chunk) in out.iter_mut().zip(bytes.rchunks_exact(4)) {
                    *limb = u32::from_be_bytes(chunk.try_into().ok()?);
                }
                Some(out)
            }

            /// An element of the field in Montgomery form (`a·R mod p`), always below `p`.
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct Fe([u32; N]);

            impl Fe {
                /// Zero.
                pub const ZERO: Fe = Fe([0; N]);
                /// One.
                pub const ONE: Fe = Fe(ONE);

                /// From `BYTES` big-endian bytes; `None` unless below `p`.
                pub fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
                    let limbs = limbs_from_be(bytes)?;
                    less(&limbs, &P).then(|| Fe(limbs).mul(&Fe(R2)))
                }

                /// Whether this is zero.
                pub fn is_zero(&self) -> bool {
                    self.0.iter().all(|&l| l == 0)
                }

                /// `self + rhs`.
                pub fn add(&self, rhs: &Fe) -> Fe {
                    let mut out = self.0;
                    if add_limbs(&mut out, &rhs.0) || !less(&out, &P) {
                        sub_limbs(&mut out, &P);
                    }
                    Fe(out)
                }

                /// `self − rhs`.
                pub fn sub(&self, rhs: &Fe) -> Fe {
                    let mut out = self.0;
                    if sub_limbs(&mut out, &rhs.0) {
                        add_limbs(&mut out, &P);
                    }
                    Fe(out)
                }

                /// `2·self`.
                pub fn double(&self) -> Fe {
                    self.add(self)
                }

                /// `self²`.
                pub fn square(&self) -> Fe {
                    self.mul(self)
                }

                /// `self · rhs` (Montgomery product, CIOS: one row of `a·b_i` then one
                /// reduction step per limb of `rhs`; the result of inputs below `p` is below
                /// `2p`, one conditional subtraction makes it canonical).
                pub fn mul(&self, rhs: &Fe) -> Fe {
                    mont_mul(&self.0, &rhs.0)
                }

                /// `self⁻¹` (`self^(p−2)`; zero maps to zero).
                pub fn invert(&self) -> Fe {
                    let mut e = P;
                    let mut two = [0u32; N];
                    two[0] = 2;
                    sub_limbs(&mut e, &two);
                    let mut acc = Fe::ONE;
                    for limb in e.iter().rev() {
                        for bit in (0..32).rev() {
                            acc = acc.square();
                            if limb >> bit & 1 == 1 {
                                acc = acc.mul(self);
                            }
                        }
                    }
                    acc
                }

                /// Out of the Montgomery form: the plain integer, little-endian limbs.
                fn to_plain(self) -> [u32; N] {
                    let mut one = [0u32; N];
                    one[0] = 1;
                    mont_mul(&self.0, &one).0
                }
            }

            fn mont_mul(a: &[u32; N], b: &[u32; N]) -> Fe {
                let mut t = [0u32; N];
                let mut t_top: u32 = 0;
                for &bi in b {
                    let bi = u64::from(bi);
                    let mut c = 0u64;
                    for (tj, &aj) in t.iter_mut().zip(a) {
                        let s = u64::from(*tj) + u64::from(aj) * bi + c;
                        *tj = s as u32;
                        c = s >> 32;
                    }
                    let s = u64::from(t_top) + c;
                    let (t_n, t_n1) = (s as u32, (s >> 32) as u32);
                    let t0 = t[0];
                    let m = u64::from(t0.wrapping_mul(P0INV));
                    let mut c = (u64::from(t0) + m * u64::from(P[0])) >> 32;
                    let mut u = [0u32; N];
                    for ((uj, &tj), &pj) in u.iter_mut().zip(t.iter().skip(1)).zip(P.iter().skip(1))
                    {
                        let s = u64::from(tj) + m * u64::from(pj) + c;
                        *uj = s as u32;
                        c = s >> 32;
                    }
                    let s = u64::from(t_n) + c;
                    u[N - 1] = s as u32;
                    t_top = t_n1 + (s >> 32) as u32;
                    t = u;
                }
                if t_top != 0 || !less(&t, &P) {
                    sub_limbs(&mut t, &P);
                }
                Fe(t)
            }

            /// A point with affine coordinates (a table entry; never the identity).
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct Affine {
                x: Fe,
                y: Fe,
            }

            impl Affine {
                /// From the big-endian coordinates of a point already known to be on the curve.
                pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Affine> {
                    Some(Affine {
                        x: Fe::from_be_bytes(x)?,
                        y: Fe::from_be_bytes(y)?,
                    })
                }
            }

            /// A point in Jacobian coordinates `(X, Y, Z)` (`x = X/Z²`, `y = Y/Z³`); `Z = 0`
            /// is the identity.
            #[derive(Clone, Copy, Debug)]
            pub struct Jacobian {
                x: Fe,
                y: Fe,
                z: Fe,
            }

            impl Jacobian {
                /// `p` with `Z = 1`.
                pub fn from_affine(p: &Affine) -> Jacobian {
                    Jacobian {
                        x: p.x,
                        y: p.y,
                        z: Fe::ONE,
                    }
                }

                /// The affine forms of `points` with one inversion (Montgomery's trick);
                /// `None` if one of them is the identity.
                pub fn normalize_batch(points: &[Jacobian]) -> Option<Vec<Affine>> {
                    // prefix[j] = Z_0 · … · Z_(j−1)
                    let mut prefix = Vec::with_capacity(points.len());
                    let mut acc = Fe::ONE;
                    for p in points {
                        if p.is_identity() {
                            return None;
                        }
                        prefix.push(acc);
                        acc = acc.mul(&p.z);
                    }
                    let mut inv = acc.invert();
                    let mut out = vec![
                        Affine {
                            x: Fe::ZERO,
                            y: Fe::ZERO
                        };
                        points.len()
                    ];
                    for ((p, before), o) in points.iter().zip(&prefix).zip(&mut out).rev() {
                        let zinv = inv.mul(before);
                        inv = inv.mul(&p.z);
                        let zinv2 = zinv.square();
                        *o = Affine {
                            x: p.x.mul(&zinv2),
                            y: p.y.mul(&zinv2).mul(&zinv),
                        };
                    }
                    Some(out)
                }

                /// The identity.
                pub const IDENTITY: Jacobian = Jacobian {
                    x: Fe::ONE,
                    y: Fe::ONE,
                    z: Fe::ZERO,
                };

                /// Whether this is the identity.
                pub fn is_identity(&self) -> bool {
                    self.z.is_zero()
                }

                /// `self += ±p` (mixed addition, `8M + 3S`; equal points double, opposite
                /// points give the identity).
                pub fn add_affine(&mut self, p: &Affine, negate: bool) {
                    let py = if negate { Fe::ZERO.sub(&p.y) } else { p.y };
                    if self.is_identity() {
                        *self = Jacobian {
                            x: p.x,
                            y: py,
                            z: Fe::ONE,
                        };
                        return;
                    }
                    let z1z1 = self.z.square();
                    let u2 = p.x.mul(&z1z1);
                    let s2 = py.mul(&self.z).mul(&z1z1);
                    let h = u2.sub(&self.x);
                    let r = s2.sub(&self.y);
                    if h.is_zero() {
                        if r.is_zero() {
                            *self = self.double();
                        } else {
                            *self = Jacobian::IDENTITY;
                        }
                        return;
                    }
                    let hh = h.square();
                    let hhh = h.mul(&hh);
                    let v = self.x.mul(&hh);
                    let x3 = r.square().sub(&hhh).sub(&v.double());
                    let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&hhh));
                    let z3 = self.z.mul(&h);
                    *self = Jacobian {
                        x: x3,
                        y: y3,
                        z: z3,
                    };
                }

                /// `2·self` for `a = −3` (`3M + 5S`).
                pub fn double(&self) -> Jacobian {
                    let delta = self.z.square();
                    let gamma = self.y.square();
                    let beta = self.x.mul(&gamma);
                    let t = self.x.sub(&delta).mul(&self.x.add(&delta));
                    let alpha = t.double().add(&t);
                    let beta4 = beta.double().double();
                    let x3 = alpha.square().sub(&beta4.double());
                    let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
                    let gamma2 = gamma.square();
                    let y3 = alpha
                        .mul(&beta4.sub(&x3))
                        .sub(&gamma2.double().double().double());
                    Jacobian {
                        x: x3,
                        y: y3,
                        z: z3,
                    }
                }

                /// Whether the affine `x` of this point, reduced mod `n`, equals `r`
                /// (`BYTES` big-endian bytes, `0 < r < n`), without an inversion: `x = X/Z²`
                /// is `r` or `r + n` (when below `p`), so compare `X` with `r·Z²` and
                /// `(r + n)·Z²`. The identity matches nothing.
                pub fn x_matches(&self, r: &[u8]) -> bool {
                    let Some(r) = limbs_from_be(r) else {
                        return false;
                    };
                    if self.is_identity() || !less(&r, &ORDER) {
                        return false;
                    }
                    let x = self.x.to_plain();
                    // Montgomery product of a plain `r` and `Z²·R`: plain `r·Z²`.
                    let zz = self.z.square();
                    if mont_mul(&r, &zz.0).0 == x {
                        return true;
                    }
                    let mut r_plus_n = r;
                    if add_limbs(&mut r_plus_n, &ORDER) || !less(&r_plus_n, &P) {
                        return false;
                    }
                    mont_mul(&r_plus_n, &zz.0).0 == x
                }

                /// The affine coordinates, big-endian (tests only: one inversion).
                #[cfg(test)]
                pub fn to_affine_bytes(&self) -> Option<(Vec<u8>, Vec<u8>)> {
                    if self.is_identity() {
                        return None;
                    }
                    let zinv = self.z.invert();
                    let zinv2 = zinv.square();
                    let x = self.x.mul(&zinv2).to_plain();
                    let y = self.y.mul(&zinv2).mul(&zinv).to_plain();
                    let be = |l: [u32; N]| l.iter().rev().flat_map(|w| w.to_be_bytes()).collect();
                    Some((be(x), be(y)))
                }
            }

            #[cfg(test)]
            mod tests {
                use super::*;
                use rsa::BigUint;

                fn big(l: &[u32; N]) -> BigUint {
                    BigUint::from_slice(l)
                }

                fn limbs(v: &BigUint) -> [u32; N] {
                    let mut bytes = v.to_bytes_le();
                    bytes.resize(BYTES, 0);
                    let mut out = [0u32; N];
                    for (d, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                        *d = u32::from_le_bytes(c.try_into().unwrap());
                    }
                    out
                }

                #[test]
                fn constants_are_consistent() {
                    let p = big(&P);
                    let r = BigUint::from(1u32) << (32 * N);
                    assert_eq!(big(&R2), (&r * &r) % &p);
                    assert_eq!(big(&ONE), &r % &p);
                    assert_eq!(P[0].wrapping_mul(P0INV), u32::MAX);
                }

                #[test]
                fn arithmetic_matches_bignum() {
                    let p = big(&P);
                    let r = BigUint::from(1u32) << (32 * N);
                    let rinv = r.modpow(&(&p - 2u32), &p);
                    let values: Vec<BigUint> = vec![
                        BigUint::from(0u32),
                        BigUint::from(1u32),
                        &p - 1u32,
                        &p - 2u32,
                        BigUint::from(0xdead_beefu32) << 200,
                        (&p >> 1) + 12345u32,
                        BigUint::from_slice(&ORDER) - 1u32,
                    ];
                    let fe = |v: &BigUint| {
                        let mut bytes = v.to_bytes_be();
                        while bytes.len() < BYTES {
                            bytes.insert(0, 0);
                        }
                        Fe::from_be_bytes(&bytes).unwrap()
                    };
                    let plain = |f: Fe| big(&f.to_plain());
                    for a in &values {
                        for b in &values {
                            let (fa, fb) = (fe(a), fe(b));
                            assert_eq!(plain(fa.mul(&fb)), (a * b) % &p);
                            assert_eq!(plain(fa.add(&fb)), (a + b) % &p);
                            assert_eq!(plain(fa.sub(&fb)), (a + &p - b) % &p);
                            // The raw Montgomery product of plain values is `a·b·R⁻¹`.
                            let (la, lb) = (limbs(a), limbs(b));
                            assert_eq!(big(&mont_mul(&la, &lb).0), (a * b % &p) * &rinv % &p);
                        }
                    }
                    assert!(Fe::from_be_bytes(&[0xff; BYTES]).is_none());
                    assert!(Fe::from_be_bytes(&[0; BYTES - 1]).is_none());
                }
            }
        }
    };
}

field!(
    p256,
    8,
    [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff
    ],
    [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff
    ],
    [
        3,
        0,
        0xffff_ffff,
        0xffff_fffb,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_fffd,
        4
    ],
    [
        1,
        0,
        0,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_fffe,
        0
    ],
    "P-256"
);
field!(
    p384,
    12,
    [
        0xffff_ffff,
        0,
        0,
        0xffff_ffff,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff
    ],
    [
        0xccc5_2973,
        0xecec_196a,
        0x48b0_a77a,
        0x581a_0db2,
        0xf437_2ddf,
        0xc763_4d81,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff
    ],
    [1, 0xffff_fffe, 0, 2, 0, 0xffff_fffe, 0, 2, 1, 0, 0, 0],
    [1, 0xffff_ffff, 0xffff_ffff, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    "P-384"
);
