// Casts into and out of F16 storage. F16 tensors hold two elements per u32 word: element `o`
// of a layout is the (o & 1)-th little-endian half of word o >> 1 (array<f16> index o where
// `enable f16` is available). Outputs are contiguous; an F16 output is written a word (two
// elements) per invocation, so no two invocations touch one word.
// Bindings: dst, src, both as raw words.

struct Params {
    n: u32, // elements
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    src: Strided,
}

// 1 when the source is F16 storage, 0 when it is F32.
override SRC_F16: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;

const WG: u32 = 256u;

// Source element i as f16 bits.
fn src_half(i: u32) -> u32 {
    let o = strided_offset(p.src, i);
    if (SRC_F16 != 0u) {
        return (src[o >> 1u] >> ((o & 1u) * 16u)) & 0xffffu;
    }
    return f32_to_f16(bitcast<f32>(src[o]));
}

// F16 → contiguous F32, one element per invocation.
@compute @workgroup_size(WG)
fn to_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_workgroup(wg, nwg) * WG + lid.x;
    if (i >= p.n) {
        return;
    }
    let o = strided_offset(p.src, i);
    dst[i] = bitcast<u32>(load_f16(src[o >> 1u], o));
}

// F32 or F16 (SRC_F16) → contiguous F16, one word per invocation; the unused half of an odd
// count's last word is 0.
@compute @workgroup_size(WG)
fn to_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = linear_workgroup(wg, nwg) * WG + lid.x;
    let i = 2u * w;
    if (i >= p.n) {
        return;
    }
    var word = src_half(i);
    if (i + 1u < p.n) {
        word |= src_half(i + 1u) << 16u;
    }
    dst[w] = word;
}
