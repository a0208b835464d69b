// Fused LSTM cell of one time step, forward and backward (src/gpu/lstm.rs launches them; the
// CPU reference is src/cpu/lstm.rs, with the same names). One invocation per (batch row b,
// hidden unit j); gates in PyTorch's order (i, f, g, o).
// Shapes (T steps, B batch, H hidden, G = 4H): zx [T, B, G] = X·W_ihᵀ; hw [B, G] = h_{t-1}·W_hhᵀ;
// gates [T, B, G] activations; cs [T + 1, B, H] = c_0..c_T; hs [T + 1, B, H] = h_1..h_T, c_T.
// Both entry points use bindings 1.. as a dense prefix, so the buffers have role names below:
//   lstm_forward:  a0 = gates, a1 = cs, a2 = hs, r0 = zx, r1 = hw, r2 = b_ih, r3 = b_hh
//   lstm_backward: a0 = dz [T, B, G], a1 = dc [B, H] (carried, in place),
//                  a2 = dh [B, H] (dz_{t+1}·W_hh, read only), r0 = dy [T + 1, B, H],
//                  r1 = gates, r2 = cs

override WG: u32 = 64u;

struct Params {
    batch: u32,
    hidden: u32,
    t: u32,      // the step
    steps: u32,  // T
    dy_off: u32,
    bi_off: u32,
    bh_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a0: array<f32>;
@group(0) @binding(2) var<storage, read_write> a1: array<f32>;
@group(0) @binding(3) var<storage, read_write> a2: array<f32>;
@group(0) @binding(4) var<storage, read> r0: array<f32>;
@group(0) @binding(5) var<storage, read> r1: array<f32>;
@group(0) @binding(6) var<storage, read> r2: array<f32>;
@group(0) @binding(7) var<storage, read> r3: array<f32>;

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
    // The last step starts the carries: dh from dy alone, dc from dy's c_T row.
    var dh = r0[p.dy_off + p.t * bh + idx];
    var dc = 0.0;
    if (p.t + 1u == p.steps) {
        dc = r0[p.dy_off + p.steps * bh + idx];
    } else {
        dh += a2[idx];
        dc = a1[idx];
    }
    let tc = tanh_safe(c);
    dc += dh * o * (1.0 - tc * tc);
    a0[row + 3u * h + j] = dh * tc * o * (1.0 - o);
    a0[row + j] = dc * gg * i * (1.0 - i);
    a0[row + h + j] = dc * cp * f * (1.0 - f);
    a0[row + 2u * h + j] = dc * i * (1.0 - gg * gg);
    a1[idx] = dc * f;
}
