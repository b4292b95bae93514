//! Shamir's secret sharing over GF(2⁸) exactly as hashicorp/OpenBao do it
//! (`sdk/helper/shamir/shamir.go`): the field has the AES polynomial
//! x⁸ + x⁴ + x³ + x + 1 (0x11b); a share of an n-byte secret is n + 1 bytes,
//! `y₁ … yₙ ‖ x`, one random polynomial per secret byte, all evaluated at the
//! share's x-coordinate (its last byte, never 0). [`combine`] interpolates
//! at x = 0 (Lagrange), as their `Combine` does.
//!
//! Their multiplication is the constant-time shift-and-reduce loop (older
//! Vault releases used log/exp tables for the generator 0xe5 instead; the
//! field is the same, so both give the same bytes — the tests check our
//! `mul` against those tables for every pair). Ours is the same loop.
//!
//! Must never panic, branch on secret bytes, or leave a copy of the secret
//! behind: the result is [`Zeroizing`], and the only other buffer holding
//! secret-derived bytes is zeroised too.

use zeroize::Zeroizing;

use super::AuthError;

/// `a · b` in GF(2⁸) mod 0x11b: hashicorp's branch-free `mult`.
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    let mut r: u8 = 0;
    for i in (0..8).rev() {
        // -(bit) is 0x00 or 0xff: a mask instead of a branch
        let take_a = 0u8.wrapping_sub((b >> i) & 1) & a;
        let reduce = 0u8.wrapping_sub(r >> 7) & 0x1b;
        r = take_a ^ reduce ^ r.wrapping_add(r);
    }
    r
}

/// `a⁻¹ = a²⁵⁴` (0 for 0), with hashicorp's chain of 11 multiplications.
pub(crate) fn inverse(a: u8) -> u8 {
    let mut b = mul(a, a); // a^2
    let mut c = mul(a, b); // a^3
    b = mul(c, c); // a^6
    b = mul(b, b); // a^12
    c = mul(b, c); // a^15
    b = mul(b, b); // a^24
    b = mul(b, b); // a^48
    b = mul(b, c); // a^63
    b = mul(b, b); // a^126
    b = mul(a, b); // a^127
    mul(b, b) // a^254
}

/// `a / b`; callers never divide by 0 (distinct x-coordinates).
pub(crate) fn div(a: u8, b: u8) -> u8 {
    mul(a, inverse(b))
}

/// Combines hashicorp-format shares into the secret they split. Checks, as
/// their `Combine` does: at least two shares, all the same length of at
/// least two bytes, no x-coordinate twice. Also refuses x = 0 (their
/// `Split` never makes one; such a "share" would be the secret itself).
///
/// Given fewer shares than the split's threshold this cannot know it: it
/// returns a wrong secret (every byte differs from the real one).
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let (first, rest) = match shares {
        [] => return Err(AuthError::NoShares),
        [one] => return Err(AuthError::TooFewShares { len: one.len() }),
        [first, rest @ ..] => (first, rest),
    };
    let len = first.len();
    if len < 2 {
        return Err(AuthError::ShareTooShort { index: 0, len });
    }
    for (i, s) in rest.iter().enumerate() {
        if s.len() != len {
            return Err(AuthError::ShareLengthMismatch {
                index: i + 1,
                len: s.len(),
                expected: len,
            });
        }
    }
    let mut xs = Vec::with_capacity(shares.len());
    for (i, s) in shares.iter().enumerate() {
        let x = s.last().copied().unwrap_or(0);
        if x == 0 {
            return Err(AuthError::ZeroCoordinate { index: i });
        }
        if let Some(first) = xs.iter().position(|&seen| seen == x) {
            return Err(AuthError::DuplicateShare { first, second: i });
        }
        xs.push(x);
    }
    // Lagrange basis at 0 for sample i: Π_{j≠i} (0 + x_j) / (x_i + x_j).
    // It depends only on the (public) x-coordinates, so it is computed once
    // instead of once per byte as in their loop; the field is exact, so the
    // result is the same.
    let basis: Vec<u8> = xs
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            xs.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1u8, |acc, (_, &xj)| mul(acc, div(xj, xi ^ xj)))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (share, &l) in shares.iter().zip(&basis) {
        for (out, &y) in secret.iter_mut().zip(share.iter()) {
            *out ^= mul(y, l);
        }
    }
    Ok(secret)
}

/// The unseal key from the shares, as OpenBao derives it: with one share
/// (a 1-of-1 barrier) the share *is* the key; otherwise [`combine`].
pub fn unseal_key(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    match shares {
        [one] if matches!(one.len(), 16 | 24 | 32) => Ok(Zeroizing::new(one.to_vec())),
        _ => combine(shares),
    }
}

/// hashicorp's `Split` for tests: `xs` are the shares' x-coordinates
/// (distinct, non-zero), `coeff` yields each byte polynomial's coefficients
/// of degree 1 ..= threshold-1, in that order.
#[cfg(test)]
pub(crate) fn split(
    secret: &[u8],
    xs: &[u8],
    threshold: usize,
    mut coeff: impl FnMut() -> u8,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = xs
        .iter()
        .map(|&x| {
            let mut s = vec![0u8; secret.len() + 1];
            s[secret.len()] = x;
            s
        })
        .collect();
    for (idx, &val) in secret.iter().enumerate() {
        let mut coefficients = vec![val];
        coefficients.extend((1..threshold).map(|_| coeff()));
        for (share, &x) in out.iter_mut().zip(xs) {
            // Horner, as their `evaluate`
            let y = coefficients
                .iter()
                .rev()
                .fold(0u8, |acc, &c| mul(acc, x) ^ c);
            share[idx] = y;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Vault's old `tables.go`: log/exp for the generator 0xe5 over 0x11b,
    /// built by repeated multiplication in a table-free reference `mul`.
    fn tables() -> ([u8; 256], [u8; 256]) {
        fn slow_mul(mut a: u8, mut b: u8) -> u8 {
            let mut p = 0u8;
            while b != 0 {
                if b & 1 != 0 {
                    p ^= a;
                }
                let carry = a & 0x80 != 0;
                a <<= 1;
                if carry {
                    a ^= 0x1b;
                }
                b >>= 1;
            }
            p
        }
        let (mut log, mut exp) = ([0u8; 256], [0u8; 256]);
        let mut v = 1u8;
        for i in 0..=255u8 {
            exp[i as usize] = v;
            // as in tables.go: log(1) is listed as 255, log(0) as 0 (unused)
            if i > 0 {
                log[v as usize] = i;
            }
            v = slow_mul(v, 0xe5);
        }
        (log, exp)
    }

    #[test]
    fn tables_match_vaults() {
        let (log, exp) = tables();
        // first entries of hashicorp/vault shamir/tables.go
        assert_eq!(&log[..8], &[0x00, 0xff, 0xc8, 0x08, 0x91, 0x10, 0xd0, 0x36]);
        assert_eq!(&exp[..8], &[0x01, 0xe5, 0x4c, 0xb5, 0xfb, 0x9f, 0xfc, 0x12]);
        assert_eq!(
            &exp[248..],
            &[0xaa, 0xcd, 0x9a, 0xa0, 0x75, 0x54, 0x0e, 0x01]
        );
        assert_eq!(
            &log[248..],
            &[0x68, 0x1b, 0x64, 0x04, 0x06, 0xbf, 0x83, 0x38]
        );
    }

    #[test]
    fn mul_and_div_match_the_tables_for_every_pair() {
        let (log, exp) = tables();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let by_table = if a == 0 || b == 0 {
                    0
                } else {
                    exp[(log[a as usize] as usize + log[b as usize] as usize) % 255]
                };
                assert_eq!(mul(a, b), by_table, "{a} * {b}");
                if b != 0 {
                    let q = if a == 0 {
                        0
                    } else {
                        exp[(log[a as usize] as usize + 255 - log[b as usize] as usize) % 255]
                    };
                    assert_eq!(div(a, b), q, "{a} / {b}");
                    assert_eq!(mul(div(a, b), b), a);
                }
            }
        }
        assert_eq!(inverse(0), 0);
    }

    #[test]
    fn hashicorp_field_vectors() {
        // shamir_test.go
        assert_eq!(mul(3, 7), 9);
        assert_eq!(mul(3, 0), 0);
        assert_eq!(mul(0, 3), 0);
        assert_eq!(div(0, 7), 0);
        assert_eq!(div(3, 3), 1);
        assert_eq!(div(6, 3), 2);
    }

    #[test]
    fn combine_refuses_what_hashicorp_refuses() {
        assert!(matches!(combine(&[]), Err(AuthError::NoShares)));
        assert!(matches!(
            combine(&[b"foo"]),
            Err(AuthError::TooFewShares { len: 3 })
        ));
        assert!(matches!(
            combine(&[b"foo", b"ba"]),
            Err(AuthError::ShareLengthMismatch {
                index: 1,
                len: 2,
                expected: 3
            })
        ));
        assert!(matches!(
            combine(&[b"f", b"b"]),
            Err(AuthError::ShareTooShort { index: 0, len: 1 })
        ));
        assert!(matches!(
            combine(&[b"foo", b"foo"]),
            Err(AuthError::DuplicateShare {
                first: 0,
                second: 1
            })
        ));
        assert!(matches!(
            combine(&[b"fo\x01", b"ba\x00"]),
            Err(AuthError::ZeroCoordinate { index: 1 })
        ));
    }

    #[test]
    fn every_triple_of_five_combines() {
        // shamir_test.go TestCombine, with fixed "random" coefficients
        let mut n = 7u8;
        let shares = split(b"test", &[9, 200, 3, 77, 255], 3, || {
            n = n.wrapping_mul(31).wrapping_add(17);
            n
        });
        for i in 0..5 {
            for j in 0..5 {
                for k in 0..5 {
                    if i == j || j == k || i == k {
                        continue;
                    }
                    let parts = [&shares[i][..], &shares[j][..], &shares[k][..]];
                    assert_eq!(&combine(&parts).unwrap()[..], b"test");
                }
            }
        }
    }

    #[test]
    fn one_share_is_the_key_only_at_key_length() {
        let key = [5u8; 32];
        assert_eq!(&unseal_key(&[&key]).unwrap()[..], &key);
        assert!(matches!(
            unseal_key(&[&[5u8; 33]]),
            Err(AuthError::TooFewShares { len: 33 })
        ));
    }

    /// A split: (secret, x-coordinates, threshold, coefficients with a
    /// non-zero leading one per byte), and a random subset of the shares in
    /// random order: its first `k ≥ threshold` entries.
    #[allow(clippy::type_complexity)]
    fn split_case() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, usize, Vec<u8>, Vec<usize>, usize)>
    {
        (1usize..=40, 2usize..=6)
            .prop_flat_map(|(len, parts)| (Just(len), Just(parts), 2..=parts))
            .prop_flat_map(|(len, parts, t)| {
                (
                    proptest::collection::vec(any::<u8>(), len),
                    Just((1..=255u8).collect::<Vec<u8>>()).prop_shuffle(),
                    Just(t),
                    proptest::collection::vec(any::<u8>(), len * (t - 2)),
                    proptest::collection::vec(1..=255u8, len),
                    Just((0..parts).collect::<Vec<usize>>()).prop_shuffle(),
                    t..=parts,
                )
                    .prop_map(move |(secret, xs, t, free, leads, order, k)| {
                        let xs: Vec<u8> = xs.into_iter().take(parts).collect();
                        let mut c = Vec::new();
                        for (b, lead) in leads.iter().enumerate() {
                            c.extend(free.iter().skip(b * (t - 2)).take(t - 2));
                            c.push(*lead);
                        }
                        (secret, xs, t, c, order, k)
                    })
            })
    }

    proptest! {
        #[test]
        fn any_threshold_subset_combines_and_fewer_do_not(
            (secret, xs, t, coeffs, order, k) in split_case(),
        ) {
            let mut it = coeffs.into_iter();
            let shares = split(&secret, &xs, t, || it.next().unwrap());
            let parts: Vec<&[u8]> = order.iter().take(k).map(|&i| &shares[i][..]).collect();
            prop_assert_eq!(&combine(&parts).unwrap()[..], &secret[..]);
            prop_assert_eq!(&unseal_key(&parts).unwrap()[..], &secret[..]);
            // t-1 shares (when that is still ≥ 2): every byte is wrong
            if t > 2 {
                let fewer: Vec<&[u8]> = parts.iter().take(t - 1).copied().collect();
                let wrong = combine(&fewer).unwrap();
                prop_assert!(wrong.iter().zip(&secret).all(|(a, b)| a != b));
            }
        }

        #[test]
        fn combine_never_panics(shares in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..6), 0..5)
        ) {
            let parts: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
            let _ = combine(&parts);
            let _ = unseal_key(&parts);
        }
    }
}
