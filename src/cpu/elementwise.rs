//! Elementwise reference kernels over strided layouts (inputs already broadcast to the output).

use crate::op::{BinaryOp, UnaryOp};
use crate::shape::Layout;

/// The elements of a strided view, in row-major order.
pub(crate) fn gather(x: &[f32], l: &Layout) -> Vec<f32> {
    if l.is_contiguous() {
        x[l.offset..l.offset + l.shape.numel()].to_vec()
    } else {
        l.offsets().map(|o| x[o]).collect()
    }
}

pub(crate) fn unary(op: UnaryOp, x: &[f32], l: &Layout) -> Vec<f32> {
    if l.is_contiguous() {
        x[l.offset..l.offset + l.shape.numel()]
            .iter()
            .map(|&v| op.apply(v))
            .collect()
    } else {
        l.offsets().map(|o| op.apply(x[o])).collect()
    }
}

pub(crate) fn binary(op: BinaryOp, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    if la.is_contiguous() && lb.is_contiguous() {
        let n = la.shape.numel();
        let (a, b) = (&a[la.offset..la.offset + n], &b[lb.offset..lb.offset + n]);
        a.iter().zip(b).map(|(&x, &y)| op.apply(x, y)).collect()
    } else {
        la.offsets()
            .zip(lb.offsets())
            .map(|(i, j)| op.apply(a[i], b[j]))
            .collect()
    }
}

pub(crate) fn where_select(
    c: (&[f32], &Layout),
    a: (&[f32], &Layout),
    b: (&[f32], &Layout),
) -> Vec<f32> {
    c.1.offsets()
        .zip(a.1.offsets())
        .zip(b.1.offsets())
        .map(|((i, j), k)| if c.0[i] != 0.0 { a.0[j] } else { b.0[k] })
        .collect()
}

/// Copies the view `(src, ls)` into the view `(dst, ld)` of the same shape.
pub(crate) fn copy_into(src: &[f32], ls: &Layout, dst: &mut [f32], ld: &Layout) {
    for (i, o) in ls.offsets().zip(ld.offsets()) {
        dst[o] = src[i];
    }
}
