// Fused scaled dot-product attention, flash style (FlashAttention, Dao et al. 2022; the
// backward split as in FlashAttention-2, Dao 2023): the Tq × Tk score matrix never exists in
// memory. Shapes and the math are those of src/cpu/attention.rs (the reference):
//   B batch, H query heads, Hkv K/V heads (query head h reads K/V head h / (H / Hkv)), Tq
//   queries, Tk keys, D query/key head dim, Dv value head dim;
//   S = scale · Q Kᵀ + mask (−∞ above the diagonal when causal), LSE = log Σ_j exp S,
//   P = exp(S − LSE), O = P V;  Di = Σ_e dO∘O,  dS = P ∘ (dO Vᵀ − Di),
//   dQ = scale · dS K,  dK = scale · Σ_group dSᵀ Q,  dV = Σ_group Pᵀ dO.
// q, k, v, the mask and dO are read through their 4-D strides (permuted views, broadcast
// masks with stride 0); O, LSE, Di and the gradients are contiguous. A row with no unmasked
// key has O = 0 and LSE = +∞, which makes P = 0 for it in the backward.
// Entry points (each one thread per row, rows in blocks of the workgroup size):
//   attention_forward:   workgroup = BQ query rows of one (b, h); streams K/V tiles of BK keys
//                        through workgroup memory with an online softmax (running max, sum).
//   attention_di:        Di for 64 rows.
//   attention_dq:        workgroup = BQ query rows; streams K/V tiles; dQ.
//   attention_dkdv:      workgroup = BQ keys of one (b, hkv); streams tiles of BK query rows
//                        (q, dO, LSE, Di) of each query head of the group; dK and dV (a
//                        deterministic sum over the group: no atomics anywhere).
// Tile sizes are override constants picked per head dim by src/gpu/attention.rs so the tiles
// fit the device's workgroup memory. Per-thread rows live in private arrays of DMAX floats.

override BQ: u32 = 64u;   // rows (threads) per workgroup
override BK: u32 = 32u;   // rows per streamed tile
override TA: u32 = 2048u; // floats of tile A: BK · D (keys, or queries in attention_dkdv)
override TB: u32 = 2048u; // floats of tile B: BK · Dv (values, or dO in attention_dkdv)
override TC: u32 = 64u;   // floats of the per-row tile stats (2 · BK in attention_dkdv)

const DMAX: u32 = 128u;   // largest D and Dv (the launcher refuses larger)
const BKMAX: u32 = 64u;   // largest BK
const NEG_INF_BITS: u32 = 0xff800000u;
const POS_INF_BITS: u32 = 0x7f800000u;

struct Params {
    qs: vec4<u32>,    // strides of q, k, v, mask, dO: (b, h, t, d)
    ks: vec4<u32>,
    vs: vec4<u32>,
    ms: vec4<u32>,
    gs: vec4<u32>,
    off: vec4<u32>,   // offsets of q, k, v, mask
    dims: vec4<u32>,  // H, Hkv, Tq, Tk
    dims2: vec4<u32>, // D, Dv, flags (1 causal, 2 has mask), dO offset
    scale: f32,
    dv_off: u32,      // where dV starts in the dK|dV output
    b: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// attention_forward, attention_dq, attention_dkdv
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
// attention_forward
@group(0) @binding(5) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> o_out: array<f32>;
// attention_dq, attention_dkdv
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;
@group(0) @binding(7) var<storage, read> di_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<f32>; // dQ, or dK then dV
// attention_di
@group(0) @binding(1) var<storage, read> di_dout: array<f32>;
@group(0) @binding(2) var<storage, read> di_o: array<f32>;
@group(0) @binding(3) var<storage, read_write> di_out: array<f32>;

var<workgroup> tile_a: array<f32, TA>;
var<workgroup> tile_b: array<f32, TB>;
var<workgroup> tile_c: array<f32, TC>;

fn n_heads() -> u32 { return p.dims.x; }
fn n_kv() -> u32 { return p.dims.y; }
fn tq() -> u32 { return p.dims.z; }
fn tk() -> u32 { return p.dims.w; }
fn hd() -> u32 { return p.dims2.x; }
fn hdv() -> u32 { return p.dims2.y; }
fn causal() -> bool { return (p.dims2.z & 1u) != 0u; }
fn has_mask() -> bool { return (p.dims2.z & 2u) != 0u; }

fn is_neg_inf(x: f32) -> bool { return bitcast<u32>(x) == NEG_INF_BITS; }
fn is_pos_inf(x: f32) -> bool { return bitcast<u32>(x) == POS_INF_BITS; }

fn q_at(b: u32, h: u32, i: u32) -> u32 { return p.off.x + b * p.qs.x + h * p.qs.y + i * p.qs.z; }
fn k_at(b: u32, h: u32, j: u32) -> u32 { return p.off.y + b * p.ks.x + h * p.ks.y + j * p.ks.z; }
fn v_at(b: u32, h: u32, j: u32) -> u32 { return p.off.z + b * p.vs.x + h * p.vs.y + j * p.vs.z; }
fn g_at(b: u32, h: u32, i: u32) -> u32 { return p.dims2.w + b * p.gs.x + h * p.gs.y + i * p.gs.z; }

// The additive mask at (b, h, i, j), 0 without a mask.
fn mask_at(b: u32, h: u32, i: u32, j: u32) -> f32 {
    if (!has_mask()) {
        return 0.0;
    }
    return mask[p.off.w + b * p.ms.x + h * p.ms.y + i * p.ms.z + j * p.ms.w];
}

// Keys that query rows below `row_end` may see: all, or j < row_end when causal. Uniform in a
// workgroup when `row_end` is.
fn keys_visible(row_end: u32) -> u32 {
    if (causal()) {
        return min(tk(), row_end);
    }
    return tk();
}

// Cooperatively loads `n` key rows from j0 of K (into tile_a) and V (into tile_b) of (b, hk).
fn load_kv(b: u32, hk: u32, j0: u32, n: u32, lid: u32) {
    let d = hd();
    let dv = hdv();
    for (var x = lid; x < n * d; x += BQ) {
        let jj = x / d;
        tile_a[x] = k[k_at(b, hk, j0 + jj) + (x % d) * p.ks.w];
    }
    for (var x = lid; x < n * dv; x += BQ) {
        let jj = x / dv;
        tile_b[x] = v[v_at(b, hk, j0 + jj) + (x % dv) * p.vs.w];
    }
}

@compute @workgroup_size(BQ)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let bh = wg.y;
    let b = bh / n_heads();
    let h = bh % n_heads();
    let hk = h / (n_heads() / n_kv());
    let i = wg.x * BQ + lid;
    let live = i < tq();
    let d = hd();
    let dv = hdv();
    var qr: array<f32, DMAX>;
    var o: array<f32, DMAX>;
    var s: array<f32, BKMAX>;
    if (live) {
        let base = q_at(b, h, i);
        for (var x = 0u; x < d; x++) {
            qr[x] = q[base + x * p.qs.w];
        }
    }
    var m = f32_neg_inf(); // running max of the scores seen
    var l = 0.0;       // running Σ exp(s − m)
    let nk = keys_visible(wg.x * BQ + BQ);
    for (var j0 = 0u; j0 < nk; j0 += BK) {
        let n = min(BK, nk - j0);
        load_kv(b, hk, j0, n, lid);
        workgroupBarrier();
        if (live) {
            var mt = f32_neg_inf();
            for (var jj = 0u; jj < n; jj++) {
                let j = j0 + jj;
                var dot = 0.0;
                for (var x = 0u; x < d; x++) {
                    dot += qr[x] * tile_a[jj * d + x];
                }
                var sc = dot * p.scale + mask_at(b, h, i, j);
                if (causal() && j > i) {
                    sc = f32_neg_inf();
                }
                s[jj] = sc;
                if (!is_neg_inf(sc)) {
                    mt = max(mt, sc);
                }
            }
            if (!is_neg_inf(mt)) {
                let m_new = max(m, mt);
                var corr = 0.0;
                if (!is_neg_inf(m)) {
                    corr = exp(m - m_new);
                }
                l *= corr;
                for (var e = 0u; e < dv; e++) {
                    o[e] *= corr;
                }
                for (var jj = 0u; jj < n; jj++) {
                    if (is_neg_inf(s[jj])) {
                        continue;
                    }
                    let pr = exp(s[jj] - m_new);
                    l += pr;
                    for (var e = 0u; e < dv; e++) {
                        o[e] += pr * tile_b[jj * dv + e];
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let row = bh * tq() + i;
        var inv = 0.0;
        if (l > 0.0) {
            inv = 1.0 / l;
            lse_out[row] = m + log(l);
        } else {
            lse_out[row] = f32_inf();
        }
        for (var e = 0u; e < dv; e++) {
            o_out[row * dv + e] = o[e] * inv;
        }
    }
}

// Di = Σ_e dO ∘ O for rows of the contiguous O (B·H·Tq rows of Dv); dO through its strides.
@compute @workgroup_size(64)
fn attention_di(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * 64u + gid.x;
    if (row >= p.b * n_heads() * tq()) {
        return;
    }
    let i = row % tq();
    let bh = row / tq();
    let g = g_at(bh / n_heads(), bh % n_heads(), i);
    let dv = hdv();
    var acc = 0.0;
    for (var e = 0u; e < dv; e++) {
        acc += di_dout[g + e * p.gs.w] * di_o[row * dv + e];
    }
    di_out[row] = acc;
}

// P[i, j] recomputed from the saved LSE (0 for masked scores and fully masked rows).
fn prob(sc: f32, l: f32) -> f32 {
    if (is_neg_inf(sc) || is_pos_inf(l)) {
        return 0.0;
    }
    return exp(sc - l);
}

@compute @workgroup_size(BQ)
fn attention_dq(@builtin(workgroup_id) wg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let bh = wg.y;
    let b = bh / n_heads();
    let h = bh % n_heads();
    let hk = h / (n_heads() / n_kv());
    let i = wg.x * BQ + lid;
    let live = i < tq();
    let d = hd();
    let dv = hdv();
    var qr: array<f32, DMAX>;
    var gr: array<f32, DMAX>;
    var dq: array<f32, DMAX>;
    var l = 0.0;
    var di = 0.0;
    if (live) {
        let qb = q_at(b, h, i);
        for (var x = 0u; x < d; x++) {
            qr[x] = q[qb + x * p.qs.w];
        }
        let gb = g_at(b, h, i);
        for (var e = 0u; e < dv; e++) {
            gr[e] = dout[gb + e * p.gs.w];
        }
        l = lse_in[bh * tq() + i];
        di = di_in[bh * tq() + i];
    }
    let nk = keys_visible(wg.x * BQ + BQ);
    for (var j0 = 0u; j0 < nk; j0 += BK) {
        let n = min(BK, nk - j0);
        load_kv(b, hk, j0, n, lid);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < n; jj++) {
                let j = j0 + jj;
                if (causal() && j > i) {
                    break;
                }
                var dot = 0.0;
                for (var x = 0u; x < d; x++) {
                    dot += qr[x] * tile_a[jj * d + x];
                }
                let pr = prob(dot * p.scale + mask_at(b, h, i, j), l);
                if (pr == 0.0) {
                    continue;
                }
                var dp = 0.0;
                for (var e = 0u; e < dv; e++) {
                    dp += gr[e] * tile_b[jj * dv + e];
                }
                let ds = pr * (dp - di);
                for (var x = 0u; x < d; x++) {
                    dq[x] += ds * tile_a[jj * d + x];
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let row = bh * tq() + i;
        for (var x = 0u; x < d; x++) {
            grad[row * d + x] = dq[x] * p.scale;
        }
    }
}

@compute @workgroup_size(BQ)
fn attention_dkdv(@builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let bk = wg.y; // b · Hkv + hk
    let b = bk / n_kv();
    let hk = bk % n_kv();
    let group = n_heads() / n_kv();
    let j0 = wg.x * BQ;
    let j = j0 + lid;
    let live = j < tk();
    let d = hd();
    let dv = hdv();
    var kr: array<f32, DMAX>;
    var vr: array<f32, DMAX>;
    var dk: array<f32, DMAX>;
    var dvr: array<f32, DMAX>;
    if (live) {
        let kb = k_at(b, hk, j);
        for (var x = 0u; x < d; x++) {
            kr[x] = k[kb + x * p.ks.w];
        }
        let vb = v_at(b, hk, j);
        for (var e = 0u; e < dv; e++) {
            vr[e] = v[vb + e * p.vs.w];
        }
    }
    // Query rows that can see a key of this block: all, or i ≥ j0 when causal.
    var i_start = 0u;
    if (causal()) {
        i_start = j0;
    }
    for (var r = 0u; r < group; r++) {
        let h = hk * group + r;
        let bh = b * n_heads() + h;
        for (var i0 = i_start; i0 < tq(); i0 += BK) {
            let n = min(BK, tq() - i0);
            // Tiles of q (tile_a), dO (tile_b), LSE and Di (tile_c).
            for (var x = lid; x < n * d; x += BQ) {
                tile_a[x] = q[q_at(b, h, i0 + x / d) + (x % d) * p.qs.w];
            }
            for (var x = lid; x < n * dv; x += BQ) {
                tile_b[x] = dout[g_at(b, h, i0 + x / dv) + (x % dv) * p.gs.w];
            }
            for (var x = lid; x < n; x += BQ) {
                tile_c[2u * x] = lse_in[bh * tq() + i0 + x];
                tile_c[2u * x + 1u] = di_in[bh * tq() + i0 + x];
            }
            workgroupBarrier();
            if (live) {
                for (var ii = 0u; ii < n; ii++) {
                    let i = i0 + ii;
                    if (causal() && j > i) {
                        continue;
                    }
                    var dot = 0.0;
                    for (var x = 0u; x < d; x++) {
                        dot += tile_a[ii * d + x] * kr[x];
                    }
                    let pr = prob(dot * p.scale + mask_at(b, h, i, j), tile_c[2u * ii]);
                    if (pr == 0.0) {
                        continue;
                    }
                    var dp = 0.0;
                    for (var e = 0u; e < dv; e++) {
                        let g = tile_b[ii * dv + e];
                        dvr[e] += pr * g;
                        dp += g * vr[e];
                    }
                    let ds = pr * (dp - tile_c[2u * ii + 1u]);
                    for (var x = 0u; x < d; x++) {
                        dk[x] += ds * tile_a[ii * d + x];
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (live) {
        let row = bk * tk() + j;
        for (var x = 0u; x < d; x++) {
            grad[row * d + x] = dk[x] * p.scale;
        }
        for (var e = 0u; e < dv; e++) {
            grad[p.dv_off + row * dv + e] = dvr[e];
        }
    }
}
