// Reductions of rows: output element `row` combines the `len` elements of that row. A row's
// base offset is `strided_offset(outer, row)`; its k-th element sits `strided_offset(inner, k)`
// further (both layouts come from the input's strides, so no copy is needed first).
//
// Two entry points:
//   reduce_thread  one thread per row, a plain loop: rows of a few elements ([1e6, 3]).
//   reduce_wg      one workgroup per (row, chunk): threads stride over the chunk, then a
//                  shared-memory tree. With `chunks > 1` this is the first of two passes
//                  (long rows such as [1, 1e7]); the launcher then reduces the partials.
//
// OP: 0 sum (mean is a sum with `scale` = 1/len), 1 max, 2 min, 3 argmax. Max and min
// propagate NaN, argmax takes NaN as the largest and the first index on ties (as PyTorch).
// Argmax partials are (value, index) pairs: values at [i], indices (u32 bits) at
// [idx_base + i]; `flags` bit 0: the input holds pairs, bit 1: write pairs.
// Bindings: output first, then the input. WG must be a power of two.

override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    rows: u32,
    len: u32,
    chunks: u32,
    chunk_len: u32,
    scale: f32,
    flags: u32,
    idx_in_base: u32,
    idx_out_base: u32,
    outer: Strided,
    inner: Strided,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;

const NONE: u32 = 0xffffffffu;

fn is_nan(v: f32) -> bool {
    // A bit test: comparisons with NaN may be folded away by fast-math compilers.
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether `a` strictly beats `b` under OP (NaN beats every number).
fn beats(a: f32, b: f32) -> bool {
    if (is_nan(a) || is_nan(b)) {
        return is_nan(a) && !is_nan(b);
    }
    if (OP == 2u) {
        return a < b;
    }
    return a > b;
}

// The pair that wins; the lower index wins a tie.
struct Acc {
    v: f32,
    i: u32,
}

fn identity() -> Acc {
    switch OP {
        case 0u: { return Acc(0.0, NONE); }
        case 2u: { return Acc(f32_inf(), NONE); }
        default: { return Acc(f32_neg_inf(), NONE); }
    }
}

fn combine(a: Acc, b: Acc) -> Acc {
    if (OP == 0u) {
        return Acc(a.v + b.v, NONE);
    }
    if (beats(b.v, a.v) || (!beats(a.v, b.v) && b.i < a.i)) {
        return b;
    }
    return a;
}

// The k-th element of the row whose base offset is `base`.
fn load(base: u32, k: u32) -> Acc {
    let off = base + strided_offset(p.inner, k);
    var i = k;
    if ((p.flags & 1u) != 0u) {
        i = bitcast<u32>(x[p.idx_in_base + off]);
    }
    return Acc(x[off], i);
}

fn store(o: u32, a: Acc) {
    if ((p.flags & 2u) != 0u) {
        out[o] = a.v;
        out[p.idx_out_base + o] = bitcast<f32>(a.i);
    } else if (OP == 3u) {
        out[o] = bitcast<f32>(a.i);
    } else {
        out[o] = a.v * p.scale;
    }
}

@compute @workgroup_size(WG)
fn reduce_thread(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg) * WG + lid;
    if (row >= p.rows) {
        return;
    }
    let base = strided_offset(p.outer, row);
    var acc = identity();
    for (var k = 0u; k < p.len; k++) {
        acc = combine(acc, load(base, k));
    }
    store(row, acc);
}

@compute @workgroup_size(WG)
fn reduce_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg);
    if (w >= p.rows * p.chunks) {
        return; // whole workgroups only: the barriers below stay in uniform control flow
    }
    let row = w / p.chunks;
    let start = (w % p.chunks) * p.chunk_len;
    let end = min(start + p.chunk_len, p.len);
    let base = strided_offset(p.outer, row);
    var acc = identity();
    for (var k = start + lid; k < end; k += WG) {
        acc = combine(acc, load(base, k));
    }
    sv[lid] = acc.v;
    si[lid] = acc.i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let r = combine(Acc(sv[lid], si[lid]), Acc(sv[lid + s], si[lid + s]));
            sv[lid] = r.v;
            si[lid] = r.i;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        store(w, Acc(sv[0], si[0]));
    }
}
