enable f16;
enable wgpu_cooperative_matrix;

// Batched matmul on cooperative matrices (tensor cores), out[b] = a[b] @ b[b]: a is F16
// [M, K], b is F16 [K, N], out is contiguous f32 [M, N] (the caller casts to F16 if it wants).
// Each fragment product is 16×16×16, f16 × f16 accumulated in f32: the configuration
// src/gpu/coop.rs requires the adapter to list. A workgroup is one subgroup (WG invocations,
// the adapter's largest subgroup size; see src/gpu/coop.rs) and computes a BM×BN = 32×32
// block of one batch's output as 2×2 fragments: it walks K in steps of TK = 16, staging a
// zero-padded BM×TK tile of a and a TK×BN tile of b in workgroup memory, loads two A and two
// B fragments from there and does four multiply-adds. The C fragments go through workgroup
// memory on the way out so only the in-range part is written: any M, N, K >= 1.
// Operands are row-major (TRANS_* = 0: a[m, k] at m·lda + k) or column-major (TRANS_* = 1:
// a[m, k] at m + k·lda); the tile loads follow the unit stride. Element offsets index
// `array<f16>`, which is exactly the F16 storage contract (the o-th 16-bit half of the buffer).
// Params and the batch indexing are those of matmul.wgsl. Bindings: out, a, b.
// Cooperative operations must run in uniform control flow, and naga's analysis counts any
// earlier `return` against that: no branch or return precedes them.

// Fragment side (rows = columns = K of one multiply-add), the block and the K step. Consts:
// the four accumulators below are written out, so the 2×2 shape is fixed.
const FRAG: u32 = 16u;
const BM: u32 = 32u;
const BN: u32 = 32u;
const TK: u32 = 16u;

override WG: u32 = 32u;
override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    lda: u32,
    ldb: u32,
    a_off: u32,
    b_off: u32,
    tiles_m: u32,
    tiles_n: u32,
    _pad0: u32,
    _pad1: u32,
    bdims: vec4<u32>,
    a_bstrides: vec4<u32>,
    b_bstrides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f16>;
@group(0) @binding(3) var<storage, read> b: array<f16>;

// Row-major staging tiles: tile_a[r·TK + kk] = a[m0 + r, k0 + kk],
// tile_b[kk·BN + c] = b[k0 + kk, n0 + c], tile_c[r·BN + c] = out[m0 + r, n0 + c]; 0 past the edges.
var<workgroup> tile_a: array<f16, BM * TK>;
var<workgroup> tile_b: array<f16, TK * BN>;
var<workgroup> tile_c: array<f32, BM * BN>;

@compute @workgroup_size(WG)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) tid: u32) {
    let tiles = p.tiles_m * p.tiles_n;
    // A workgroup past the last tile (the grid was folded) recomputes the last tile and writes
    // nothing: naga allows no `return` before cooperative operations.
    let live = linear_workgroup(wg, nwg) < tiles * p.batch;
    let tile = min(linear_workgroup(wg, nwg), tiles * p.batch - 1u);
    let bi = tile / tiles;
    let m0 = ((tile % tiles) / p.tiles_n) * BM;
    let n0 = (tile % p.tiles_n) * BN;

    var a_base = p.a_off;
    var b_base = p.b_off;
    var rem = bi;
    for (var d = 3; d >= 0; d--) {
        let i = rem % p.bdims[d];
        rem = rem / p.bdims[d];
        a_base += i * p.a_bstrides[d];
        b_base += i * p.b_bstrides[d];
    }

    // Fragment (i, j) of the block: rows 16i.., columns 16j...
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    // Strides and fragment offsets as `let`s: naga's SPIR-V writer takes each operand of a
    // cooperative load/store as an already emitted value. Every fragment offset and stride is
    // a multiple of 16 bytes, as Vulkan drivers expect of cooperative loads and stores.
    let lds_a = TK;
    let lds_b = BN;
    let lds_c = BN;
    let a1 = FRAG * TK;
    let b1 = FRAG;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var idx = tid; idx < BM * TK; idx += WG) {
            var r: u32;
            var kk: u32;
            if (TRANS_A == 0u) {
                r = idx / TK;
                kk = idx % TK;
            } else {
                r = idx % BM;
                kk = idx / BM;
            }
            let gm = m0 + r;
            let gk = k0 + kk;
            var v = f16(0.0);
            if (gm < p.m && gk < p.k) {
                v = a[a_base + select(gm * p.lda + gk, gm + gk * p.lda, TRANS_A != 0u)];
            }
            tile_a[r * TK + kk] = v;
        }
        for (var idx = tid; idx < TK * BN; idx += WG) {
            var c: u32;
            var kk: u32;
            if (TRANS_B == 0u) {
                c = idx % BN;
                kk = idx / BN;
            } else {
                c = idx / TK;
                kk = idx % TK;
            }
            let gn = n0 + c;
            let gk = k0 + kk;
            var v = f16(0.0);
            if (gn < p.n && gk < p.k) {
                v = b[b_base + select(gk * p.ldb + gn, gk + gn * p.ldb, TRANS_B != 0u)];
            }
            tile_b[kk * BN + c] = v;
        }
        workgroupBarrier();
        let fa0 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[0], lds_a);
        let fa1 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[a1], lds_a);
        let fb0 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[0], lds_b);
        let fb1 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[b1], lds_b);
        c00 = coopMultiplyAdd(fa0, fb0, c00);
        c01 = coopMultiplyAdd(fa0, fb1, c01);
        c10 = coopMultiplyAdd(fa1, fb0, c10);
        c11 = coopMultiplyAdd(fa1, fb1, c11);
        workgroupBarrier(); // the tiles are rewritten by the next step
    }

    let c01_at = FRAG;
    let c10_at = FRAG * BN;
    let c11_at = FRAG * BN + FRAG;
    coopStoreT(c00, &tile_c[0], lds_c);
    coopStoreT(c01, &tile_c[c01_at], lds_c);
    coopStoreT(c10, &tile_c[c10_at], lds_c);
    coopStoreT(c11, &tile_c[c11_at], lds_c);
    workgroupBarrier();

    let out_base = bi * p.m * p.n;
    for (var idx = tid; idx < BM * BN; idx += WG) {
        let gm = m0 + idx / BN;
        let gn = n0 + idx % BN;
        if (live && gm < p.m && gn < p.n) {
            out[out_base + gm * p.n + gn] = tile_c[idx];
        }
    }
}
