//! Scaled dot-product attention reference: forward (saving each row's log-sum-exp) and backward.

// B batch, H query heads, Hkv K/V heads, G = H / Hkv query heads per K/V head (query head h
// reads K/V head h / G), Tq queries, Tk keys, D query/key head dim, Dv value head dim.
//   S[b,h,i,j]  = scale · Σ_d q[b,h,i,d] k[b,h/G,j,d] + mask[b,h,i,j]   (−∞ if causal, j > i)
//   LSE[b,h,i]  = log Σ_j exp S[b,h,i,j]   (+∞ for a row with no finite S, so P = 0 there)
//   P = exp(S − LSE),   O[b,h,i,e] = Σ_j P[i,j] v[b,h/G,j,e]
// Backward, given dO:
//   Di = Σ_e dO[i,e] O[i,e],   dP = dO Vᵀ,   dS = P ∘ (dP − Di)
//   dQ = scale · dS K,   dK = scale · Σ_{h of the group} dSᵀ Q,   dV = Σ_{h of the group} Pᵀ dO
//   (dMask = dS, summed over the mask's broadcast dims; see nn/functional/attention.rs)
// q, k, v, the mask and dO are read through their strides (permuted views need no copy); O,
// LSE and the gradients are contiguous. Queries go in blocks of `RB` rows: the score block
// RB × Tk stays in cache, and with a causal mask the keys after the block's last row are
// skipped (a block needs keys j < its end only).

use super::fastmath::exp;
use rayon::prelude::*;

/// Query rows per block.
const RB: usize = 32;

/// A rank-4 strided view: element `[b, h, t, d]` is at `off + b·s[0] + h·s[1] + t·s[2] + d·s[3]`
/// (strides 0 for broadcast dims of a mask).
#[derive(Clone, Copy, Debug)]
pub(crate) struct View4 {
    pub(crate) off: usize,
    pub(crate) s: [usize; 4],
}

impl View4 {
    /// The offset of the matrix `[b, h, .., ..]`.
    fn at(&self, b: usize, h: usize) -> usize {
        self.off + b * self.s[0] + h * self.s[1]
    }
    /// Whether every index the view can touch for `dims` lies below `len`.
    fn fits(&self, dims: [usize; 4], len: usize) -> bool {
        if dims.contains(&0) {
            return true;
        }
        let last: usize = self.off + (0..4).map(|i| (dims[i] - 1) * self.s[i]).sum::<usize>();
        last < len
    }
}

/// The sizes and options of one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) b: usize,
    pub(crate) h: usize,
    pub(crate) hkv: usize,
    pub(crate) tq: usize,
    pub(crate) tk: usize,
    pub(crate) d: usize,
    pub(crate) dv: usize,
    pub(crate) scale: f32,
    pub(crate) causal: bool,
}

/// An input: its storage and its view.
pub(crate) type Input<'a> = (&'a [f32], View4);

/// `C = α · A · B + β · C` with A `m × k` and B `k × n` at general strides, C row-major with
/// row stride `ldc`.
///
/// SAFETY (callers): every element `a[i·rsa + p·csa]` (i < m, p < k), `b[p·rsb + j·csb]` and
/// `c[i·ldc + j]` lies inside its slice; the callers derive the offsets from views checked by
/// [`View4::fits`] and from buffers they sized.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    (rsa, csa): (usize, usize),
    b: *const f32,
    (rsb, csb): (usize, usize),
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: C = β·C (sgemm is not asked to handle it).
        for i in 0..m {
            for j in 0..n {
                let c = c.add(i * ldc + j);
                *c = if beta == 0.0 { 0.0 } else { beta * *c };
            }
        }
        return;
    }
    matrixmultiply::sgemm(
        m,
        k,
        n,
        alpha,
        a,
        rsa as isize,
        csa as isize,
        b,
        rsb as isize,
        csb as isize,
        beta,
        c,
        ldc as isize,
        1,
    );
}

/// Keys that can be unmasked for query rows `r0..r1`: all of them, or with the causal mask
/// `j ≤ i < r1`.
fn keys_for(s: &Dims, r1: usize) -> usize {
    if s.causal {
        r1.min(s.tk)
    } else {
        s.tk
    }
}

/// Fills `sc` (rows `r0..r0 + m` × `nk` keys, row stride `nk`) with the scores
/// `scale · Q Kᵀ + mask`, −∞ above the causal diagonal.
///
/// SAFETY: as [`gemm`]; `q`, `k` and the mask views were checked with [`View4::fits`].
#[allow(clippy::too_many_arguments)]
unsafe fn scores(
    s: &Dims,
    (b, h, r0, m, nk): (usize, usize, usize, usize, usize),
    q: &Input,
    k: &Input,
    mask: Option<&Input>,
    sc: &mut [f32],
) {
    let (qd, qv) = q;
    let (kd, kv) = k;
    let hk = h / (s.h / s.hkv);
    gemm(
        m,
        s.d,
        nk,
        s.scale,
        qd.as_ptr().add(qv.at(b, h) + r0 * qv.s[2]),
        (qv.s[2], qv.s[3]),
        kd.as_ptr().add(kv.at(b, hk)),
        (kv.s[3], kv.s[2]),
        0.0,
        sc.as_mut_ptr(),
        nk,
    );
    for (r, row) in sc[..m * nk].chunks_exact_mut(nk).enumerate() {
        let i = r0 + r;
        if let Some((md, mv)) = mask {
            let o = mv.at(b, h) + i * mv.s[2];
            for (j, x) in row.iter_mut().enumerate() {
                *x += md[o + j * mv.s[3]];
            }
        }
        if s.causal && i + 1 < nk {
            row[i + 1..].fill(f32::NEG_INFINITY);
        }
    }
}

/// Forward: `(O (B, H, Tq, Dv), LSE (B, H, Tq))`, both contiguous.
pub(crate) fn forward(
    s: &Dims,
    q: Input,
    k: Input,
    v: Input,
    mask: Option<Input>,
) -> (Vec<f32>, Vec<f32>) {
    check(s, &q, &k, &v, mask.as_ref());
    let mut out = super::alloc::zeroed(s.b * s.h * s.tq * s.dv);
    let mut lse = vec![f32::INFINITY; s.b * s.h * s.tq];
    if out.is_empty() {
        return (out, lse);
    }
    let g = s.h / s.hkv;
    out.par_chunks_mut(s.tq * s.dv)
        .zip(lse.par_chunks_mut(s.tq))
        .enumerate()
        .for_each_init(Vec::new, |sc, (bh, (o, l))| {
            let (b, h) = (bh / s.h, bh % s.h);
            let (vd, vv) = &v;
            for r0 in (0..s.tq).step_by(RB) {
                let m = RB.min(s.tq - r0);
                let nk = keys_for(s, r0 + m);
                if nk == 0 {
                    continue; // every key masked: O = 0, LSE = +∞ (as initialised)
                }
                sc.resize(m * nk, 0.0);
                // SAFETY: views checked in `check`; `sc` holds m × nk.
                unsafe { scores(s, (b, h, r0, m, nk), &q, &k, mask.as_ref(), sc) };
                // P·V unnormalised, then each O row divided by its sum (one pass over Dv, not
                // over Tk).
                let mut sums = [0.0f32; RB];
                for (r, row) in sc.chunks_exact_mut(nk).enumerate() {
                    let (mx, sum) = exp_row(row);
                    sums[r] = sum;
                    l[r0 + r] = if sum > 0.0 {
                        mx + sum.ln()
                    } else {
                        f32::INFINITY
                    };
                }
                // SAFETY: P is m × nk; V rows j < nk ≤ Tk; O rows r0..r0 + m of this head.
                unsafe {
                    gemm(
                        m,
                        nk,
                        s.dv,
                        1.0,
                        sc.as_ptr(),
                        (nk, 1),
                        vd.as_ptr().add(vv.at(b, h / g)),
                        (vv.s[2], vv.s[3]),
                        0.0,
                        o.as_mut_ptr().add(r0 * s.dv),
                        s.dv,
                    );
                }
                for (orow, &sum) in o[r0 * s.dv..(r0 + m) * s.dv]
                    .chunks_exact_mut(s.dv)
                    .zip(&sums)
                {
                    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
                    orow.iter_mut().for_each(|x| *x *= inv);
                }
            }
        });
    (out, lse)
}

/// Turns a row of scores into unnormalised weights `exp(s − max)` in place and returns
/// `(max, Σ weights)`; a row without a finite score becomes zeros with max −∞.
fn exp_row(row: &mut [f32]) -> (f32, f32) {
    let mx = lanes(row, f32::NEG_INFINITY, f32::max);
    if mx == f32::NEG_INFINITY {
        row.fill(0.0);
        return (mx, 0.0);
    }
    exp_sub(row, mx);
    (mx, lanes(row, 0.0, |a, b| a + b))
}

/// Folds a row with `f` over 8 independent lanes (so the loop vectorises), then the lanes.
#[inline(always)]
fn lanes(row: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(init, |a, &x| f(a, x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = f(*a, x);
        }
    }
    acc.into_iter().fold(rest, f)
}

/// `x ← e^(x − c)` over a row: the forward's and backward's hottest loop, compiled for AVX2 +
/// FMA when the CPU has them (the crate's baseline target is SSE2).
fn exp_sub(row: &mut [f32], c: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::fastmath::has_avx2_fma() {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { exp_sub_avx2(row, c) };
    }
    exp_sub_plain(row, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_sub_avx2(row: &mut [f32], c: f32) {
    exp_sub_plain(row, c)
}

#[inline(always)]
fn exp_sub_plain(row: &mut [f32], c: f32) {
    for x in row.iter_mut() {
        *x = exp(*x - c);
    }
}

/// Backward: `(dQ (B, H, Tq, D), dK (B, Hkv, Tk, D), dV (B, Hkv, Tk, Dv))`, contiguous, given
/// the forward's contiguous `o` and `lse` and the output gradient `dout`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    s: &Dims,
    q: Input,
    k: Input,
    v: Input,
    mask: Option<Input>,
    o: &[f32],
    lse: &[f32],
    dout: Input,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    check(s, &q, &k, &v, mask.as_ref());
    let g = s.h / s.hkv;
    assert!(
        o.len() == s.b * s.h * s.tq * s.dv
            && lse.len() == s.b * s.h * s.tq
            && dout.1.fits([s.b, s.h, s.tq, s.dv], dout.0.len()),
        "wgml bug: attention backward buffers do not match {s:?}"
    );
    let mut dq = super::alloc::zeroed(s.b * s.h * s.tq * s.d);
    let mut dk = super::alloc::zeroed(s.b * s.hkv * s.tk * s.d);
    let mut dv = super::alloc::zeroed(s.b * s.hkv * s.tk * s.dv);
    if s.b * s.h * s.tq * s.tk == 0 {
        return (dq, dk, dv);
    }
    dq.par_chunks_mut(g * s.tq * s.d)
        .zip(dk.par_chunks_mut(s.tk * s.d))
        .zip(dv.par_chunks_mut(s.tk * s.dv))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(p, dp, di), (bk, ((dq, dk), dv))| {
                let (b, hk) = (bk / s.hkv, bk % s.hkv);
                let ((qd, qv), (kd, kv), (vd, vv), (gd, gv)) = (&q, &k, &v, &dout);
                for h in hk * g..(hk + 1) * g {
                    let bh = b * s.h + h;
                    let dq = &mut dq[(h - hk * g) * s.tq * s.d..];
                    for r0 in (0..s.tq).step_by(RB) {
                        let m = RB.min(s.tq - r0);
                        let nk = keys_for(s, r0 + m);
                        if nk == 0 {
                            continue;
                        }
                        p.resize(m * nk, 0.0);
                        dp.resize(m * nk, 0.0);
                        di.resize(m, 0.0);
                        let (q_blk, g_blk) =
                            (qv.at(b, h) + r0 * qv.s[2], gv.at(b, h) + r0 * gv.s[2]);
                        // SAFETY (all gemms below): views checked in `check` and above; P and
                        // dP are m × nk; key rows j < nk ≤ Tk; dQ rows r0..r0 + m of head h.
                        unsafe {
                            scores(s, (b, h, r0, m, nk), &q, &k, mask.as_ref(), p);
                        }
                        for (r, row) in p.chunks_exact_mut(nk).enumerate() {
                            let l = lse[bh * s.tq + r0 + r];
                            exp_sub(row, l);
                            // Di = Σ_e dO ∘ O
                            let orow = &o[(bh * s.tq + r0 + r) * s.dv..][..s.dv];
                            let go = g_blk + r * gv.s[2];
                            di[r] = orow
                                .iter()
                                .enumerate()
                                .map(|(e, &x)| x * gd[go + e * gv.s[3]])
                                .sum();
                        }
                        unsafe {
                            // dV += Pᵀ dO
                            gemm(
                                nk,
                                m,
                                s.dv,
                                1.0,
                                p.as_ptr(),
                                (1, nk),
                                gd.as_ptr().add(g_blk),
                                (gv.s[2], gv.s[3]),
                                1.0,
                                dv.as_mut_ptr(),
                                s.dv,
                            );
                            // dP = dO Vᵀ
                            gemm(
                                m,
                                s.dv,
                                nk,
                                1.0,
                                gd.as_ptr().add(g_blk),
                                (gv.s[2], gv.s[3]),
                                vd.as_ptr().add(vv.at(b, hk)),
                                (vv.s[3], vv.s[2]),
                                0.0,
                                dp.as_mut_ptr(),
                                nk,
                            );
                        }
                        // dS = P ∘ (dP − Di), in dp
                        for ((pr, dr), &d) in p
                            .chunks_exact(nk)
                            .zip(dp.chunks_exact_mut(nk))
                            .zip(di.iter())
                        {
                            for (x, &pv) in dr.iter_mut().zip(pr) {
                                *x = pv * (*x - d);
                            }
                        }
                        unsafe {
                            // dQ = scale · dS K
                            gemm(
                                m,
                                nk,
                                s.d,
                                s.scale,
                                dp.as_ptr(),
                                (nk, 1),
                                kd.as_ptr().add(kv.at(b, hk)),
                                (kv.s[2], kv.s[3]),
                                0.0,
                                dq.as_mut_ptr().add(r0 * s.d),
                                s.d,
                            );
                            // dK += scale · dSᵀ Q
                            gemm(
                                nk,
                                m,
                                s.d,
                                s.scale,
                                dp.as_ptr(),
                                (1, nk),
                                qd.as_ptr().add(q_blk),
                                (qv.s[2], qv.s[3]),
                                1.0,
                                dk.as_mut_ptr(),
                                s.d,
                            );
                        }
                    }
                }
            },
        );
    (dq, dk, dv)
}

/// Panics (a wgml bug) unless every view lies inside its storage; the raw-pointer gemms rely
/// on it.
fn check(s: &Dims, q: &Input, k: &Input, v: &Input, mask: Option<&Input>) {
    let ok = s.hkv > 0
        && s.h.is_multiple_of(s.hkv)
        && q.1.fits([s.b, s.h, s.tq, s.d], q.0.len())
        && k.1.fits([s.b, s.hkv, s.tk, s.d], k.0.len())
        && v.1.fits([s.b, s.hkv, s.tk, s.dv], v.0.len())
        && mask.is_none_or(|m| m.1.fits([s.b, s.h, s.tq, s.tk], m.0.len()));
    assert!(ok, "wgml bug: attention views exceed their storage ({s:?})");
}
