//! Vectorisable f32 `exp`, sigmoid and tanh for the CPU backend's hot loops (attention's
//! softmax, the LSTM cell, GELU): no libm call, so loops over them compile to SIMD.

/// Whether the CPU has AVX2 and FMA: hot loops then run a copy compiled for them (the crate's
/// baseline target is SSE2). std caches the detection, so this is cheap to ask per call.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `e^x` for f32 in the hot loops, written so that LLVM vectorises it (std's `expf` is a
/// library call per element, and was half the forward's time). The Cephes `expf` scheme:
/// `e^x = 2^n · e^r` with `n = round(x·log₂e)`, `r = x − n·ln 2` (ln 2 split in two for
/// accuracy) and a degree-7 minimax polynomial for `e^r` on |r| ≤ ln 2 / 2; relative error
/// about 2e-7 (tested against std). Inputs below −87.3 (and −∞) give 0, inputs above 88 are
/// clamped, NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer n (|x·log₂e| < 2^22) and leaves n in the
    // low bits of the sum, from which 2^n is built with integer ops (a float-to-int cast does
    // not vectorise).
    const ROUND: f32 = 12_582_912.0;
    // Not `clamp`: max/min turn a NaN into a bound, so the bit tricks below never see one.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-87.3).min(88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = (p * r * r + r + 1.0) * pow2;
    if x < -87.3 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// The logistic sigmoid `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 2σ(2x) - 1` (absolute error below 1e-7).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -90.0 + i as f32 * (178.0 / 200_000.0);
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            if x >= -87.3 {
                worst = worst.max(((got - want) / want).abs());
            } else {
                assert_eq!(got, 0.0, "exp({x})");
            }
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_and_tanh_match_std() {
        for i in 0..=4000 {
            let x = -20.0 + i as f32 * 0.01;
            assert!((sigmoid(x) as f64 - 1.0 / (1.0 + (-(x as f64)).exp())).abs() < 2e-7);
            assert!(
                (tanh(x) as f64 - (x as f64).tanh()).abs() < 4e-7,
                "tanh({x})"
            );
        }
        assert!(sigmoid(-200.0) < 1e-30);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((tanh(-50.0) + 1.0).abs() < 1e-7);
    }
}
