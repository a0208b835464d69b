//! Convolution reference kernels: im2col / col2im (the CPU backend's conv is im2col + sgemm)
//! and a direct-loop conv2d that is the specification both are tested against.
// N batch, C in-channels, H, W input; O out-channels, KH, KW kernel; OH, OW output;
// G groups, R = C/G·KH·KW rows and L = N·OH·OW columns of the column matrix [G, R, L].

use crate::shape::ConvGeom;
use rayon::prelude::*;

/// Input coordinate of output `o` and kernel tap `k` along one axis, if inside the input.
#[inline]
fn source(o: usize, k: usize, s: usize, p: usize, d: usize, n: usize) -> Option<usize> {
    (o * s + k * d).checked_sub(p).filter(|&i| i < n)
}

/// `[N, C, H, W] -> [G, R, L]`, zero where a tap falls in the padding (rows in parallel).
pub(crate) fn im2col(x: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (l, plane) = (g.cols(), g.oh * g.ow);
    let mut out = super::alloc::zeroed(g.cfg.groups * g.rows() * l);
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    out.par_chunks_mut(l).enumerate().for_each(|(row, dst)| {
        // Row (gi·cg + c, ky, kx): the input channel is gi·cg + c.
        let (ch, ky, kx) = (row / (g.kh * g.kw), row / g.kw % g.kh, row % g.kw);
        for n in 0..g.n {
            let src = &x[(n * g.c + ch) * g.h * g.w..][..g.h * g.w];
            for oy in 0..g.oh {
                let Some(iy) = source(oy, ky, sh, ph, dh, g.h) else {
                    continue;
                };
                let d = &mut dst[n * plane + oy * g.ow..][..g.ow];
                let srow = &src[iy * g.w..][..g.w];
                if sw == 1 && dw == 1 {
                    // Contiguous run: the taps that land inside the row, copied at once.
                    let lo = pw.saturating_sub(kx).min(g.ow);
                    let hi = (g.w + pw).saturating_sub(kx).min(g.ow).max(lo);
                    d[lo..hi].copy_from_slice(&srow[lo + kx - pw..hi + kx - pw]);
                } else {
                    for (ox, v) in d.iter_mut().enumerate() {
                        if let Some(ix) = source(ox, kx, sw, pw, dw, g.w) {
                            *v = srow[ix];
                        }
                    }
                }
            }
        }
    });
    out
}

/// The adjoint of [`im2col`]: `[G, R, L] -> [N, C, H, W]`. Each input plane is one task
/// and sums the column entries that read it in (ky, kx, oy, ox) order — deterministic.
pub(crate) fn col2im(cols: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (l, plane) = (g.cols(), g.oh * g.ow);
    let mut dx = super::alloc::zeroed(g.n * g.c * g.h * g.w);
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    dx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(i, dst)| {
            let (n, ch) = (i / g.c, i % g.c);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = (ch * g.kh + ky) * g.kw + kx;
                    let src = &cols[row * l + n * plane..][..plane];
                    for oy in 0..g.oh {
                        let Some(iy) = source(oy, ky, sh, ph, dh, g.h) else {
                            continue;
                        };
                        let (drow, srow) = (&mut dst[iy * g.w..][..g.w], &src[oy * g.ow..][..g.ow]);
                        if sw == 1 && dw == 1 {
                            // The outputs whose tap lands inside the row form one run.
                            let lo = pw.saturating_sub(kx).min(g.ow);
                            let hi = (g.w + pw).saturating_sub(kx).min(g.ow).max(lo);
                            for (d, s) in drow[lo + kx - pw..hi + kx - pw]
                                .iter_mut()
                                .zip(&srow[lo..hi])
                            {
                                *d += s;
                            }
                        } else {
                            for (ox, s) in srow.iter().enumerate() {
                                if let Some(ix) = source(ox, kx, sw, pw, dw, g.w) {
                                    drow[ix] += s;
                                }
                            }
                        }
                    }
                }
            }
        });
    dx
}

/// Direct-loop conv2d `[N, C, H, W] * [O, C/G, KH, KW] (+ bias [O]) -> [N, O, OH, OW]`: the
/// specification the im2col paths on both backends are tested against.
pub fn conv2d_direct(
    x: &[f32],
    x_dims: &[usize],
    w: &[f32],
    w_dims: &[usize],
    bias: Option<&[f32]>,
    cfg: crate::Conv2dConfig,
) -> crate::Result<Vec<f32>> {
    let g = &ConvGeom::new("conv2d_direct", x_dims, w_dims, cfg)?;
    let o = w_dims[0];
    let (cg, og) = (g.c / g.cfg.groups, o / g.cfg.groups);
    let mut out = vec![0.0; g.n * o * g.oh * g.ow];
    for n in 0..g.n {
        for oc in 0..o {
            let gi = oc / og;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                    for c in 0..cg {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = source(
                                    oy,
                                    ky,
                                    g.cfg.stride[0],
                                    g.cfg.padding[0],
                                    g.cfg.dilation[0],
                                    g.h,
                                );
                                let ix = source(
                                    ox,
                                    kx,
                                    g.cfg.stride[1],
                                    g.cfg.padding[1],
                                    g.cfg.dilation[1],
                                    g.w,
                                );
                                if let (Some(iy), Some(ix)) = (iy, ix) {
                                    let xv = x[((n * g.c + gi * cg + c) * g.h + iy) * g.w + ix];
                                    let wv = w[((oc * cg + c) * g.kh + ky) * g.kw + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                    }
                    out[((n * o + oc) * g.oh + oy) * g.ow + ox] = acc as f32;
                }
            }
        }
    }
    Ok(out)
}
