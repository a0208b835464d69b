// Fused LSTM cell of one time step, forward and backward (src/gpu/lstm.rs launches them; the
// CPU reference is src/cpu/lstm.rs, with the same names). One invocation per (batch row b,
// hidden unit j); gates in PyTorch's order (i, f, g, o).
// Shapes (T steps, B batch, H hidden, G = 4H): zx [T, B, G] = X·W_ihᵀ; hw [B, G] = h_{t-1}·W_hhᵀ;
// gates [T, B, G] activations; cs [T + 1, B, H] = c_0..c_T; hs [T + 1, B, H] = h_1..h_T, c_T.
// The buffers have role names below:
//   lstm_forward:  a0 = gates, a1 = cs, a2 = hs, r0 = zx, r1 = hw, r2 = b_ih, r3 = b_hh
//   lstm_backward: a0 = dz [T, B, G], a1 = dc [B, H] (carried, in place),
//                  a2 = dh [B, H] (dz_{t+1}·W_hh, read only), r0 = dy [T + 1, B, H],
//                  r1 = gates, r2 = cs
//   lstm_seq_forward:  as lstm_forward, with r1 = W_hh and s0 = h0 (cs[0] holds c0)
//   lstm_seq_backward: a0 = dz, a1 = dc0 [B, H], a2 = dh0 [B, H], r0 = dy, r1 = gates,
//                      r2 = cs, r3 = W_hh
// Both backward kernels also bind lens [B]: with p.lengths != 0, row b's last step is
// lens[b] − 1 (variable-length layers: dy's c row is the gradient of c at that step and
// enters there); else T − 1 and lens is not read.
// The whole-sequence kernels (H <= 256) run one layer in one dispatch: a workgroup owns one
// batch row and walks through time, its invocation j owning hidden unit j; the recurrent
// product h_{t-1}·W_hhᵀ (or dz_t·W_hh going back) reads the row's state from workgroup memory.
// Batch rows are independent, so no grid-wide barrier is needed.

override WG: u32 = 64u;

struct Params {
    batch: u32,
    hidden: u32,
    t: u32,      // the step
    steps: u32,  // T
    dy_off: u32,
    bi_off: u32,
    bh_off: u32,
    w_off: u32,  // W_hh's first element (the whole-sequence kernels)
    h0_off: u32, // h0's first element (lstm_seq_forward)
    lengths: u32, // whether the backward kernels read lens
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a0: array<f32>;
@group(0) @binding(2) var<storage, read_write> a1: array<f32>;
@group(0) @binding(3) var<storage, read_write> a2: array<f32>;
@group(0) @binding(4) var<storage, read> r0: array<f32>;
@group(0) @binding(5) var<storage, read> r1: array<f32>;
@group(0) @binding(6) var<storage, read> r2: array<f32>;
@group(0) @binding(7) var<storage, read> r3: array<f32>;
@group(0) @binding(8) var<storage, read> s0: array<f32>;
@group(0) @binding(9) var<storage, read> lens: array<u32>;

// The step whose c the last row of the result holds for batch row b (see the header).
fn last_step(b: u32) -> u32 {
    if (p.lengths != 0u) {
        return lens[b] - 1u;
    }
    return p.steps - 1u;
}

// The largest H of the whole-sequence kernels, and their per-row state in workgroup memory.
const SEQ_MAX_H: u32 = 256u;
var<workgroup> h_sh: array<f32, SEQ_MAX_H>;       // h_{t-1} (forward), dh carried (backward)
var<workgroup> dz_sh: array<f32, 1024>;           // dz_t, 4·SEQ_MAX_H (backward)

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh without exp overflow (the built-in may return NaN for large |x| on some drivers).
fn tanh_safe(x: f32) -> f32 {
    return 2.0 * sigmoid(2.0 * x) - 1.0;
}

@compute @workgroup_size(WG)
fn lstm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = linear_workgroup(wg, nwg) * WG + lid;
    let bh = p.batch * p.hidden;
    if (idx >= bh) {
        return;
    }
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = 4u * h;
    let row = (p.t * p.batch + b) * g;
    let hrow = b * g;
    let zi = r0[row + j] + r1[hrow + j] + r2[p.bi_off + j] + r3[p.bh_off + j];
    let zf = r0[row + h + j] + r1[hrow + h + j] + r2[p.bi_off + h + j] + r3[p.bh_off + h + j];
    let zg = r0[row + 2u * h + j] + r1[hrow + 2u * h + j] + r2[p.bi_off + 2u * h + j]
        + r3[p.bh_off + 2u * h + j];
    let zo = r0[row + 3u * h + j] + r1[hrow + 3u * h + j] + r2[p.bi_off + 3u * h + j]
        + r3[p.bh_off + 3u * h + j];
    let i = sigmoid(zi);
    let f = sigmoid(zf);
    let gg = tanh_safe(zg);
    let o = sigmoid(zo);
    a0[row + j] = i;
    a0[row + h + j] = f;
    a0[row + 2u * h + j] = gg;
    a0[row + 3u * h + j] = o;
    let c = f * a1[p.t * bh + idx] + i * gg;
    a1[(p.t + 1u) * bh + idx] = c;
    a2[p.t * bh + idx] = o * tanh_safe(c);
    if (p.t + 1u == p.steps) {
        a2[p.steps * bh + idx] = c;
    }
}

@compute @workgroup_size(WG)
fn lstm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = linear_workgroup(wg, nwg) * WG + lid;
    let bh = p.batch * p.hidden;
    if (idx >= bh) {
        return;
    }
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = 4u * h;
    let row = (p.t * p.batch + b) * g;
    let i = r1[row + j];
    let f = r1[row + h + j];
    let gg = r1[row + 2u * h + j];
    let o = r1[row + 3u * h + j];
    let c = r2[(p.t + 1u) * bh + idx];
    let cp = r2[p.t * bh + idx];
    // The last step starts the carries from dy alone; dy's c row joins at the row's last step.
    var dh = r0[p.dy_off + p.t * bh + idx];
    var dc = 0.0;
    if (p.t + 1u < p.steps) {
        dh += a2[idx];
        dc = a1[idx];
    }
    if (p.t == last_step(b)) {
        dc += r0[p.dy_off + p.steps * bh + idx];
    }
    let tc = tanh_safe(c);
    dc += dh * o * (1.0 - tc * tc);
    a0[row + 3u * h + j] = dh * tc * o * (1.0 - o);
    a0[row + j] = dc * gg * i * (1.0 - i);
    a0[row + h + j] = dc * cp * f * (1.0 - f);
    a0[row + 2u * h + j] = dc * i * (1.0 - gg * gg);
    a1[idx] = dc * f;
}

@compute @workgroup_size(WG)
fn lstm_seq_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let g = 4u * h;
    let bh = p.batch * h;
    let mine = j < h;
    let idx = b * h + j;
    var c = 0.0;
    if (mine) {
        h_sh[j] = s0[p.h0_off + idx];
        c = a1[idx];
    }
    workgroupBarrier();
    for (var t = 0u; t < p.steps; t++) {
        var hn = 0.0;
        if (mine) {
            let row = (t * p.batch + b) * g;
            var z = vec4<f32>(
                r0[row + j] + r2[p.bi_off + j] + r3[p.bh_off + j],
                r0[row + h + j] + r2[p.bi_off + h + j] + r3[p.bh_off + h + j],
                r0[row + 2u * h + j] + r2[p.bi_off + 2u * h + j] + r3[p.bh_off + 2u * h + j],
                r0[row + 3u * h + j] + r2[p.bi_off + 3u * h + j] + r3[p.bh_off + 3u * h + j]);
            // z += W_hh[(gate, j), :] · h_{t-1}
            let w0 = p.w_off + j * h;
            for (var k = 0u; k < h; k++) {
                let hk = h_sh[k];
                z += hk * vec4<f32>(r1[w0 + k], r1[w0 + h * h + k], r1[w0 + 2u * h * h + k],
                                    r1[w0 + 3u * h * h + k]);
            }
            let i = sigmoid(z.x);
            let f = sigmoid(z.y);
            let gg = tanh_safe(z.z);
            let o = sigmoid(z.w);
            a0[row + j] = i;
            a0[row + h + j] = f;
            a0[row + 2u * h + j] = gg;
            a0[row + 3u * h + j] = o;
            c = f * c + i * gg;
            a1[(t + 1u) * bh + idx] = c;
            hn = o * tanh_safe(c);
            a2[t * bh + idx] = hn;
        }
        workgroupBarrier();   // every invocation has read h_{t-1}
        if (mine) {
            h_sh[j] = hn;
        }
        workgroupBarrier();
    }
    if (mine) {
        a2[p.steps * bh + idx] = c;
    }
}

@compute @workgroup_size(WG)
fn lstm_seq_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let g = 4u * h;
    let bh = p.batch * h;
    let mine = j < h;
    let idx = b * h + j;
    var dc = 0.0;
    var dh_next = 0.0; // dz_{t+1}·W_hh at unit j
    for (var s = 0u; s < p.steps; s++) {
        let t = p.steps - 1u - s;
        if (mine) {
            let row = (t * p.batch + b) * g;
            let i = r1[row + j];
            let f = r1[row + h + j];
            let gg = r1[row + 2u * h + j];
            let o = r1[row + 3u * h + j];
            let c = r2[(t + 1u) * bh + idx];
            let cp = r2[t * bh + idx];
            // dy's c row joins the carried dc at the row's last step.
            var dh = r0[p.dy_off + t * bh + idx] + dh_next;
            if (t == last_step(b)) {
                dc += r0[p.dy_off + p.steps * bh + idx];
            }
            let tc = tanh_safe(c);
            dc += dh * o * (1.0 - tc * tc);
            let dzi = dc * gg * i * (1.0 - i);
            let dzf = dc * cp * f * (1.0 - f);
            let dzg = dc * i * (1.0 - gg * gg);
            let dzo = dh * tc * o * (1.0 - o);
            a0[row + j] = dzi;
            a0[row + h + j] = dzf;
            a0[row + 2u * h + j] = dzg;
            a0[row + 3u * h + j] = dzo;
            dz_sh[j] = dzi;
            dz_sh[h + j] = dzf;
            dz_sh[2u * h + j] = dzg;
            dz_sh[3u * h + j] = dzo;
            dc = dc * f;
        }
        workgroupBarrier();
        if (mine) {
            // (dz_t·W_hh)[j] = Σ_r dz_t[r] W_hh[r, j]
            var acc = 0.0;
            for (var r = 0u; r < g; r++) {
                acc += dz_sh[r] * r3[p.w_off + r * h + j];
            }
            dh_next = acc;
        }
        workgroupBarrier();   // dz_sh is rewritten by the next step
    }
    if (mine) {
        a1[idx] = dc;
        a2[idx] = dh_next;
    }
}
