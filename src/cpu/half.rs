//! F16 storage on the CPU: two elements per 4-byte word, element `o` in the (o & 1)-th
//! little-endian half of word o >> 1 (the GPU's packing), and the casts into and out of it.
//! Conversions round to nearest even (the `half` crate, F16C instructions where present).

use super::alloc;
use crate::shape::Layout;
use crate::Result;
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Words that hold `n` F16 elements.
pub(crate) fn words(n: usize) -> usize {
    n.div_ceil(2)
}

/// The F16 elements of packed storage.
pub(crate) fn halves(words: &[f32]) -> &[f16] {
    bytemuck::cast_slice(words)
}

fn halves_mut(words: &mut [f32]) -> &mut [f16] {
    bytemuck::cast_slice_mut(words)
}

/// Elements per parallel chunk: casts are memory-bound, so only large ones are split.
const CHUNK: usize = 1 << 16;

/// The elements of `l` in F16 storage `src` as contiguous f32.
pub(crate) fn to_f32(src: &[f32], l: &Layout) -> Result<Vec<f32>> {
    let n = l.shape.numel();
    let h = halves(src);
    let mut out = alloc::try_take(n, "to_dtype")?;
    if l.is_contiguous() {
        let h = &h[l.offset..l.offset + n];
        out.par_chunks_mut(CHUNK)
            .zip(h.par_chunks(CHUNK))
            .for_each(|(o, h)| h.convert_to_f32_slice(o));
    } else {
        for (v, o) in out.iter_mut().zip(l.offsets()) {
            *v = h[o].to_f32();
        }
    }
    Ok(out)
}

/// The elements of `l` in F32 storage `src` (or F16 storage when `src_f16`), as contiguous
/// packed F16 words.
pub(crate) fn to_f16(src: &[f32], l: &Layout, src_f16: bool) -> Result<Vec<f32>> {
    let n = l.shape.numel();
    // A pooled buffer (fresh pages cost more than the cast); every half is written below but
    // an odd count's padding half, so the last word is cleared first.
    let mut out = alloc::try_take(words(n), "to_dtype")?;
    if let Some(last) = out.last_mut() {
        *last = 0.0;
    }
    let dst = &mut halves_mut(&mut out)[..n];
    match (src_f16, l.is_contiguous()) {
        (false, true) => dst
            .par_chunks_mut(CHUNK)
            .zip(src[l.offset..l.offset + n].par_chunks(CHUNK))
            .for_each(|(d, s)| d.convert_from_f32_slice(s)),
        (true, true) => dst.copy_from_slice(&halves(src)[l.offset..l.offset + n]),
        (false, false) => {
            for (d, o) in dst.iter_mut().zip(l.offsets()) {
                *d = f16::from_f32(src[o]);
            }
        }
        (true, false) => {
            let h = halves(src);
            for (d, o) in dst.iter_mut().zip(l.offsets()) {
                *d = h[o];
            }
        }
    }
    Ok(out)
}

/// Packed F16 words holding `values`.
pub(crate) fn pack(values: &[f16]) -> Result<Vec<f32>> {
    let mut out = alloc::try_zeroed(words(values.len()), "from_f16")?;
    halves_mut(&mut out)[..values.len()].copy_from_slice(values);
    Ok(out)
}
