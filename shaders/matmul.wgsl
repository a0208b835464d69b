// Batched matmul, out[b] = a[b] @ b[b]: a is [M, K], b is [K, N], out is contiguous [M, N].
// Each workgroup computes a BM×BN block of one batch's output: it walks K in steps of TK,
// staging a BM×TK tile of a and a TK×BN tile of b in workgroup memory, and each invocation
// accumulates a TM×TN block of outputs in registers (rows ly + i·WG_Y, columns lx + j·WG_X, so
// neighbouring invocations read neighbouring words of the b tile and write neighbouring
// outputs). Reads past M, N or K load 0, writes past M or N are skipped: any M, N, K >= 1.
// Operands are row-major (TRANS_* = 0: a[m, k] at m·lda + k) or column-major (TRANS_* = 1:
// a[m, k] at m + k·lda, e.g. a `.t()` view); the tile loads follow the unit stride.
// Bindings: out, a, b. Workgroups form a grid folded by `linear_workgroup`: tiles of one
// batch in row-major order, then the batches.

// Outputs per invocation; const because function-scope arrays need a constant size
// (src/gpu/matmul.rs has the same values).
const TM: u32 = 4u;
const TN: u32 = 4u;

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override TK: u32 = 16u;
override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;
override BM: u32 = WG_Y * TM;
override BN: u32 = WG_X * TN;

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
    // Merged batch dims (outermost first, padded in front with 1) and each operand's strides
    // along them (0 where broadcast).
    bdims: vec4<u32>,
    a_bstrides: vec4<u32>,
    b_bstrides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;

// The operands' element type lives in this block only: src/gpu/matmul.rs swaps it for the
// files in shaders/io/ to build the F16 kernels (element indices are the same in all).
// io:begin
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn load_a(i: u32) -> f32 {
    return a[i];
}

fn load_b(i: u32) -> f32 {
    return b[i];
}

fn store_out(i: u32, v: f32) {
    out[i] = v;
}
// io:end

// tile_a[kk·BM + r] = a[m0 + r, k0 + kk]; tile_b[kk·BN + c] = b[k0 + kk, n0 + c].
var<workgroup> tile_a: array<f32, BM * TK>;
var<workgroup> tile_b: array<f32, BN * TK>;

@compute @workgroup_size(WG_X, WG_Y)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let tiles = p.tiles_m * p.tiles_n;
    let tile = linear_workgroup(wg, nwg);
    if (tile >= tiles * p.batch) {
        return; // whole workgroup: the grid was folded past the last tile
    }
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

    let tid = lid.y * WG_X + lid.x;
    let threads = WG_X * WG_Y;
    var acc: array<f32, TM * TN>; // row-major
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var idx = tid; idx < BM * TK; idx += threads) {
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
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = load_a(a_base + select(gm * p.lda + gk, gm + gk * p.lda, TRANS_A != 0u));
            }
            tile_a[kk * BM + r] = v;
        }
        for (var idx = tid; idx < BN * TK; idx += threads) {
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
            var v = 0.0;
            if (gn < p.n && gk < p.k) {
                v = load_b(b_base + select(gk * p.ldb + gn, gk + gn * p.ldb, TRANS_B != 0u));
            }
            tile_b[kk * BN + c] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var ar: array<f32, TM>;
            var br: array<f32, TN>;
            for (var i = 0u; i < TM; i++) {
                ar[i] = tile_a[kk * BM + lid.y + i * WG_Y];
            }
            for (var j = 0u; j < TN; j++) {
                br[j] = tile_b[kk * BN + lid.x + j * WG_X];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }

    let out_base = bi * p.m * p.n;
    for (var i = 0u; i < TM; i++) {
        let gm = m0 + lid.y + i * WG_Y;
        if (gm >= p.m) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let gn = n0 + lid.x + j * WG_X;
            if (gn < p.n) {
                store_out(out_base + gm * p.n + gn, acc[i * TN + j]);
            }
        }
    }
}
