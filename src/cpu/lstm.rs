//! LSTM layer reference: the input projection, the recurrence with a fused cell, and backward
//! through time, as forward/backward pairs over whole sequences.

// T steps, B batch, I input features, H hidden units, G = 4H gate pre-activations per row in
// PyTorch's order (i, f, g, o). All buffers are dense and row-major:
//   x [T, B, I], h0 / c0 [B, H], w_ih [G, I], w_hh [G, H], b_ih / b_hh [G]
//   out [T + 1, B, H]: rows 0..T are h_1..h_T, row T is c_T (the packed result of the op)
//   gates [T, B, G]: the activations σ(i), σ(f), tanh(g), σ(o) of every step (for backward)
//   cs [T + 1, B, H]: c_0..c_T (for backward)
// Step t:  z = x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh
//          c_t = σ(z_f)·c_{t-1} + σ(z_i)·tanh(z_g),   h_t = σ(z_o)·tanh(c_t)
//
// Cost on the CPU: forward is one sgemm [T·B, I]×[I, G] for the input projection of all steps
// (written over the bias, β = 1), then per step one sgemm [B, H]×[H, G] added in place (β = 1)
// and one cell pass. Backward is per step one cell-backward pass and one sgemm [B, G]×[G, H]
// for dh_{t-1}; the weight gradients are then a few large sgemms over all T·B rows, not T
// small ones. The per-step products are small ([32, 128]×[128, 512] in the char-LSTM), so the
// cell passes use a branch-free exponential that the compiler vectorises (see `exp`).

use super::alloc;
use rayon::prelude::*;

/// The sizes of one LSTM layer over one sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) t: usize,
    pub(crate) b: usize,
    pub(crate) i: usize,
    pub(crate) h: usize,
}

/// What the forward pass produces: the packed result and what the backward pass needs.
pub(crate) struct Forward {
    /// `[T + 1, B, H]`: h_1..h_T, then c_T.
    pub(crate) out: Vec<f32>,
    /// `[T, B, G]` gate activations.
    pub(crate) gates: Vec<f32>,
    /// `[T + 1, B, H]`: c_0..c_T.
    pub(crate) cs: Vec<f32>,
}

/// Gradients of every input of one layer.
pub(crate) struct Grads {
    pub(crate) dx: Vec<f32>,
    pub(crate) dh0: Vec<f32>,
    pub(crate) dc0: Vec<f32>,
    pub(crate) dw_ih: Vec<f32>,
    pub(crate) dw_hh: Vec<f32>,
    /// The gradient of `b_ih` and of `b_hh` (they are the same).
    pub(crate) db: Vec<f32>,
}

/// `c[m, n] = β·c[m, n] + Σ_k a[m, k]·b[k, n]` over general strides (`c` row stride `rsc`).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        k == 0
            || ((m - 1) * rsa + (k - 1) * csa < a.len() && (k - 1) * rsb + (n - 1) * csb < b.len()),
        "wgml bug: lstm gemm operands out of bounds"
    );
    assert!(
        (m - 1) * rsc + n <= c.len(),
        "wgml bug: lstm gemm output out of bounds"
    );
    // SAFETY: the asserts above bound every index sgemm reads or writes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// `e^x` to about 2 ulp for |x| < 87 (clamped outside), without branches or calls so that loops
/// over it vectorise: `e^x = 2^n · e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`, and a
/// degree-6 Taylor polynomial for `e^r` (Cody–Waite split of ln 2, as in Cephes' `expf`).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 87.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    p * scale
}

/// The logistic sigmoid `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 2σ(2x) - 1` (absolute error below 1e-7).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Below this many cell elements per step the pass runs on one thread (rayon's hand-off
/// costs more than the work).
const PAR_MIN: usize = 1 << 13;

/// Runs `f(row)` for each of `rows` batch rows, in parallel when the step is large.
fn for_rows(rows: usize, work: usize, f: impl Fn(usize) + Sync + Send) {
    if work >= PAR_MIN {
        (0..rows).into_par_iter().for_each(f);
    } else {
        (0..rows).for_each(f);
    }
}

/// A raw pointer that may cross to rayon's workers; each row touches only its own elements.
#[derive(Clone, Copy)]
struct Ptr(*mut f32);
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}
impl Ptr {
    /// The pointer (a method, so closures capture the whole `Ptr`, not its raw field).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// The fused cell of one step for one batch row: `z [G]` (pre-activations, overwritten by the
/// activations), `cp [H]` = c_{t-1} → `c [H]` = c_t, `h [H]` = h_t.
#[inline]
fn cell_forward_row(z: &mut [f32], cp: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = h.len();
    let (zi, rest) = z.split_at_mut(n);
    let (zf, rest) = rest.split_at_mut(n);
    let (zg, zo) = rest.split_at_mut(n);
    // Equal lengths up front let the compiler drop the bounds checks and vectorise.
    let (zo, cp, c) = (&mut zo[..n], &cp[..n], &mut c[..n]);
    for j in 0..n {
        let i = sigmoid(zi[j]);
        let f = sigmoid(zf[j]);
        let g = tanh(zg[j]);
        let o = sigmoid(zo[j]);
        let cj = f * cp[j] + i * g;
        (zi[j], zf[j], zg[j], zo[j]) = (i, f, g, o);
        c[j] = cj;
        h[j] = o * tanh(cj);
    }
}

/// The fused cell backward of one step for one batch row: from the saved activations `a [G]`,
/// c_t, c_{t-1}, the gradient `dh [H]` reaching h_t and the carried `dc [H]` reaching c_t,
/// writes the pre-activation gradients `dz [G]` and replaces `dc` by the gradient of c_{t-1}.
#[inline]
fn cell_backward_row(a: &[f32], c: &[f32], cp: &[f32], dh: &[f32], dc: &mut [f32], dz: &mut [f32]) {
    let n = dh.len();
    let (ai, rest) = a.split_at(n);
    let (af, rest) = rest.split_at(n);
    let (ag, ao) = rest.split_at(n);
    let (di, rest) = dz.split_at_mut(n);
    let (df, rest) = rest.split_at_mut(n);
    let (dg, do_) = rest.split_at_mut(n);
    // Equal lengths up front let the compiler drop the bounds checks and vectorise.
    let (ao, do_, c, cp, dc) = (&ao[..n], &mut do_[..n], &c[..n], &cp[..n], &mut dc[..n]);
    for j in 0..n {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let tc = tanh(c[j]);
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        do_[j] = dh[j] * tc * o * (1.0 - o);
        di[j] = dcj * g * i * (1.0 - i);
        df[j] = dcj * cp[j] * f * (1.0 - f);
        dg[j] = dcj * i * (1.0 - g * g);
        dc[j] = dcj * f;
    }
}

/// One layer over the whole sequence (see the module comment for the layouts).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    d: Dims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    b_ih: &[f32],
    b_hh: &[f32],
) -> Forward {
    let Dims {
        t: nt,
        b: nb,
        i: ni,
        h: nh,
    } = d;
    let g = 4 * nh;
    let (bh, bg) = (nb * nh, nb * g);
    // gates = b_ih + b_hh, then += X·W_ihᵀ for all steps at once.
    let mut gates = alloc::take(nt * bg);
    for row in gates.chunks_exact_mut(g) {
        for ((z, a), b) in row.iter_mut().zip(b_ih).zip(b_hh) {
            *z = a + b;
        }
    }
    gemm(
        (nt * nb, ni, g),
        x,
        (ni, 1),
        w_ih,
        (1, ni),
        1.0,
        &mut gates,
        g,
    );
    let mut cs = alloc::take((nt + 1) * bh);
    cs[..bh].copy_from_slice(c0);
    let mut out = alloc::take((nt + 1) * bh);
    for s in 0..nt {
        let (done, rest) = out.split_at_mut(s * bh);
        let hprev = if s == 0 { h0 } else { &done[(s - 1) * bh..] };
        let z = &mut gates[s * bg..(s + 1) * bg];
        gemm((nb, nh, g), hprev, (nh, 1), w_hh, (1, nh), 1.0, z, g);
        let (cprev, cnext) = cs[s * bh..(s + 2) * bh].split_at_mut(bh);
        let (zp, cp, hp) = (
            Ptr(z.as_mut_ptr()),
            Ptr(cnext.as_mut_ptr()),
            Ptr(rest.as_mut_ptr()),
        );
        let cprev: &[f32] = cprev;
        for_rows(nb, bh, |r| {
            // SAFETY: row r owns z[r·G..], c[r·H..], h[r·H..] (disjoint across rows, in bounds).
            let (z, c, h) = unsafe {
                (
                    std::slice::from_raw_parts_mut(zp.at(r * g), g),
                    std::slice::from_raw_parts_mut(cp.at(r * nh), nh),
                    std::slice::from_raw_parts_mut(hp.at(r * nh), nh),
                )
            };
            cell_forward_row(z, &cprev[r * nh..(r + 1) * nh], c, h);
        });
    }
    out[nt * bh..].copy_from_slice(&cs[nt * bh..]);
    Forward { out, gates, cs }
}

/// Backward through time of [`forward`]: `dy [T + 1, B, H]` is the gradient of the packed
/// result (h_1..h_T, then c_T); `out`, `gates`, `cs` are what forward returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    d: Dims,
    dy: &[f32],
    x: &[f32],
    h0: &[f32],
    out: &[f32],
    gates: &[f32],
    cs: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
) -> Grads {
    let Dims {
        t: nt,
        b: nb,
        i: ni,
        h: nh,
    } = d;
    let g = 4 * nh;
    let (bh, bg) = (nb * nh, nb * g);
    let mut dz = alloc::take(nt * bg);
    let mut dc = dy[nt * bh..].to_vec();
    let mut dh = vec![0.0f32; bh];
    for s in (0..nt).rev() {
        // dh = dy_t + dz_{t+1}·W_hh (the latter already in dh from the previous iteration).
        dh.copy_from_slice(&dy[s * bh..(s + 1) * bh]);
        if s + 1 < nt {
            let dzn = &dz[(s + 1) * bg..(s + 2) * bg];
            gemm((nb, g, nh), dzn, (g, 1), w_hh, (nh, 1), 1.0, &mut dh, nh);
        }
        let a = &gates[s * bg..(s + 1) * bg];
        let (cp, c) = (&cs[s * bh..(s + 1) * bh], &cs[(s + 1) * bh..(s + 2) * bh]);
        let dzs = Ptr(dz[s * bg..].as_mut_ptr());
        let dcp = Ptr(dc.as_mut_ptr());
        let dh: &[f32] = &dh;
        for_rows(nb, bh, |r| {
            // SAFETY: row r owns dz[r·G..] and dc[r·H..] (disjoint across rows, in bounds).
            let (dzr, dcr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(dzs.at(r * g), g),
                    std::slice::from_raw_parts_mut(dcp.at(r * nh), nh),
                )
            };
            let hr = r * nh..(r + 1) * nh;
            cell_backward_row(
                &a[r * g..(r + 1) * g],
                &c[hr.clone()],
                &cp[hr.clone()],
                &dh[hr],
                dcr,
                dzr,
            );
        });
    }
    // dh0 = dz_0·W_hh
    let mut dh0 = vec![0.0f32; bh];
    gemm(
        (nb, g, nh),
        &dz[..bg],
        (g, 1),
        w_hh,
        (nh, 1),
        0.0,
        &mut dh0,
        nh,
    );
    let rows = nt * nb;
    // dX = dZ·W_ih over all steps.
    let mut dx = alloc::take(rows * ni);
    gemm((rows, g, ni), &dz, (g, 1), w_ih, (ni, 1), 0.0, &mut dx, ni);
    // dW_ih = dZᵀ·X; dW_hh = dZ_0ᵀ·h0 + dZ_{1..}ᵀ·h_{1..T-1}.
    let mut dw_ih = vec![0.0f32; g * ni];
    gemm((g, rows, ni), &dz, (1, g), x, (ni, 1), 0.0, &mut dw_ih, ni);
    let mut dw_hh = vec![0.0f32; g * nh];
    gemm(
        (g, nb, nh),
        &dz[..bg],
        (1, g),
        h0,
        (nh, 1),
        0.0,
        &mut dw_hh,
        nh,
    );
    if nt > 1 {
        let r1 = (nt - 1) * nb;
        gemm(
            (g, r1, nh),
            &dz[bg..],
            (1, g),
            out,
            (nh, 1),
            1.0,
            &mut dw_hh,
            nh,
        );
    }
    let mut db = vec![0.0f32; g];
    for row in dz.chunks_exact(g) {
        for (a, b) in db.iter_mut().zip(row) {
            *a += b;
        }
    }
    alloc::recycle(dz);
    Grads {
        dx,
        dh0,
        dc0: dc,
        dw_ih,
        dw_hh,
        db,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = -87.0f32;
        while x < 87.0 {
            let (got, want) = (exp(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 5e-7, "exp({x}) = {got}, want {want} (rel {rel})");
            x += 0.0173;
        }
        assert!((tanh(0.3) - 0.3f32.tanh()).abs() < 2e-7);
        assert!(sigmoid(-200.0) < 1e-30);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((tanh(-50.0) + 1.0).abs() < 1e-7);
    }
}
