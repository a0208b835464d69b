//! Reduction reference: each output element combines the elements of the reduced dims.

use crate::op::ReduceOp;
use crate::shape::Layout;

// O output elements (the kept dims, in order), R reduced elements each (row-major over the
// reduced dims). Sums accumulate in f64, so the reference is exact to f32 rounding.

/// Reduces dims `dims` (sorted, distinct) of the view `(x, l)`. An empty reduction gives 0
/// (sum) or NaN (mean); the caller rejects empty max / min / argmax.
pub(crate) fn reduce(op: ReduceOp, x: &[f32], l: &Layout, dims: &[usize]) -> Vec<f32> {
    let shape = l.shape.dims();
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !dims.contains(d)).collect();
    let o: usize = kept.iter().map(|&d| shape[d]).product();
    let r: usize = dims.iter().map(|&d| shape[d]).product();
    if r == 0 {
        let v = if op == ReduceOp::Mean { f32::NAN } else { 0.0 };
        return vec![v; o];
    }
    use rayon::prelude::*;
    let rank = shape.len();
    let k = dims.len();
    if l.is_contiguous() && matches!(op, ReduceOp::Sum | ReduceOp::Mean) {
        let x = &x[l.offset..l.offset + o * r];
        if dims.iter().enumerate().all(|(i, &d)| d == rank - k + i) {
            // Trailing dims: contiguous rows, no copy.
            return x.par_chunks(r).map(|row| reduce_row(op, row)).collect();
        }
        if dims.iter().enumerate().all(|(i, &d)| d == i) {
            // Leading dims (bias gradients): column sums over r rows of o, in f64, split
            // into column blocks for the threads.
            const COLS: usize = 256;
            let mut out = vec![0.0f32; o];
            out.par_chunks_mut(COLS).enumerate().for_each(|(c, out)| {
                let c0 = c * COLS;
                let mut acc = vec![0.0f64; out.len()];
                for row in x.chunks_exact(o) {
                    for (a, &v) in acc.iter_mut().zip(&row[c0..c0 + out.len()]) {
                        *a += v as f64;
                    }
                }
                let div = if op == ReduceOp::Mean { r as f64 } else { 1.0 };
                for (o, a) in out.iter_mut().zip(&acc) {
                    *o = (a / div) as f32;
                }
            });
            return out;
        }
    }
    let perm: Vec<usize> = kept.iter().chain(dims).copied().collect();
    let rows = super::elementwise::gather(x, &l.permute(&perm));
    rows.par_chunks(r).map(|row| reduce_row(op, row)).collect()
}

/// Whether `a` strictly beats `b` for a maximum (`max = true`) or minimum; NaN beats numbers.
fn beats(a: f32, b: f32, max: bool) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => {
            if max {
                a > b
            } else {
                a < b
            }
        }
        (an, bn) => an && !bn,
    }
}

/// Index of the winner (first on ties) of a non-empty row.
fn arg_best(row: &[f32], max: bool) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if beats(v, row[best], max) {
            best = i;
        }
    }
    best
}

/// One non-empty row. ArgMax returns the index as `U32` bits.
pub(crate) fn reduce_row(op: ReduceOp, row: &[f32]) -> f32 {
    let sum = || row.iter().map(|&v| v as f64).sum::<f64>();
    match op {
        ReduceOp::Sum => sum() as f32,
        ReduceOp::Mean => (sum() / row.len() as f64) as f32,
        ReduceOp::Max => row[arg_best(row, true)],
        ReduceOp::Min => row[arg_best(row, false)],
        ReduceOp::ArgMax => f32::from_bits(arg_best(row, true) as u32),
    }
}
