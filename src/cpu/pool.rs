//! Pooling reference kernels over contiguous NCHW planes (parallel over planes).
// P planes (N·C), H, W input, OH, OW output.

use crate::shape::Pool2d;
use rayon::prelude::*;

/// Clipped window `[r0, r1) × [c0, c1)` of output (oy, ox) and PyTorch's divisor (the
/// window clipped to the padded input).
fn window(
    p: &Pool2d,
    h: usize,
    w: usize,
    oy: usize,
    ox: usize,
) -> (usize, usize, usize, usize, f32) {
    let ys = (oy * p.stride[0]) as isize - p.padding[0] as isize;
    let xs = (ox * p.stride[1]) as isize - p.padding[1] as isize;
    let ye = (ys + p.kernel[0] as isize).min((h + p.padding[0]) as isize);
    let xe = (xs + p.kernel[1] as isize).min((w + p.padding[1]) as isize);
    let divisor = ((ye - ys) * (xe - xs)) as f32;
    (
        ys.max(0) as usize,
        ye.min(h as isize) as usize,
        xs.max(0) as usize,
        xe.min(w as isize) as usize,
        divisor,
    )
}

/// Max pooling: values and the flat in-plane index of each window's first maximum.
pub(crate) fn max_forward(
    x: &[f32],
    planes: usize,
    hw: [usize; 2],
    ohw: [usize; 2],
    p: &Pool2d,
) -> (Vec<f32>, Vec<f32>) {
    let ([h, w], [oh, ow]) = (hw, ohw);
    let mut out = super::alloc::take(planes * oh * ow);
    // Indices as `U32` words in f32 storage (see DType::U32).
    let mut arg = super::alloc::take(planes * oh * ow);
    out.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .zip(x.par_chunks(h * w))
        .for_each(|((out, arg), plane)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (r0, r1, c0, c1, _) = window(p, h, w, oy, ox);
                    let (mut best, mut at) = (f32::NEG_INFINITY, r0 * w + c0);
                    for y in r0..r1 {
                        for (xx, &v) in plane[y * w + c0..y * w + c1].iter().enumerate() {
                            if v > best {
                                best = v;
                                at = y * w + c0 + xx;
                            }
                        }
                    }
                    out[oy * ow + ox] = best;
                    arg[oy * ow + ox] = f32::from_bits(at as u32);
                }
            }
        });
    (out, arg)
}

/// Average pooling (padding counted in the divisor).
pub(crate) fn avg_forward(
    x: &[f32],
    planes: usize,
    hw: [usize; 2],
    ohw: [usize; 2],
    p: &Pool2d,
) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (hw, ohw);
    let mut out = super::alloc::take(planes * oh * ow);
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(out, plane)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (r0, r1, c0, c1, div) = window(p, h, w, oy, ox);
                    let s: f32 = (r0..r1)
                        .map(|y| plane[y * w + c0..y * w + c1].iter().sum::<f32>())
                        .sum();
                    out[oy * ow + ox] = s / div;
                }
            }
        });
    out
}

/// Gradient of pooling w.r.t. its input: `arg` given for max pooling, `None` for average.
/// Each plane scatters its output gradients in output order, one plane per task:
/// deterministic, and no two tasks write the same element.
pub(crate) fn backward(
    dy: &[f32],
    arg: Option<&[f32]>,
    planes: usize,
    hw: [usize; 2],
    ohw: [usize; 2],
    p: &Pool2d,
) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (hw, ohw);
    let mut dx = super::alloc::zeroed(planes * h * w);
    dx.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, dx)| {
            let g = &dy[plane * oh * ow..(plane + 1) * oh * ow];
            match arg {
                Some(a) => {
                    let a = &a[plane * oh * ow..(plane + 1) * oh * ow];
                    for (&gi, &ai) in g.iter().zip(a) {
                        dx[ai.to_bits() as usize] += gi;
                    }
                }
                None => {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (r0, r1, c0, c1, div) = window(p, h, w, oy, ox);
                            let v = g[oy * ow + ox] / div;
                            for y in r0..r1 {
                                dx[y * w + c0..y * w + c1].iter_mut().for_each(|d| *d += v);
                            }
                        }
                    }
                }
            }
        });
    dx
}
