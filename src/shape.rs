//! `Shape`, strided `Layout`, and the broadcasting / matmul shape rules both backends share.

use crate::{Error, Result};
use std::fmt;

/// The dimensions of a tensor, outermost first. A rank-0 shape is a scalar.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar). Saturates at `usize::MAX` for a shape whose count
    /// overflows (no allocation can hold it, so every op then errs); see [`Shape::checked_numel`].
    pub fn numel(&self) -> usize {
        self.checked_numel().unwrap_or(usize::MAX)
    }
    /// Number of elements, or `None` when the count overflows `usize`.
    pub fn checked_numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
    /// The element count, checked: `Err(Error::Overflow)` when the count, or its size in bytes at
    /// 4 bytes an element, exceeds what an address space can hold (`isize::MAX` bytes). Every
    /// entry point that makes a shape calls this.
    pub fn check_numel(&self, op: &'static str) -> Result<usize> {
        match self.checked_numel() {
            Some(n) if n <= isize::MAX as usize / 4 => Ok(n),
            _ => Err(Error::Overflow {
                op,
                shape: self.0.clone(),
            }),
        }
    }
    /// Row-major (C order) strides, in elements.
    pub fn contiguous_strides(&self) -> Vec<usize> {
        let mut strides = vec![0; self.rank()];
        let mut acc = 1usize;
        for i in (0..self.rank()).rev() {
            strides[i] = acc;
            // Saturating: a shape that overflows is rejected by `check_numel` before use.
            acc = acc.saturating_mul(self.0[i]);
        }
        strides
    }
    /// Resolves a possibly negative dimension index (`-1` is the last) against this shape.
    pub fn dim_index(&self, dim: isize, op: &'static str) -> Result<usize> {
        let rank = self.rank() as isize;
        let d = if dim < 0 { dim + rank } else { dim };
        if d < 0 || d >= rank {
            return Err(Error::DimOutOfRange {
                op,
                dim,
                shape: self.0.clone(),
            });
        }
        Ok(d as usize)
    }
    /// NumPy broadcasting of two shapes: align from the right; sizes must match or be 1.
    pub fn broadcast(&self, other: &Shape, op: &'static str) -> Result<Shape> {
        let rank = self.rank().max(other.rank());
        let mut out = vec![0; rank];
        for (i, o) in out.iter_mut().enumerate() {
            let a = dim_from_right(&self.0, rank - 1 - i);
            let b = dim_from_right(&other.0, rank - 1 - i);
            *o = match (a, b) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => {
                    return Err(Error::ShapeMismatch {
                        op,
                        lhs: self.0.clone(),
                        rhs: other.0.clone(),
                    })
                }
            };
        }
        let out = Shape(out);
        out.check_numel(op)?;
        Ok(out)
    }
}

fn dim_from_right(dims: &[usize], k: usize) -> usize {
    if k < dims.len() {
        dims[dims.len() - 1 - k]
    } else {
        1
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape(vec![])
    }
}
impl From<usize> for Shape {
    fn from(n: usize) -> Self {
        Shape(vec![n])
    }
}

/// How a tensor's elements sit in its storage: shape, strides (elements; 0 for a broadcast
/// dimension) and the offset of the first element. Views (transpose, narrow, broadcast) only
/// change the layout, never the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Logical shape.
    pub shape: Shape,
    /// Stride of each dimension in elements.
    pub strides: Vec<usize>,
    /// Offset of element `[0, 0, ...]` in elements.
    pub offset: usize,
}

impl Layout {
    /// A row-major layout starting at element 0.
    pub fn contiguous(shape: Shape) -> Self {
        let strides = shape.contiguous_strides();
        Layout {
            shape,
            strides,
            offset: 0,
        }
    }
    /// Whether the elements are dense and in row-major order (offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.rank()).rev() {
            let d = self.shape.dims()[i];
            if d != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= d;
        }
        true
    }
    /// Swaps two dimensions.
    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut dims = self.shape.dims().to_vec();
        let mut strides = self.strides.clone();
        dims.swap(a, b);
        strides.swap(a, b);
        Layout {
            shape: Shape(dims),
            strides,
            offset: self.offset,
        }
    }
    /// Reorders dimensions: new dimension `i` is old dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: Shape(perm.iter().map(|&p| self.shape.dims()[p]).collect()),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }
    /// Restricts dimension `dim` to `start..start + len`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut dims = self.shape.dims().to_vec();
        dims[dim] = len;
        Layout {
            shape: Shape(dims),
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[dim],
        }
    }
    /// Broadcasts to `target` (already checked compatible): new or size-1 dims get stride 0.
    pub fn broadcast_to(&self, target: &Shape) -> Layout {
        let rank = target.rank();
        let extra = rank - self.shape.rank();
        let strides = (0..rank)
            .map(|i| {
                if i < extra || (self.shape.dims()[i - extra] == 1 && target.dims()[i] != 1) {
                    0
                } else {
                    self.strides[i - extra]
                }
            })
            .collect();
        Layout {
            shape: target.clone(),
            strides,
            offset: self.offset,
        }
    }
    /// Merges adjacent dimensions that are laid out as one, and drops size-1 dims, so strided
    /// kernels see the smallest rank. The element order is unchanged. Never returns rank 0.
    pub fn collapsed(&self) -> (Vec<usize>, Vec<usize>) {
        let (dims, mut strides) = collapse_joint(self.shape.dims(), &[&self.strides]);
        (dims, strides.remove(0))
    }
    /// Storage offsets of every element in row-major order of the logical shape.
    pub fn offsets(&self) -> StridedOffsets {
        let (dims, strides) = self.collapsed();
        StridedOffsets {
            index: vec![0; dims.len()],
            dims,
            strides,
            next: self.offset,
            remaining: self.shape.numel(),
        }
    }
}

/// Collapses several layouts of the same shape together: a pair of adjacent dimensions merges
/// only when it is mergeable in every layout. Size-1 dimensions are dropped; the result has
/// rank at least 1.
pub fn collapse_joint(dims: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for (i, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().unwrap() == s[i] * d);
        if mergeable {
            *out_dims.last_mut().unwrap() *= d;
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[i];
            }
        } else {
            out_dims.push(d);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[i]);
            }
        }
    }
    if out_dims.is_empty() {
        out_dims.push(1);
        for o in out_strides.iter_mut() {
            o.push(1);
        }
    }
    (out_dims, out_strides)
}

/// Iterator over the storage offsets of a layout's elements, row-major.
pub struct StridedOffsets {
    dims: Vec<usize>,
    strides: Vec<usize>,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl Iterator for StridedOffsets {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let cur = self.next;
        for i in (0..self.dims.len()).rev() {
            self.index[i] += 1;
            self.next += self.strides[i];
            if self.index[i] < self.dims[i] {
                break;
            }
            self.next -= self.strides[i] * self.dims[i];
            self.index[i] = 0;
        }
        Some(cur)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}
impl ExactSizeIterator for StridedOffsets {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        let a = Shape::from([3, 1, 5]);
        let b = Shape::from([4, 1]);
        assert_eq!(a.broadcast(&b, "t").unwrap(), Shape::from([3, 4, 5]));
        assert!(Shape::from([3]).broadcast(&Shape::from([4]), "t").is_err());
    }

    #[test]
    fn offsets_of_transpose() {
        let l = Layout::contiguous(Shape::from([2, 3])).transpose(0, 1);
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
        let n = Layout::contiguous(Shape::from([4, 3])).narrow(0, 1, 2);
        assert_eq!(n.offsets().collect::<Vec<_>>(), vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(n.collapsed(), (vec![6], vec![1]));
    }
}

/// Window geometry of a 2-D pooling op over NCHW input (PyTorch's `MaxPool2d`/`AvgPool2d`
/// arguments; average pooling counts padding in the divisor, as PyTorch's default does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window (height, width).
    pub kernel: [usize; 2],
    /// Step (height, width).
    pub stride: [usize; 2],
    /// Implicit padding on each side (height, width); at most half the window.
    pub padding: [usize; 2],
    /// Round the output size up instead of down (windows may then hang off the edge).
    pub ceil_mode: bool,
}

impl Pool2d {
    /// A `k`×`k` window with stride `k`, no padding, floor mode.
    pub fn new(k: usize) -> Pool2d {
        Pool2d {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
            ceil_mode: false,
        }
    }

    /// Output (height, width) for an input of `h`×`w`, checking the geometry.
    pub fn output_hw(&self, op: &'static str, input: &[usize]) -> Result<[usize; 2]> {
        let bad =
            |msg: String| Error::invalid(op, format!("{msg} (input shape {input:?}, {self:?})"));
        if input.len() != 4 {
            return Err(bad(format!(
                "expects NCHW input of rank 4, got rank {}",
                input.len()
            )));
        }
        let mut out = [0; 2];
        for i in 0..2 {
            let (n, k, s, p) = (
                input[2 + i],
                self.kernel[i],
                self.stride[i],
                self.padding[i],
            );
            if k == 0 || s == 0 {
                return Err(bad("kernel and stride must be positive".into()));
            }
            if p > k / 2 {
                return Err(bad(format!("padding {p} exceeds half the kernel {k}")));
            }
            let Some(padded) = p.checked_mul(2).and_then(|x| x.checked_add(n)) else {
                return Err(bad("padding overflows".into()));
            };
            if padded < k {
                return Err(bad(format!(
                    "kernel {k} is larger than the padded input {padded}"
                )));
            }
            let span = padded - k;
            let mut o = if self.ceil_mode {
                span.div_ceil(s)
            } else {
                span / s
            } + 1;
            // PyTorch: the last window must start inside the input or the left padding.
            if self.ceil_mode && (o - 1) * s >= n + p {
                o -= 1;
            }
            out[i] = o;
        }
        Ok(out)
    }
}

/// Geometry of a 2-D convolution over NCHW input with OIHW weights (PyTorch's `Conv2d`
/// arguments other than the kernel, which the weight's shape gives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step (height, width).
    pub stride: [usize; 2],
    /// Zero padding on each side (height, width).
    pub padding: [usize; 2],
    /// Spacing between kernel taps (height, width).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into this many independent parts.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// Everything a conv kernel needs to know about one conv2d call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) cfg: Conv2dConfig,
}

impl ConvGeom {
    /// Checks input `[N, C, H, W]` against weight `[O, C/groups, KH, KW]`.
    pub(crate) fn new(
        op: &'static str,
        input: &[usize],
        weight: &[usize],
        cfg: Conv2dConfig,
    ) -> Result<ConvGeom> {
        let mismatch = || Error::ShapeMismatch {
            op,
            lhs: input.to_vec(),
            rhs: weight.to_vec(),
        };
        let bad = |msg: String| {
            Error::invalid(
                op,
                format!("{msg} (input {input:?}, weight {weight:?}, {cfg:?})"),
            )
        };
        if input.len() != 4 || weight.len() != 4 {
            return Err(bad(format!(
                "expects NCHW input and OIHW weight of rank 4, got ranks {} and {}",
                input.len(),
                weight.len()
            )));
        }
        let g = cfg.groups;
        if g == 0 || cfg.stride.contains(&0) || cfg.dilation.contains(&0) {
            return Err(bad("groups, stride and dilation must be positive".into()));
        }
        if !input[1].is_multiple_of(g) || !weight[0].is_multiple_of(g) {
            return Err(bad(format!(
                "{} input channels and {} output channels must both be divisible by groups={g}",
                input[1], weight[0]
            )));
        }
        if weight[1] != input[1] / g {
            return Err(mismatch());
        }
        let mut out = [0; 2];
        for i in 0..2 {
            let (n, k, s, p, d) = (
                input[2 + i],
                weight[2 + i],
                cfg.stride[i],
                cfg.padding[i],
                cfg.dilation[i],
            );
            let (Some(span), Some(padded)) = (
                d.checked_mul(k.max(1) - 1).and_then(|x| x.checked_add(1)),
                p.checked_mul(2).and_then(|x| x.checked_add(n)),
            ) else {
                return Err(bad("padding or dilation overflows".into()));
            };
            if k == 0 || padded < span {
                return Err(bad(format!(
                    "kernel extent {span} is larger than the padded input {padded}"
                )));
            }
            out[i] = (padded - span) / s + 1;
        }
        Shape::from([input[0], weight[0], out[0], out[1]]).check_numel(op)?;
        // The column matrix of the im2col path.
        Shape::from([input[0], input[1], weight[2], weight[3], out[0], out[1]]).check_numel(op)?;
        Ok(ConvGeom {
            n: input[0],
            c: input[1],
            h: input[2],
            w: input[3],
            kh: weight[2],
            kw: weight[3],
            oh: out[0],
            ow: out[1],
            cfg,
        })
    }
    /// Rows of one group's column matrix: `C/groups · KH · KW`.
    pub(crate) fn rows(&self) -> usize {
        self.c / self.cfg.groups * self.kh * self.kw
    }
    /// Columns of the column matrix: `N · OH · OW`.
    pub(crate) fn cols(&self) -> usize {
        self.n * self.oh * self.ow
    }
}
