//! Pooling reference kernels over contiguous NCHW planes; backward as a gather over the
//! windows covering each input element (the same order the WGSL kernels sum in).
// P planes (N·C), H, W input, OH, OW output.

use crate::shape::Pool2d;

/// Clipped window `[r0, r1) × [c0, c1)` of output (oy, ox) and PyTorch's divisor.
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
) -> (Vec<f32>, Vec<u32>) {
    let ([h, w], [oh, ow]) = (hw, ohw);
    let mut out = Vec::with_capacity(planes * oh * ow);
    let mut arg = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks_exact(h * w).take(planes) {
        for oy in 0..oh {
            for ox in 0..ow {
                let (r0, r1, c0, c1, _) = window(p, h, w, oy, ox);
                let (mut best, mut at) = (f32::NEG_INFINITY, r0 * w + c0);
                for y in r0..r1 {
                    for xx in c0..c1 {
                        let v = plane[y * w + xx];
                        if v > best {
                            best = v;
                            at = y * w + xx;
                        }
                    }
                }
                out.push(best);
                arg.push(at as u32);
            }
        }
    }
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
    let mut out = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks_exact(h * w).take(planes) {
        for oy in 0..oh {
            for ox in 0..ow {
                let (r0, r1, c0, c1, div) = window(p, h, w, oy, ox);
                let mut s = 0.0;
                for y in r0..r1 {
                    for xx in c0..c1 {
                        s += plane[y * w + xx];
                    }
                }
                out.push(s / div);
            }
        }
    }
    out
}

/// Output indices `[lo, hi)` along one axis whose windows cover input index `y`.
fn covering(y: usize, k: usize, s: usize, pad: usize, n_out: usize) -> (usize, usize) {
    let top = (y + pad) as isize - k as isize + 1;
    let lo = if top > 0 {
        (top as usize).div_ceil(s)
    } else {
        0
    };
    (lo, ((y + pad) / s + 1).min(n_out))
}

/// Gradient of pooling w.r.t. its input: `arg` given for max pooling, `None` for average.
pub(crate) fn backward(
    dy: &[f32],
    arg: Option<&[u32]>,
    planes: usize,
    hw: [usize; 2],
    ohw: [usize; 2],
    p: &Pool2d,
) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (hw, ohw);
    let mut dx = vec![0.0; planes * h * w];
    for plane in 0..planes {
        for y in 0..h {
            let rows = covering(y, p.kernel[0], p.stride[0], p.padding[0], oh);
            for xx in 0..w {
                let cols = covering(xx, p.kernel[1], p.stride[1], p.padding[1], ow);
                let at = y * w + xx;
                let mut g = 0.0;
                for oy in rows.0..rows.1 {
                    for ox in cols.0..cols.1 {
                        let o = (plane * oh + oy) * ow + ox;
                        g += match arg {
                            Some(a) if a[o] as usize == at => dy[o],
                            Some(_) => 0.0,
                            None => dy[o] / window(p, h, w, oy, ox).4,
                        };
                    }
                }
                dx[plane * h * w + at] = g;
            }
        }
    }
    dx
}
