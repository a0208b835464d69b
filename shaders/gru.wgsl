// Fused GRU cell, forward and backward (src/gpu/gru.rs launches them; the CPU reference is
// src/cpu/gru.rs, with the same names). Gates in PyTorch's order (r, z, n).
// Shapes (T steps, B batch, H hidden, G = 3H): gx [T, B, G] = X·W_ihᵀ (no bias);
// hw [B, G] = h_{t-1}·W_hhᵀ (no bias); saved [T, B, 4H] = r, z, n, ghn per step, where
// ghn = W_hn·h_{t-1} + b_hn; hs [T + 1, B, H] = h_0..h_T (row 0 is written before the kernels).
// The buffers have role names below:
//   gru_forward:      a0 = saved, a1 = hs, r0 = gx, r1 = hw, r2 = b_ih, r3 = b_hh
//   gru_backward:     a0 = dgi [T, B, G], a1 = dgh [T, B, G], a2 = carry [B, H] (dh·z of the
//                     later step, in place), r0 = dy [T + 1, B, H], r1 = saved, r2 = hs,
//                     r3 = mm [B, H] (dgh_{t+1}·W_hh)
//   gru_seq_forward:  as gru_forward, with r1 = W_hh
//   gru_seq_backward: a0 = dgi, a1 = dgh, a2 = dh0 [B, H], r0 = dy, r1 = saved, r2 = hs,
//                     r3 = W_hh
// The per-step kernels use one invocation per (batch row b, hidden unit j). The whole-sequence
// kernels (H <= 256) run one layer in one dispatch: a workgroup owns one batch row and walks
// through time, its invocation j owning hidden unit j; the recurrent product (h_{t-1}·W_hhᵀ,
// or dgh_t·W_hh going back) reads the row's state from workgroup memory. Batch rows are
// independent, so no grid-wide barrier is needed.

override WG: u32 = 64u;

struct Params {
    batch: u32,
    hidden: u32,
    t: u32,      // the step (per-step kernels)
    steps: u32,  // T
    dy_off: u32,
    bi_off: u32,
    bh_off: u32,
    w_off: u32,  // W_hh's first element (the whole-sequence kernels)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a0: array<f32>;
@group(0) @binding(2) var<storage, read_write> a1: array<f32>;
@group(0) @binding(3) var<storage, read_write> a2: array<f32>;
@group(0) @binding(4) var<storage, read> r0: array<f32>;
@group(0) @binding(5) var<storage, read> r1: array<f32>;
@group(0) @binding(6) var<storage, read> r2: array<f32>;
@group(0) @binding(7) var<storage, read> r3: array<f32>;

// The largest H of the whole-sequence kernels, and their per-row state in workgroup memory.
const SEQ_MAX_H: u32 = 256u;
var<workgroup> h_sh: array<f32, SEQ_MAX_H>;       // h_{t-1} (forward)
var<workgroup> dg_sh: array<f32, 768>;            // dgh_t, 3·SEQ_MAX_H (backward)

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh without exp overflow (the built-in may return NaN for large |x| on some drivers).
fn tanh_safe(x: f32) -> f32 {
    return 2.0 * sigmoid(2.0 * x) - 1.0;
}

// The cell at (step t, row b, unit j) from the recurrent parts gh = (gh_r, gh_z, gh_n) with
// b_hh included: writes saved and h_t, returns h_t.
fn cell_forward(t: u32, b: u32, j: u32, gh: vec3<f32>, hp: f32) -> f32 {
    let h = p.hidden;
    let row = (t * p.batch + b) * 3u * h;
    let gi = vec3<f32>(r0[row + j] + r2[p.bi_off + j], r0[row + h + j] + r2[p.bi_off + h + j],
                       r0[row + 2u * h + j] + r2[p.bi_off + 2u * h + j]);
    let r = sigmoid(gi.x + gh.x);
    let z = sigmoid(gi.y + gh.y);
    let n = tanh_safe(gi.z + r * gh.z);
    let hn = (1.0 - z) * n + z * hp;
    let srow = (t * p.batch + b) * 4u * h;
    a0[srow + j] = r;
    a0[srow + h + j] = z;
    a0[srow + 2u * h + j] = n;
    a0[srow + 3u * h + j] = gh.z;
    a1[(t + 1u) * p.batch * h + b * h + j] = hn;
    return hn;
}

// The cell backward at (step t, row b, unit j) given dh reaching h_t: writes dgi and dgh,
// returns (dh·z, dgh_r, dgh_z, dgh_n).
fn cell_backward(t: u32, b: u32, j: u32, dh: f32) -> vec4<f32> {
    let h = p.hidden;
    let srow = (t * p.batch + b) * 4u * h;
    let r = r1[srow + j];
    let z = r1[srow + h + j];
    let n = r1[srow + 2u * h + j];
    let ghn = r1[srow + 3u * h + j];
    let hp = r2[t * p.batch * h + b * h + j];
    let dn = dh * (1.0 - z) * (1.0 - n * n);
    let dr = dn * ghn * r * (1.0 - r);
    let dz = dh * (hp - n) * z * (1.0 - z);
    let row = (t * p.batch + b) * 3u * h;
    a0[row + j] = dr;
    a0[row + h + j] = dz;
    a0[row + 2u * h + j] = dn;
    a1[row + j] = dr;
    a1[row + h + j] = dz;
    a1[row + 2u * h + j] = dn * r;
    return vec4<f32>(dh * z, dr, dz, dn * r);
}

@compute @workgroup_size(WG)
fn gru_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = linear_workgroup(wg, nwg) * WG + lid;
    let h = p.hidden;
    if (idx >= p.batch * h) {
        return;
    }
    let b = idx / h;
    let j = idx % h;
    let hrow = b * 3u * h;
    let gh = vec3<f32>(r1[hrow + j] + r3[p.bh_off + j], r1[hrow + h + j] + r3[p.bh_off + h + j],
                       r1[hrow + 2u * h + j] + r3[p.bh_off + 2u * h + j]);
    cell_forward(p.t, b, j, gh, a1[p.t * p.batch * h + idx]);
}

@compute @workgroup_size(WG)
fn gru_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = linear_workgroup(wg, nwg) * WG + lid;
    let bh = p.batch * p.hidden;
    if (idx >= bh) {
        return;
    }
    // The last step starts the carry from dy alone.
    var dh = r0[p.dy_off + (p.t + 1u) * bh + idx];
    if (p.t + 1u < p.steps) {
        dh += a2[idx] + r3[idx];
    }
    a2[idx] = cell_backward(p.t, idx / p.hidden, idx % p.hidden, dh).x;
}

@compute @workgroup_size(WG)
fn gru_seq_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let mine = j < h;
    if (mine) {
        h_sh[j] = a1[b * h + j];
    }
    workgroupBarrier();
    for (var t = 0u; t < p.steps; t++) {
        var hn = 0.0;
        if (mine) {
            // gh = W_hh[(gate, j), :] · h_{t-1} + b_hh
            var gh = vec3<f32>(r3[p.bh_off + j], r3[p.bh_off + h + j], r3[p.bh_off + 2u * h + j]);
            let w0 = p.w_off + j * h;
            for (var k = 0u; k < h; k++) {
                gh += h_sh[k] * vec3<f32>(r1[w0 + k], r1[w0 + h * h + k], r1[w0 + 2u * h * h + k]);
            }
            hn = cell_forward(t, b, j, gh, h_sh[j]);
        }
        workgroupBarrier();   // every invocation has read h_{t-1}
        if (mine) {
            h_sh[j] = hn;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn gru_seq_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let g = 3u * h;
    let bh = p.batch * h;
    let mine = j < h;
    var carry = 0.0; // the gradient reaching h_t from later steps
    for (var s = 0u; s < p.steps; s++) {
        let t = p.steps - 1u - s;
        var direct = 0.0;
        if (mine) {
            let dh = r0[p.dy_off + (t + 1u) * bh + b * h + j] + carry;
            let c = cell_backward(t, b, j, dh);
            direct = c.x;
            dg_sh[j] = c.y;
            dg_sh[h + j] = c.z;
            dg_sh[2u * h + j] = c.w;
        }
        workgroupBarrier();
        if (mine) {
            // (dgh_t·W_hh)[j] = Σ_q dgh_t[q] W_hh[q, j]
            var acc = direct;
            for (var q = 0u; q < g; q++) {
                acc += dg_sh[q] * r3[p.w_off + q * h + j];
            }
            carry = acc;
        }
        workgroupBarrier();   // dg_sh is rewritten by the next step
    }
    if (mine) {
        a2[b * h + j] = carry;
    }
}
