//! Layer-normalisation reference over the trailing `N` elements of each row, forward and backward.

// R rows of N contiguous elements; w, b: [N] (optional); stats: [R, 2] = (mean, rstd) per row.
//   mean_r = Σ_j x[r, j] / N,   var_r = Σ_j (x[r, j] - mean_r)² / N   (biased, as PyTorch)
//   rstd_r = 1 / √(var_r + eps),   x̂[r, j] = (x[r, j] - mean_r) · rstd_r
//   y[r, j] = x̂[r, j] · w[j] + b[j]
// Backward, with g[r, j] = dy[r, j] · w[j]:
//   dx[r, j] = rstd_r · (g[r, j] - mean_j(g[r, ·]) - x̂[r, j] · mean_j(g[r, ·] · x̂[r, ·]))
//   dw[j] = Σ_r dy[r, j] · x̂[r, j],   db[j] = Σ_r dy[r, j]
// Rows are split into tasks of a fixed size (independent of the thread count) and the per-task
// partial dw/db are added in task order, so results are deterministic.

use rayon::prelude::*;

/// Rows per parallel task: about 16K elements, at least one row.
fn rows_per_task(n: usize) -> usize {
    (16384 / n.max(1)).max(1)
}

/// Σ of a slice with 8 independent f32 accumulators (vectorisable, and a smaller rounding error
/// than one running sum).
#[inline]
fn sum8(v: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0.0f32; 8];
    for (i, x) in v.enumerate() {
        acc[i & 7] += x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `(y [R·N], stats [R·2])` for rows of `n`.
pub(crate) fn forward(
    x: &[f32],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    n: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / n.max(1);
    let mut y = super::alloc::take(x.len());
    let mut stats = vec![0.0f32; rows * 2];
    let rt = rows_per_task(n);
    y.par_chunks_mut(rt * n)
        .zip(stats.par_chunks_mut(rt * 2))
        .zip(x.par_chunks(rt * n))
        .for_each(|((y, st), x)| {
            for ((y, st), x) in y.chunks_mut(n).zip(st.chunks_mut(2)).zip(x.chunks(n)) {
                let mean = sum8(x.iter().copied()) / n as f32;
                let var = sum8(x.iter().map(|&v| (v - mean) * (v - mean))) / n as f32;
                let rstd = 1.0 / (var + eps).sqrt();
                st[0] = mean;
                st[1] = rstd;
                match (w, b) {
                    (Some(w), Some(b)) => {
                        for j in 0..n {
                            y[j] = (x[j] - mean) * rstd * w[j] + b[j];
                        }
                    }
                    (Some(w), None) => {
                        for j in 0..n {
                            y[j] = (x[j] - mean) * rstd * w[j];
                        }
                    }
                    (None, Some(b)) => {
                        for j in 0..n {
                            y[j] = (x[j] - mean) * rstd + b[j];
                        }
                    }
                    (None, None) => {
                        for j in 0..n {
                            y[j] = (x[j] - mean) * rstd;
                        }
                    }
                }
            }
        });
    (y, stats)
}

/// `(dx [R·N], dw_db [2·N])`: the input gradient, and when `params` is set the weight
/// gradient followed by the bias gradient.
pub(crate) fn backward(
    x: &[f32],
    stats: &[f32],
    dy: &[f32],
    w: Option<&[f32]>,
    n: usize,
    params: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut dx = super::alloc::take(x.len());
    let rt = rows_per_task(n);
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(rt * n)
        .zip(x.par_chunks(rt * n))
        .zip(dy.par_chunks(rt * n))
        .zip(stats.par_chunks(rt * 2))
        .map(|(((dx, x), dy), st)| {
            let mut part = if params {
                vec![0.0f32; 2 * n]
            } else {
                Vec::new()
            };
            let mut g = vec![0.0f32; n];
            let mut xhat = vec![0.0f32; n];
            for (((dx, x), dy), st) in dx
                .chunks_mut(n)
                .zip(x.chunks(n))
                .zip(dy.chunks(n))
                .zip(st.chunks(2))
            {
                let (mean, rstd) = (st[0], st[1]);
                for j in 0..n {
                    xhat[j] = (x[j] - mean) * rstd;
                    g[j] = match w {
                        Some(w) => dy[j] * w[j],
                        None => dy[j],
                    };
                }
                let a = sum8(g.iter().copied()) / n as f32;
                let c = sum8(g.iter().zip(&xhat).map(|(&g, &h)| g * h)) / n as f32;
                for j in 0..n {
                    dx[j] = rstd * (g[j] - a - xhat[j] * c);
                }
                if params {
                    let (dw, db) = part.split_at_mut(n);
                    for j in 0..n {
                        dw[j] += dy[j] * xhat[j];
                        db[j] += dy[j];
                    }
                }
            }
            part
        })
        .collect();
    let dwdb = params.then(|| {
        let mut acc = vec![0.0f32; 2 * n];
        for p in &partials {
            for (a, v) in acc.iter_mut().zip(p) {
                *a += v;
            }
        }
        acc
    });
    (dx, dwdb)
}
