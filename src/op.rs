//! The closed set of ops: how a tensor was made (for autograd), and the elementwise op codes
//! whose CPU definitions (`apply`) are the reference for the WGSL kernels.

use crate::Tensor;

/// A comparison producing a mask of 1.0 (true) and 0.0 (false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    #[inline(always)]
    pub(crate) fn apply(self, a: f32, b: f32) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
    fn code(self) -> u32 {
        self as u32
    }
}

/// Elementwise ops of one input (some with scalar parameters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// Identity (a strided copy).
    Copy,
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// square root
    Sqrt,
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// hyperbolic tangent
    Tanh,
    /// exact GELU, `x/2 · (1 + erf(x/√2))` (PyTorch's default)
    Gelu,
    /// `x · mul + add`
    Affine {
        /// factor
        mul: f32,
        /// addend
        add: f32,
    },
    /// `x^p`
    Powf(f32),
    /// `1 / x`
    Recip,
    /// `min(max(x, min), max)`
    Clamp {
        /// lower bound
        min: f32,
        /// upper bound
        max: f32,
    },
    /// compare with a scalar, producing a mask
    CmpScalar(CmpOp, f32),
    /// derivative of exact GELU, `Φ(x) + x·φ(x)` (for backward)
    GeluGrad,
    /// `-1`, `0` or `1` (0 for NaN and ±0)
    Sign,
    /// `U32` index to `F32` value
    U32ToF32,
    /// `F32` value to `U32` (truncated, negatives to 0)
    F32ToU32,
}

impl UnaryOp {
    /// The CPU definition: the reference for the WGSL kernel. Always inlined, so a loop over
    /// one known op compiles to that op alone.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Copy => x,
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sigmoid => (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
            UnaryOp::Tanh => x.tanh(),
            // f32 throughout, as the WGSL kernel (the f64 version cost 8% of a Transformer
            // training step); A&S 7.1.26 keeps |error| < 2e-7 either way.
            UnaryOp::Gelu => 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2)),
            UnaryOp::Affine { mul, add } => x * mul + add,
            UnaryOp::Powf(p) => x.powf(p),
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Clamp { min, max } => x.max(min).min(max),
            UnaryOp::CmpScalar(c, s) => c.apply(x, s) as u32 as f32,
            UnaryOp::GeluGrad => {
                let cdf = 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
                // 1/√(2π)
                let pdf = crate::cpu::fastmath::exp(-0.5 * x * x) * 0.398_942_3;
                cdf + x * pdf
            }
            UnaryOp::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            UnaryOp::U32ToF32 => x.to_bits() as f32,
            UnaryOp::F32ToU32 => f32::from_bits(x.max(0.0) as u32),
        }
    }

    /// (op code, two scalar parameters) as `shaders/elementwise.wgsl` reads them.
    pub(crate) fn code(self) -> (u32, [f32; 2]) {
        match self {
            UnaryOp::Copy => (0, [0.0; 2]),
            UnaryOp::Neg => (1, [0.0; 2]),
            UnaryOp::Abs => (2, [0.0; 2]),
            UnaryOp::Exp => (3, [0.0; 2]),
            UnaryOp::Log => (4, [0.0; 2]),
            UnaryOp::Sqrt => (5, [0.0; 2]),
            UnaryOp::Relu => (6, [0.0; 2]),
            UnaryOp::Sigmoid => (7, [0.0; 2]),
            UnaryOp::Tanh => (8, [0.0; 2]),
            UnaryOp::Gelu => (9, [0.0; 2]),
            UnaryOp::Affine { mul, add } => (10, [mul, add]),
            UnaryOp::Powf(p) => (11, [p, 0.0]),
            UnaryOp::Recip => (12, [0.0; 2]),
            UnaryOp::Clamp { min, max } => (13, [min, max]),
            UnaryOp::CmpScalar(c, s) => (20 + c.code(), [s, 0.0]),
            UnaryOp::GeluGrad => (14, [0.0; 2]),
            UnaryOp::Sign => (15, [0.0; 2]),
            UnaryOp::U32ToF32 => (30, [0.0; 2]),
            UnaryOp::F32ToU32 => (31, [0.0; 2]),
        }
    }
}

/// Elementwise ops of two broadcast inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// elementwise maximum
    Maximum,
    /// elementwise minimum
    Minimum,
    /// comparison producing a mask
    Cmp(CmpOp),
}

impl BinaryOp {
    /// The CPU definition: the reference for the WGSL kernel (always inlined).
    #[inline(always)]
    pub(crate) fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => a.max(b),
            BinaryOp::Minimum => a.min(b),
            BinaryOp::Cmp(c) => c.apply(a, b) as u32 as f32,
        }
    }

    /// Op code as `shaders/elementwise.wgsl` reads it.
    pub(crate) fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Maximum => 4,
            BinaryOp::Minimum => 5,
            BinaryOp::Cmp(c) => 20 + c.code(),
        }
    }

    /// The op's name in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Cmp(CmpOp::Eq) => "eq",
            BinaryOp::Cmp(CmpOp::Ne) => "ne",
            BinaryOp::Cmp(CmpOp::Lt) => "lt",
            BinaryOp::Cmp(CmpOp::Le) => "le",
            BinaryOp::Cmp(CmpOp::Gt) => "gt",
            BinaryOp::Cmp(CmpOp::Ge) => "ge",
        }
    }
}

/// Reductions along an axis (or over all elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// arithmetic mean
    Mean,
    /// maximum
    Max,
    /// minimum
    Min,
    /// index of the maximum (first on ties), as `U32`
    ArgMax,
}

/// How a tensor was made: its parents and what was done to them. Recorded only when some
/// parent needs a gradient; `backprop.rs` has one arm per variant.
#[derive(Clone)]
#[allow(dead_code)]
pub(crate) enum Op {
    Unary(Tensor, UnaryOp),
    Binary(Tensor, Tensor, BinaryOp),
    /// `where(cond, on_true, on_false)`; the condition gets no gradient.
    Where(Tensor, Tensor, Tensor),
    /// Reduction over `dims` (sorted), the result keeping or dropping them.
    Reduce(Tensor, ReduceOp, Vec<usize>, bool),
    Softmax(Tensor),
    LogSoftmax(Tensor),
    Matmul(Tensor, Tensor),
    /// `index_select(dim, indices)`
    IndexSelect(Tensor, Tensor, usize),
    /// `gather(dim, index)` (PyTorch `torch.gather`)
    Gather(Tensor, Tensor, usize),
    /// A view or copy with the same elements in a new shape.
    Reshape(Tensor),
    Permute(Tensor, Vec<usize>),
    /// `narrow(dim, start, len)`
    Narrow(Tensor, usize, usize),
    Cat(Vec<Tensor>, usize),
    /// A dtype cast (`to_dtype` between F32 and F16); the gradient is cast back.
    Cast(Tensor),
    BroadcastTo(Tensor),
    /// Max pooling: input, arg-max indices (`U32`, flat within each plane), geometry.
    MaxPool2d(Tensor, Tensor, crate::shape::Pool2d),
    AvgPool2d(Tensor, crate::shape::Pool2d),
    /// im2col of an NCHW input; its backward is col2im.
    Im2col(Tensor, crate::shape::ConvGeom),
    /// Scaled dot-product attention (`nn::functional`): q, k, v, the additive mask, and what
    /// the backward needs: the per-row log-sum-exp `(B, H, Tq)`, is_causal and the scale.
    Attention {
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Option<Tensor>,
        lse: Tensor,
        causal: bool,
        scale: f32,
    },
    /// One LSTM layer over a whole sequence (`Tensor::lstm`): its seven inputs and the gate
    /// activations and cell states the backward pass reads.
    Lstm(Box<crate::ops::LstmSaved>),
    /// One GRU layer over a whole sequence (`Tensor::gru`): its six inputs and the gate
    /// activations the backward pass reads.
    Gru(Box<crate::ops::GruSaved>),
    /// `layer_norm(x, weight, bias)` with the saved per-row (mean, rstd) `[rows, 2]`.
    LayerNorm(Tensor, Option<Tensor>, Option<Tensor>, Tensor),
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), in f32: the same formula the WGSL
/// GELU uses.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t
            + 0.254_829_6)
            * t
            * crate::cpu::fastmath::exp(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_f32_matches_f64() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let f64erf = {
                // A&S 7.1.26 in f64, the formula's own reference.
                let a = (x as f64).abs();
                let t = 1.0 / (1.0 + 0.327_591_1 * a);
                let y = 1.0
                    - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t
                        - 0.284_496_736)
                        * t
                        + 0.254_829_592)
                        * t
                        * (-a * a).exp();
                y.copysign(x as f64)
            };
            assert!((erf_f32(x) as f64 - f64erf).abs() < 3e-7, "erf({x})");
            x += 0.01;
        }
    }
}
