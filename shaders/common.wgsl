// Helpers prepended to every shader file (see src/gpu/kernel.rs).

// A strided layout of up to 8 dimensions: sizes and strides in elements, packed in vec4s
// because arrays in the uniform address space need a 16-byte stride.
struct Strided {
    dims: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
    rank: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
}

// Storage offset of the i-th element (row-major over `dims`) of a strided layout.
fn strided_offset(l: Strided, i: u32) -> u32 {
    if (l.rank == 1u) {
        return l.offset + i * l.strides[0].x;
    }
    var rem = i;
    var off = l.offset;
    for (var d = i32(l.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = l.dims[k / 4u][k % 4u];
        off += (rem % size) * l.strides[k / 4u][k % 4u];
        rem = rem / size;
    }
    return off;
}

// ±inf and NaN, built at run time. WGSL makes a constant expression that evaluates to inf or
// NaN a shader-creation error (Tint, in Chrome and Dawn, rejects `bitcast<f32>(0x7f800000u)`),
// and a user function's result is never a constant expression; the bits are the same.
fn f32_from_bits(b: u32) -> f32 { return bitcast<f32>(b); }
fn f32_inf() -> f32 { return f32_from_bits(0x7f800000u); }
fn f32_neg_inf() -> f32 { return f32_from_bits(0xff800000u); }
fn f32_nan() -> f32 { return f32_from_bits(0x7fc00000u); }

// Linear workgroup id of a grid folded into 2-D to stay under 65,535 per dimension.
fn linear_workgroup(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// IEEE binary16 <-> f32, bit-exact on every adapter. WGSL leaves `unpack2x16float` of ±inf/NaN
// and `pack2x16float` of values beyond ±65504 to the implementation, and its rounding may go
// either way; these match the CPU backend (the `half` crate) bit for bit: round to nearest
// even, overflow to ±inf, NaN kept quiet, subnormals exact.

// The f16 in the low 16 bits of `h`, as f32.
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m · 2^-24, exact in f32.
        return bitcast<f32>(bitcast<u32>(f32(m) * 5.9604644775390625e-8) | sign);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | select(0x7f800000u, 0x7fc00000u | (m << 13u), m != 0u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// `v` rounded to the nearest f16 (ties to even), as bits in the low 16 bits.
fn f32_to_f16(v: f32) -> u32 {
    let x = bitcast<u32>(v);
    let sign = (x >> 16u) & 0x8000u;
    let e = i32((x >> 23u) & 0xffu) - 127;
    let m = x & 0x7fffffu;
    if (e == 128) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    if (e > 15) {
        return sign | 0x7c00u;
    }
    if (e < -25) {
        return sign;
    }
    // Normal results keep 10 of the 23 mantissa bits; subnormal ones count units of 2^-24,
    // i.e. the 24-bit significand shifted right by -e - 1 (14..24) bits.
    var h: u32;
    var rest: u32;
    var half: u32;
    if (e >= -14) {
        h = (u32(e + 15) << 10u) | (m >> 13u);
        rest = m & 0x1fffu;
        half = 0x1000u;
    } else {
        let full = m | 0x800000u;
        let s = u32(-e - 1);
        h = full >> s;
        rest = full & ((1u << s) - 1u);
        half = 1u << (s - 1u);
    }
    // A carry out of the mantissa steps the exponent, up to inf: the right answer.
    if (rest > half || (rest == half && (h & 1u) == 1u)) {
        h += 1u;
    }
    return sign | h;
}

// Element `o` of packed F16 storage (two per word, the low half first), as f32.
fn load_f16(words_o: u32, o: u32) -> f32 {
    return f16_to_f32(words_o >> ((o & 1u) * 16u));
}
