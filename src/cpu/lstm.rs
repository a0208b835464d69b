//! LSTM layer reference: the input projection, the recurrence with a fused cell, and backward
//! through time, as forward/backward pairs over whole sequences.

// T steps, B batch, I input features, H hidden units, G = 4H gate pre-activations per row in
// PyTorch's order (i, f, g, o). All buffers are dense and row-major:
//   x [T, B, I], h0 / c0 [B, H], w_ih [G, I], w_hh [G, H], b_ih / b_hh [G]
//   out [T + 1, B, H]: rows 0..T are h_1..h_T, row T is c_T (the packed result of the op);
//   with per-row `lengths` (the variable-length layers of nn/), row T holds each row's
//   c at its own last step, c_{len_b}, and its gradient enters backward at step len_b − 1
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
use super::fastmath::{sigmoid, tanh};
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
pub(crate) fn gemm(
    mkn: (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    let (m, k, n) = mkn;
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
    // A large product (the input projection and the weight gradients over all T·B rows) is
    // split into blocks of rows of C (or of columns, when there are more of them), one per
    // thread: sgemm itself runs single-threaded (see src/cpu/matmul.rs).
    let parts = if m * k * n >= 1 << 20 {
        rayon::current_num_threads().min(m.max(n) / 32).max(1)
    } else {
        1
    };
    let (pa, pb, pc) = (
        Ptr(a.as_ptr() as *mut f32),
        Ptr(b.as_ptr() as *mut f32),
        Ptr(c.as_mut_ptr()),
    );
    // SAFETY: the asserts above bound every index sgemm reads or writes; the blocks write
    // disjoint rows (or columns) of C.
    let block = |(r0, r1): (usize, usize), (c0, c1): (usize, usize)| unsafe {
        if r1 > r0 && c1 > c0 {
            gemm_raw(
                (r1 - r0, k, c1 - c0),
                pa.at(r0 * rsa),
                (rsa, csa),
                pb.at(c0 * csb),
                (rsb, csb),
                beta,
                pc.at(r0 * rsc + c0),
                rsc,
            )
        }
    };
    let chunk = |len: usize, p: usize| {
        let per = len.div_ceil(parts);
        ((p * per).min(len), ((p + 1) * per).min(len))
    };
    match parts {
        1 => block((0, m), (0, n)),
        _ if m >= n => (0..parts)
            .into_par_iter()
            .for_each(|p| block(chunk(m, p), (0, n))),
        _ => (0..parts)
            .into_par_iter()
            .for_each(|p| block((0, m), chunk(n, p))),
    }
}

/// [`gemm`] through raw pointers, for threads that write disjoint column blocks of one matrix.
///
/// # Safety
/// Every index `sgemm` touches must be in bounds of its allocation, and no other thread may
/// access the written block meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    (m, k, n): (usize, usize, usize),
    a: *const f32,
    (rsa, csa): (usize, usize),
    b: *const f32,
    (rsb, csb): (usize, usize),
    beta: f32,
    c: *mut f32,
    rsc: usize,
) {
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a,
        rsa as isize,
        csa as isize,
        b,
        rsb as isize,
        csb as isize,
        beta,
        c,
        rsc as isize,
        1,
    );
}

/// Below this many cells (B·H) a step runs on one thread: rayon's hand-off would cost more.
const PAR_MIN: usize = 1 << 11;

/// How many slices of the hidden units a step is split into: one per thread when the step is
/// large enough, with at least 16 units in each. Each slice does its own small matmuls (its
/// gate columns) and its own cells, so a step needs one hand-off, not one per matmul and cell.
/// `WGML_LSTM_THREADS` caps the number of slices (1 keeps every step on one thread).
fn parts(d: Dims) -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cap = *CAP.get_or_init(|| {
        std::env::var("WGML_LSTM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    });
    if d.b * d.h < PAR_MIN {
        1
    } else {
        rayon::current_num_threads().min(d.h / 16).min(cap).max(1)
    }
}

/// `(parts, split)`: the slices of hidden units a step's cells are split into, and whether
/// each slice also does its own gate-column matmuls (always, when there is more than one:
/// sgemm itself is single-threaded, see src/cpu/matmul.rs, so splitting is how a step's
/// matmul uses both cores).
fn plan(d: Dims) -> (usize, bool) {
    let parts = parts(d);
    (parts, parts > 1)
}

/// Runs `f(j0, j1)` over `parts` contiguous ranges of `h` hidden units (in parallel if > 1).
fn for_units(h: usize, parts: usize, f: impl Fn(usize, usize) + Sync + Send) {
    if parts <= 1 {
        return f(0, h);
    }
    let per = h.div_ceil(parts);
    (0..parts)
        .into_par_iter()
        .for_each(|p| f((p * per).min(h), ((p + 1) * per).min(h)));
}

/// A raw pointer that may cross to rayon's workers; each worker touches only its own units.
#[derive(Clone, Copy)]
struct Ptr(*mut f32);
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}
impl Ptr {
    /// The pointer `i` elements on (a method, so closures capture the whole `Ptr`).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
    /// `n` elements from `i` on.
    ///
    /// # Safety
    /// In bounds, and no other live reference to them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'a>(self, i: usize, n: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.at(i), n)
    }
}

/// The fused cell on `n` units of one batch row: the gate pre-activations `z = [i, f, g, o]`
/// (each `[n]`, overwritten by the activations), `cp` = c_{t-1} → `c` = c_t, `h` = h_t.
#[inline]
fn cell_forward(z: [&mut [f32]; 4], cp: &[f32], c: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::fastmath::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { cell_forward_avx2(z, cp, c, h) };
    }
    cell_forward_plain(z, cp, c, h)
}

/// [`cell_forward`] compiled for AVX2 + FMA (8 lanes instead of SSE2's 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn cell_forward_avx2(z: [&mut [f32]; 4], cp: &[f32], c: &mut [f32], h: &mut [f32]) {
    cell_forward_plain(z, cp, c, h)
}

#[inline(always)]
fn cell_forward_plain(z: [&mut [f32]; 4], cp: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = h.len();
    let [zi, zf, zg, zo] = z;
    // Equal lengths up front let the compiler drop the bounds checks and vectorise.
    let (zi, zf, zg, zo) = (&mut zi[..n], &mut zf[..n], &mut zg[..n], &mut zo[..n]);
    let (cp, c) = (&cp[..n], &mut c[..n]);
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

/// The fused cell backward on `n` units of one batch row: from the saved activations
/// `a = [i, f, g, o]`, c_t, c_{t-1}, the gradient `dh` reaching h_t and the carried `dc`
/// reaching c_t, writes the pre-activation gradients `dz = [di, df, dg, do]` and replaces `dc`
/// by the gradient reaching c_{t-1}.
#[inline]
fn cell_backward(
    a: [&[f32]; 4],
    c: &[f32],
    cp: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dz: [&mut [f32]; 4],
) {
    #[cfg(target_arch = "x86_64")]
    if super::fastmath::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { cell_backward_avx2(a, c, cp, dh, dc, dz) };
    }
    cell_backward_plain(a, c, cp, dh, dc, dz)
}

/// [`cell_backward`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn cell_backward_avx2(
    a: [&[f32]; 4],
    c: &[f32],
    cp: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dz: [&mut [f32]; 4],
) {
    cell_backward_plain(a, c, cp, dh, dc, dz)
}

#[inline(always)]
fn cell_backward_plain(
    a: [&[f32]; 4],
    c: &[f32],
    cp: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dz: [&mut [f32]; 4],
) {
    let n = dh.len();
    let [ai, af, ag, ao] = a;
    let [di, df, dg, do_] = dz;
    // Equal lengths up front let the compiler drop the bounds checks and vectorise.
    let (ai, af, ag, ao) = (&ai[..n], &af[..n], &ag[..n], &ao[..n]);
    let (di, df, dg, do_) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut do_[..n]);
    let (c, cp, dc) = (&c[..n], &cp[..n], &mut dc[..n]);
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

/// Step `s` of the forward pass for hidden units `j0..j1`: `z[:, qH + j] += h_{s-1}·W_hh[qH +
/// j, :]ᵀ` for each gate q (one matmul for the whole gate row when the step is not split),
/// then the cells of those units. `(gates, cs, out)` are the forward buffers.
///
/// # Safety
/// The buffers have the sizes `forward` gives them; concurrent calls use disjoint unit ranges
/// of the same step, after the previous step has finished.
unsafe fn step_forward(
    d: Dims,
    (j0, j1): (usize, usize),
    s: usize,
    h0: &[f32],
    w_hh: &[f32],
    (gates, cs, out): (Ptr, Ptr, Ptr),
    (do_gemm, do_cells): (bool, bool),
) {
    let (nb, nh, n) = (d.b, d.h, j1 - j0);
    let (g, bh) = (4 * nh, d.b * d.h);
    let hprev: *const f32 = if s == 0 {
        h0.as_ptr()
    } else {
        out.at((s - 1) * bh)
    };
    let z = Ptr(gates.at(s * nb * g));
    if do_gemm && n == nh {
        let w = w_hh.as_ptr();
        gemm_raw((nb, nh, g), hprev, (nh, 1), w, (1, nh), 1.0, z.0, g);
    } else if do_gemm {
        for q in 0..4 {
            let w = w_hh.as_ptr().add((q * nh + j0) * nh);
            gemm_raw(
                (nb, nh, n),
                hprev,
                (nh, 1),
                w,
                (1, nh),
                1.0,
                z.at(q * nh + j0),
                g,
            );
        }
    }
    if !do_cells {
        return;
    }
    for r in 0..nb {
        let zr = |q: usize| z.slice(r * g + q * nh + j0, n);
        let cp = &*std::ptr::slice_from_raw_parts(cs.at(s * bh + r * nh + j0), n);
        let c = cs.slice((s + 1) * bh + r * nh + j0, n);
        let h = out.slice(s * bh + r * nh + j0, n);
        cell_forward([zr(0), zr(1), zr(2), zr(3)], cp, c, h);
    }
}

/// Step `s` of backward through time for hidden units `j0..j1`: `dh[:, J] = dy_s[:, J] +
/// dz_{s+1}·W_hh[:, J]` (the gradient reaching h_s), then the cells' backward, which writes
/// `dz_s[:, qH + J]` and carries `dc[:, J]` to step `s - 1`. `a, c, cp` are step s's gate
/// activations, c_s+1 and c_s.
///
/// # Safety
/// As [`step_forward`]: `dz [T, B, G]`, `dc`, `dh [B, H]`; disjoint unit ranges per call.
#[allow(clippy::too_many_arguments)]
unsafe fn step_backward(
    d: Dims,
    (j0, j1): (usize, usize),
    s: usize,
    dy_t: &[f32],
    w_hh: &[f32],
    (a, c, cp): (&[f32], &[f32], &[f32]),
    (dz, dc, dh): (Ptr, Ptr, Ptr),
    (do_gemm, do_cells): (bool, bool),
) {
    let (nb, nh, n) = (d.b, d.h, j1 - j0);
    let g = 4 * nh;
    for r in (0..nb).filter(|_| do_gemm) {
        dh.slice(r * nh + j0, n)
            .copy_from_slice(&dy_t[r * nh + j0..r * nh + j1]);
    }
    if do_gemm && s + 1 < d.t {
        let dzn: *const f32 = dz.at((s + 1) * nb * g);
        if n == nh {
            let w = w_hh.as_ptr();
            gemm_raw((nb, g, nh), dzn, (g, 1), w, (nh, 1), 1.0, dh.0, nh);
        } else {
            for q in 0..4 {
                let w = w_hh.as_ptr().add(q * nh * nh + j0);
                gemm_raw(
                    (nb, nh, n),
                    dzn.add(q * nh),
                    (g, 1),
                    w,
                    (nh, 1),
                    1.0,
                    dh.at(j0),
                    nh,
                );
            }
        }
    }
    if !do_cells {
        return;
    }
    let dzs = Ptr(dz.at(s * nb * g));
    for r in 0..nb {
        let u = r * nh + j0..r * nh + j1;
        let ar = |q: usize| &a[r * g + q * nh + j0..r * g + q * nh + j1];
        let dzr = |q: usize| dzs.slice(r * g + q * nh + j0, n);
        let dhr = &*std::ptr::slice_from_raw_parts(dh.at(r * nh + j0), n);
        cell_backward(
            [ar(0), ar(1), ar(2), ar(3)],
            &c[u.clone()],
            &cp[u],
            dhr,
            dc.slice(r * nh + j0, n),
            [dzr(0), dzr(1), dzr(2), dzr(3)],
        );
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
    lengths: Option<&[usize]>,
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
    let (parts, split) = plan(d);
    let (zp, cp, hp) = (
        Ptr(gates.as_mut_ptr()),
        Ptr(cs.as_mut_ptr()),
        Ptr(out.as_mut_ptr()),
    );
    for s in 0..nt {
        if !split {
            // SAFETY: as below, on one thread, for all units.
            unsafe { step_forward(d, (0, nh), s, h0, w_hh, (zp, cp, hp), (true, false)) }
        }
        for_units(nh, parts, |j0, j1| {
            // SAFETY: gates has T·B·G elements, cs and out (T + 1)·B·H; this call writes only
            // units j0..j1 of step s (gates, c_s+1, h_s) and reads h_{s-1}, c_s, written before.
            unsafe { step_forward(d, (j0, j1), s, h0, w_hh, (zp, cp, hp), (split, true)) }
        });
    }
    // The last row is c_T, or with `lengths` each row's c at its own last step.
    for r in 0..nb {
        let s = lengths.map_or(nt, |l| l[r]);
        let (o, c) = (nt * bh + r * nh, s * bh + r * nh);
        out[o..o + nh].copy_from_slice(&cs[c..c + nh]);
    }
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
    lengths: Option<&[usize]>,
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
    // The gradient of the last row (c_T, or each row's c at its own last step) joins the
    // carried dc at the step that produced it.
    let dy_c = &dy[nt * bh..];
    let last = |r: usize| lengths.map_or(nt, |l| l[r]) - 1;
    let mut dc = vec![0.0f32; bh];
    let mut dh = vec![0.0f32; bh];
    let (parts, split) = plan(d);
    let (dzp, dcp, dhp) = (
        Ptr(dz.as_mut_ptr()),
        Ptr(dc.as_mut_ptr()),
        Ptr(dh.as_mut_ptr()),
    );
    for s in (0..nt).rev() {
        let a = &gates[s * bg..(s + 1) * bg];
        let (cp, c) = (&cs[s * bh..(s + 1) * bh], &cs[(s + 1) * bh..(s + 2) * bh]);
        let dy_t = &dy[s * bh..(s + 1) * bh];
        let bufs = (dzp, dcp, dhp);
        for r in (0..nb).filter(|&r| last(r) == s) {
            // SAFETY: dc has B·H elements and no step is running.
            let dcr = unsafe { dcp.slice(r * nh, nh) };
            for (a, g) in dcr.iter_mut().zip(&dy_c[r * nh..]) {
                *a += g;
            }
        }
        if !split {
            // SAFETY: as below, on one thread, for all units.
            unsafe { step_backward(d, (0, nh), s, dy_t, w_hh, (a, c, cp), bufs, (true, false)) }
        }
        for_units(nh, parts, |j0, j1| {
            // SAFETY: dz has T·B·G elements, dh and dc B·H; this call writes only units
            // j0..j1 of step s (dz) and of dh/dc, and reads dz of step s + 1, written before.
            unsafe { step_backward(d, (j0, j1), s, dy_t, w_hh, (a, c, cp), bufs, (split, true)) }
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
