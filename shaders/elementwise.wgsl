// Elementwise kernels over strided layouts: unary (with scalar parameters), binary with
// broadcasting (broadcast dims have stride 0), where/select, and fill. The op is an override
// constant, so each (entry, OP) pair compiles to its own specialised pipeline.
// Bindings: output first, then inputs. Op codes match UnaryOp::code / BinaryOp::code in op.rs.

override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    n: u32,
    _pad: u32,
    s0: f32,
    s1: f32,
    out: Strided,
    in0: Strided,
    in1: Strided,
    in2: Strided,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x0: array<f32>;
@group(0) @binding(3) var<storage, read> x1: array<f32>;
@group(0) @binding(4) var<storage, read> x2: array<f32>;

// The same bindings as raw words, for the `_h` entries, which write packed F16 (two elements
// per word, see half.wgsl) and read each input as F16 (IN*_F16 = 1) or F32. naga and Vulkan
// allow two views of one binding as long as no entry point uses both.
@group(0) @binding(1) var<storage, read_write> out_w: array<u32>;
@group(0) @binding(2) var<storage, read> x0_w: array<u32>;
@group(0) @binding(3) var<storage, read> x1_w: array<u32>;
override IN0_F16: u32 = 1u;
override IN1_F16: u32 = 1u;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as in op.rs.
fn erf_approx(v: f32) -> f32 {
    let s = sign(v);
    let x = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
        + 0.254829592) * t * exp(-x * x);
    return s * y;
}

fn compare(code: u32, a: f32, b: f32) -> f32 {
    var r = false;
    switch code {
        case 0u: { r = a == b; }
        case 1u: { r = a != b; }
        case 2u: { r = a < b; }
        case 3u: { r = a <= b; }
        case 4u: { r = a > b; }
        default: { r = a >= b; }
    }
    return select(0.0, 1.0, r);
}

fn unary_op(x: f32) -> f32 {
    switch OP {
        case 0u: { return x; }
        case 1u: { return -x; }
        case 2u: { return abs(x); }
        case 3u: { return exp(x); }
        case 4u: { return log(x); }
        case 5u: { return sqrt(x); }
        case 6u: { return max(x, 0.0); }
        case 7u: { return 1.0 / (1.0 + exp(-x)); }
        // tanh of large |x| is NaN on some drivers (inf / inf); it is ±1 in f32 past 10.
        case 8u: { return tanh(clamp(x, -10.0, 10.0)); }
        case 9u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
        case 10u: { return x * p.s0 + p.s1; }
        case 11u: { return pow_signed(x, p.s0); }
        case 12u: { return 1.0 / x; }
        case 13u: { return min(max(x, p.s0), p.s1); }
        case 14u: {
            let cdf = 0.5 * (1.0 + erf_approx(x * 0.70710678118654752));
            return cdf + x * exp(-0.5 * x * x) * 0.39894228040143268;
        }
        case 15u: { return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0); }
        case 30u: { return f32(bitcast<u32>(x)); }
        case 31u: { return f32_to_u32_bits(x); }
        default: { return compare(OP - 20u, x, p.s0); }
    }
}

// Rust's saturating `x as u32` (NaN and negatives to 0): WGSL's u32() clamps at 4294967040,
// the largest u32 an f32 holds, and leaves NaN to the implementation.
fn f32_to_u32_bits(x: f32) -> f32 {
    let v = select(0.0, x, x > 0.0);
    return bitcast<f32>(select(u32(v), 0xffffffffu, v >= 4294967296.0));
}

// x^e with the C/IEEE conventions for negative bases (WGSL's pow is undefined for x < 0).
fn pow_signed(x: f32, e: f32) -> f32 {
    if (e == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        return select(0.0, f32_inf(), e < 0.0); // 0 or +inf
    }
    if (x > 0.0) {
        return pow(x, e);
    }
    if (fract(e) != 0.0) {
        return f32_nan();
    }
    let m = pow(-x, e);
    return select(m, -m, fract(e * 0.5) != 0.0);
}

fn binary_op(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        case 3u: { return a / b; }
        case 4u: { return max(a, b); }
        case 5u: { return min(a, b); }
        default: { return compare(OP - 20u, a, b); }
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[strided_offset(p.out, i)] = unary_op(x0[strided_offset(p.in0, i)]);
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let a = x0[strided_offset(p.in0, i)];
    let b = x1[strided_offset(p.in1, i)];
    out[strided_offset(p.out, i)] = binary_op(a, b);
}

// out = cond != 0 ? on_true : on_false
@compute @workgroup_size(WG)
fn where_select(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let c = x0[strided_offset(p.in0, i)];
    let a = x1[strided_offset(p.in1, i)];
    let b = x2[strided_offset(p.in2, i)];
    out[strided_offset(p.out, i)] = select(b, a, c != 0.0);
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[p.out.offset + i] = p.s0;
}

// Input i of an `_h` entry as f32.
fn load_in0(i: u32) -> f32 {
    let o = strided_offset(p.in0, i);
    if (IN0_F16 != 0u) {
        return load_f16(x0_w[o >> 1u], o);
    }
    return bitcast<f32>(x0_w[o]);
}

fn load_in1(i: u32) -> f32 {
    let o = strided_offset(p.in1, i);
    if (IN1_F16 != 0u) {
        return load_f16(x1_w[o >> 1u], o);
    }
    return bitcast<f32>(x1_w[o]);
}

// `unary` into a contiguous F16 output: one word (two elements) per invocation.
@compute @workgroup_size(WG)
fn unary_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg) * WG + lid;
    let i = 2u * w;
    if (i >= p.n) {
        return;
    }
    var word = f32_to_f16(unary_op(load_in0(i)));
    if (i + 1u < p.n) {
        word |= f32_to_f16(unary_op(load_in0(i + 1u))) << 16u;
    }
    out_w[w] = word;
}

// `binary` into a contiguous F16 output: one word (two elements) per invocation.
@compute @workgroup_size(WG)
fn binary_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg) * WG + lid;
    let i = 2u * w;
    if (i >= p.n) {
        return;
    }
    var word = f32_to_f16(binary_op(load_in0(i), load_in1(i)));
    if (i + 1u < p.n) {
        word |= f32_to_f16(binary_op(load_in0(i + 1u), load_in1(i + 1u))) << 16u;
    }
    out_w[w] = word;
}
