//! Elementwise reference kernels over strided layouts (inputs already broadcast to the
//! output). The formulas are `UnaryOp::apply` / `BinaryOp::apply`; each op gets its own
//! monomorphised loop, and strided inputs are walked row by row along the innermost
//! (collapsed) dimension, so broadcasts and transposes cost no per-element index arithmetic.

use crate::op::{BinaryOp, UnaryOp};
use crate::shape::{collapse_joint, Layout};

/// Elements per parallel task of a contiguous map (smaller maps run on the calling thread).
const CHUNK: usize = 1 << 15;

/// Calls `row(bases, len)` for each row of the innermost collapsed dimension of `n` elements
/// laid out by `layouts` (all of the same shape), with each layout's storage offset of the row
/// start; `inner` receives each layout's innermost stride.
fn rows(layouts: &[&Layout], mut row: impl FnMut(&[usize], usize, &[usize])) {
    let shape = &layouts[0].shape;
    if shape.numel() == 0 {
        return;
    }
    let strides: Vec<&[usize]> = layouts.iter().map(|l| l.strides.as_slice()).collect();
    let (dims, strides) = collapse_joint(shape.dims(), &strides);
    let r = dims.len();
    let inner: Vec<usize> = strides.iter().map(|s| s[r - 1]).collect();
    let len = dims[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut base: Vec<usize> = layouts.iter().map(|l| l.offset).collect();
    loop {
        row(&base, len, &inner);
        // Odometer over the outer dims.
        let mut d = r - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b += s[d];
            }
            if idx[d] < dims[d] {
                break;
            }
            for (b, s) in base.iter_mut().zip(&strides) {
                *b -= s[d] * dims[d];
            }
            idx[d] = 0;
        }
    }
}

/// `out[i] = f(x[i])` over a strided view.
fn map1(x: &[f32], l: &Layout, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let n = l.shape.numel();
    if l.is_contiguous() {
        let src = &x[l.offset..l.offset + n];
        let mut out = super::alloc::take(n);
        par_chunks(&mut out, |start, chunk| {
            for (o, &v) in chunk.iter_mut().zip(&src[start..]) {
                *o = f(v);
            }
        });
        return out;
    }
    let mut out = super::alloc::with_capacity(n);
    rows(&[l], |b, len, s| {
        if s[0] == 1 {
            out.extend(x[b[0]..b[0] + len].iter().map(|&v| f(v)));
        } else {
            out.extend((0..len).map(|k| f(x[b[0] + k * s[0]])));
        }
    });
    out
}

/// `out[i] = f(a[i], b[i])` over two strided views of the same shape.
fn map2(
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let n = la.shape.numel();
    if la.is_contiguous() && lb.is_contiguous() {
        let (a, b) = (&a[la.offset..la.offset + n], &b[lb.offset..lb.offset + n]);
        let mut out = super::alloc::take(n);
        par_chunks(&mut out, |start, chunk| {
            for ((o, &x), &y) in chunk.iter_mut().zip(&a[start..]).zip(&b[start..]) {
                *o = f(x, y);
            }
        });
        return out;
    }
    let mut out = super::alloc::with_capacity(n);
    rows(&[la, lb], |base, len, s| match (s[0], s[1]) {
        (1, 1) => out.extend(
            a[base[0]..base[0] + len]
                .iter()
                .zip(&b[base[1]..base[1] + len])
                .map(|(&x, &y)| f(x, y)),
        ),
        (1, 0) => {
            let y = b[base[1]];
            out.extend(a[base[0]..base[0] + len].iter().map(|&x| f(x, y)));
        }
        (0, 1) => {
            let x = a[base[0]];
            out.extend(b[base[1]..base[1] + len].iter().map(|&y| f(x, y)));
        }
        (sa, sb) => out.extend((0..len).map(|k| f(a[base[0] + k * sa], b[base[1] + k * sb]))),
    });
    out
}

/// Runs `f(start, chunk)` over `out` in chunks on rayon's pool (inline when small).
fn par_chunks(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if out.len() <= CHUNK {
        return f(0, out);
    }
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| f(i * CHUNK, chunk));
}

/// Dispatches a `UnaryOp` to a loop specialised for it (the match happens once, not per
/// element).
pub(crate) fn unary(op: UnaryOp, x: &[f32], l: &Layout) -> Vec<f32> {
    macro_rules! each {
        ($($pat:pat => $rebuilt:expr),* $(,)?) => {
            match op {
                // The op is rebuilt inside the closure from the pattern's bindings, so each loop
                // sees a constant variant and the match in `apply` folds away.
                $($pat => map1(x, l, move |v| $rebuilt.apply(v)),)*
            }
        };
    }
    use crate::op::CmpOp as C;
    use UnaryOp as U;
    each! {
        U::Copy => U::Copy,
        U::Neg => U::Neg,
        U::Abs => U::Abs,
        U::Exp => U::Exp,
        U::Log => U::Log,
        U::Sqrt => U::Sqrt,
        U::Relu => U::Relu,
        U::Sigmoid => U::Sigmoid,
        U::Tanh => U::Tanh,
        U::Gelu => U::Gelu,
        U::Affine { mul, add } => U::Affine { mul, add },
        U::Powf(p) => U::Powf(p),
        U::Recip => U::Recip,
        U::Clamp { min, max } => U::Clamp { min, max },
        U::CmpScalar(C::Eq, s) => U::CmpScalar(C::Eq, s),
        U::CmpScalar(C::Ne, s) => U::CmpScalar(C::Ne, s),
        U::CmpScalar(C::Lt, s) => U::CmpScalar(C::Lt, s),
        U::CmpScalar(C::Le, s) => U::CmpScalar(C::Le, s),
        U::CmpScalar(C::Gt, s) => U::CmpScalar(C::Gt, s),
        U::CmpScalar(C::Ge, s) => U::CmpScalar(C::Ge, s),
        U::GeluGrad => U::GeluGrad,
        U::Sign => U::Sign,
        U::U32ToF32 => U::U32ToF32,
        U::F32ToU32 => U::F32ToU32,
    }
}

/// Dispatches a `BinaryOp` to a specialised loop.
pub(crate) fn binary(op: BinaryOp, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    macro_rules! each {
        ($($pat:pat => $rebuilt:expr),* $(,)?) => {
            match op {
                $($pat => map2(a, la, b, lb, move |x, y| $rebuilt.apply(x, y)),)*
            }
        };
    }
    use crate::op::CmpOp as C;
    use BinaryOp as B;
    each! {
        B::Add => B::Add,
        B::Sub => B::Sub,
        B::Mul => B::Mul,
        B::Div => B::Div,
        B::Maximum => B::Maximum,
        B::Minimum => B::Minimum,
        B::Cmp(C::Eq) => B::Cmp(C::Eq),
        B::Cmp(C::Ne) => B::Cmp(C::Ne),
        B::Cmp(C::Lt) => B::Cmp(C::Lt),
        B::Cmp(C::Le) => B::Cmp(C::Le),
        B::Cmp(C::Gt) => B::Cmp(C::Gt),
        B::Cmp(C::Ge) => B::Cmp(C::Ge),
    }
}

pub(crate) fn where_select(
    c: (&[f32], &Layout),
    a: (&[f32], &Layout),
    b: (&[f32], &Layout),
) -> Vec<f32> {
    let mut out = super::alloc::with_capacity(c.1.shape.numel());
    rows(&[c.1, a.1, b.1], |base, len, s| {
        out.extend((0..len).map(|k| {
            if c.0[base[0] + k * s[0]] != 0.0 {
                a.0[base[1] + k * s[1]]
            } else {
                b.0[base[2] + k * s[2]]
            }
        }))
    });
    out
}

/// Copies the view `(src, ls)` into the view `(dst, ld)` of the same shape.
pub(crate) fn copy_into(src: &[f32], ls: &Layout, dst: &mut [f32], ld: &Layout) {
    rows(&[ls, ld], |base, len, s| {
        for k in 0..len {
            dst[base[1] + k * s[1]] = src[base[0] + k * s[0]];
        }
    });
}

/// The elements of a strided view, in row-major order.
pub(crate) fn gather(x: &[f32], l: &Layout) -> Vec<f32> {
    map1(x, l, |v| v)
}
