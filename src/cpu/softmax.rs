//! Softmax and log-softmax reference over the last axis, forward and backward, in f64.

// rows of N contiguous elements; y is the forward output, dy the gradient of the loss by y.

/// Softmax (or log-softmax) of each row of `n`.
pub(crate) fn forward(log: bool, x: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(n.max(1)) {
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        if log {
            let log_s = s.ln();
            out.extend(row.iter().map(|&v| ((v as f64 - m) - log_s) as f32));
        } else {
            out.extend(row.iter().map(|&v| ((v as f64 - m).exp() / s) as f32));
        }
    }
    out
}

/// `y · (dy - Σ dy·y)` (softmax) or `dy - exp(y) · Σ dy` (log-softmax), per row of `n`.
pub(crate) fn backward(log: bool, y: &[f32], dy: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(y.len());
    for (y, g) in y.chunks(n.max(1)).zip(dy.chunks(n.max(1))) {
        if log {
            let s: f64 = g.iter().map(|&v| v as f64).sum();
            out.extend(
                y.iter()
                    .zip(g)
                    .map(|(&y, &g)| (g as f64 - (y as f64).exp() * s) as f32),
            );
        } else {
            let s: f64 = y.iter().zip(g).map(|(&y, &g)| y as f64 * g as f64).sum();
            out.extend(
                y.iter()
                    .zip(g)
                    .map(|(&y, &g)| (y as f64 * (g as f64 - s)) as f32),
            );
        }
    }
    out
}
