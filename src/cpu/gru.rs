//! GRU layer reference: the input projection, the recurrence with a fused cell, and backward
//! through time, as a forward/backward pair over whole sequences.

// T steps, B batch, I input features, H hidden units, G = 3H gate pre-activations per row in
// PyTorch's order (r, z, n). All buffers are dense and row-major:
//   x [T, B, I], h0 [B, H], w_ih [G, I], w_hh [G, H], b_ih / b_hh [G]
//   hs [T + 1, B, H]: h_0..h_T (the packed result of the op; row 0 is a copy of h0)
//   saved [T, B, 4H]: per step r, z, n and ghn = W_hn·h_{t-1} + b_hn (for backward)
// Step t:  gi = x_t·W_ihᵀ + b_ih,  gh = h_{t-1}·W_hhᵀ + b_hh
//          r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r·gh_n)
//          h_t = (1 − z)·n + z·h_{t-1}
// Backward of one cell, given dh reaching h_t:
//          dn = dh·(1 − z)·(1 − n²)            (the gradient of n's pre-activation)
//          dgi = [dr, dz, dn] with dr = dn·ghn·r(1 − r), dz = dh·(h_{t-1} − n)·z(1 − z)
//          dgh = [dr, dz, dn·r];  dh_{t-1} = dh·z + dgh·W_hh
// The weight gradients are then large products over all T·B rows: dW_ih = dgiᵀ·X,
// dW_hh = dghᵀ·[h_0..h_{T-1}], db_ih = Σ dgi, db_hh = Σ dgh, dX = dgi·W_ih.

use super::fastmath::{sigmoid, tanh};
use super::lstm::gemm;
use super::{alloc, lstm::Dims};

/// What the forward pass produces: the packed result and what the backward pass needs.
pub(crate) struct Forward {
    /// `[T + 1, B, H]`: h_0..h_T.
    pub(crate) hs: Vec<f32>,
    /// `[T, B, 4H]`: r, z, n, ghn of every step.
    pub(crate) saved: Vec<f32>,
}

/// Gradients of every input of one layer.
pub(crate) struct Grads {
    pub(crate) dx: Vec<f32>,
    pub(crate) dh0: Vec<f32>,
    pub(crate) dw_ih: Vec<f32>,
    pub(crate) dw_hh: Vec<f32>,
    pub(crate) db_ih: Vec<f32>,
    pub(crate) db_hh: Vec<f32>,
}

/// The fused cell on one batch row: `gi`, `gh` (each `[3H]`, biases included), `hp` = h_{t-1}
/// give `h` = h_t and the saved `s = [r, z, n, ghn]` (`[4H]`).
fn cell_forward(gi: &[f32], gh: &[f32], hp: &[f32], h: &mut [f32], s: &mut [f32]) {
    let n = h.len();
    for j in 0..n {
        let r = sigmoid(gi[j] + gh[j]);
        let z = sigmoid(gi[n + j] + gh[n + j]);
        let ghn = gh[2 * n + j];
        let nn = tanh(gi[2 * n + j] + r * ghn);
        h[j] = (1.0 - z) * nn + z * hp[j];
        (s[j], s[n + j], s[2 * n + j], s[3 * n + j]) = (r, z, nn, ghn);
    }
}

/// The fused cell backward on one batch row: from the saved `s = [r, z, n, ghn]`, h_{t-1}
/// and the gradient `dh` reaching h_t, writes `dgi`, `dgh` (`[3H]` each) and `carry` = dh·z
/// (the direct part of the gradient reaching h_{t-1}).
fn cell_backward(
    s: &[f32],
    hp: &[f32],
    dh: &[f32],
    dgi: &mut [f32],
    dgh: &mut [f32],
    carry: &mut [f32],
) {
    let n = dh.len();
    for j in 0..n {
        let (r, z, nn, ghn) = (s[j], s[n + j], s[2 * n + j], s[3 * n + j]);
        let dn = dh[j] * (1.0 - z) * (1.0 - nn * nn);
        let dr = dn * ghn * r * (1.0 - r);
        let dz = dh[j] * (hp[j] - nn) * z * (1.0 - z);
        (dgi[j], dgi[n + j], dgi[2 * n + j]) = (dr, dz, dn);
        (dgh[j], dgh[n + j], dgh[2 * n + j]) = (dr, dz, dn * r);
        carry[j] = dh[j] * z;
    }
}

/// One layer over the whole sequence (see the module comment for the layouts).
pub(crate) fn forward(
    d: Dims,
    x: &[f32],
    h0: &[f32],
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
    let g = 3 * nh;
    let bh = nb * nh;
    // gi = b_ih, then += X·W_ihᵀ for all steps at once.
    let mut gi = alloc::take(nt * nb * g);
    for row in gi.chunks_exact_mut(g) {
        row.copy_from_slice(b_ih);
    }
    gemm((nt * nb, ni, g), x, (ni, 1), w_ih, (1, ni), 1.0, &mut gi, g);
    let mut hs = alloc::take((nt + 1) * bh);
    hs[..bh].copy_from_slice(h0);
    let mut saved = alloc::take(nt * nb * 4 * nh);
    let mut gh = vec![0.0f32; nb * g];
    for t in 0..nt {
        // gh = b_hh + h_{t-1}·W_hhᵀ
        for row in gh.chunks_exact_mut(g) {
            row.copy_from_slice(b_hh);
        }
        let (prev, next) = hs.split_at_mut((t + 1) * bh);
        let hp = &prev[t * bh..];
        gemm((nb, nh, g), hp, (nh, 1), w_hh, (1, nh), 1.0, &mut gh, g);
        for b in 0..nb {
            cell_forward(
                &gi[(t * nb + b) * g..(t * nb + b + 1) * g],
                &gh[b * g..(b + 1) * g],
                &hp[b * nh..(b + 1) * nh],
                &mut next[b * nh..(b + 1) * nh],
                &mut saved[(t * nb + b) * 4 * nh..(t * nb + b + 1) * 4 * nh],
            );
        }
    }
    alloc::recycle(gi);
    Forward { hs, saved }
}

/// Backward through time of [`forward`]: `dy [T + 1, B, H]` is the gradient of the packed
/// result (its row 0, the copy of h0, is ignored: h0's gradient comes out as `dh0`); `hs`,
/// `saved` are what forward returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    d: Dims,
    dy: &[f32],
    x: &[f32],
    hs: &[f32],
    saved: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
) -> Grads {
    let Dims {
        t: nt,
        b: nb,
        i: ni,
        h: nh,
    } = d;
    let g = 3 * nh;
    let bh = nb * nh;
    let rows = nt * nb;
    let mut dgi = alloc::take(rows * g);
    let mut dgh = alloc::take(rows * g);
    // carry: the gradient reaching h_t from later steps (zero after the last step).
    let mut carry = vec![0.0f32; bh];
    let mut dh = vec![0.0f32; bh];
    for t in (0..nt).rev() {
        for ((a, y), c) in dh.iter_mut().zip(&dy[(t + 1) * bh..]).zip(&carry) {
            *a = y + c;
        }
        for b in 0..nb {
            let k = t * nb + b;
            cell_backward(
                &saved[k * 4 * nh..(k + 1) * 4 * nh],
                &hs[t * bh + b * nh..t * bh + (b + 1) * nh],
                &dh[b * nh..(b + 1) * nh],
                &mut dgi[k * g..(k + 1) * g],
                &mut dgh[k * g..(k + 1) * g],
                &mut carry[b * nh..(b + 1) * nh],
            );
        }
        // carry += dgh_t·W_hh
        let dght = &dgh[t * nb * g..(t + 1) * nb * g];
        gemm(
            (nb, g, nh),
            dght,
            (g, 1),
            w_hh,
            (nh, 1),
            1.0,
            &mut carry,
            nh,
        );
    }
    let mut dx = alloc::take(rows * ni);
    gemm((rows, g, ni), &dgi, (g, 1), w_ih, (ni, 1), 0.0, &mut dx, ni);
    let mut dw_ih = vec![0.0f32; g * ni];
    gemm((g, rows, ni), &dgi, (1, g), x, (ni, 1), 0.0, &mut dw_ih, ni);
    let mut dw_hh = vec![0.0f32; g * nh];
    gemm(
        (g, rows, nh),
        &dgh,
        (1, g),
        hs,
        (nh, 1),
        0.0,
        &mut dw_hh,
        nh,
    );
    let colsum = |m: &[f32]| {
        let mut s = vec![0.0f32; g];
        for row in m.chunks_exact(g) {
            for (a, b) in s.iter_mut().zip(row) {
                *a += b;
            }
        }
        s
    };
    let (db_ih, db_hh) = (colsum(&dgi), colsum(&dgh));
    alloc::recycle(dgi);
    alloc::recycle(dgh);
    Grads {
        dx,
        dh0: carry,
        dw_ih,
        dw_hh,
        db_ih,
        db_hh,
    }
}
