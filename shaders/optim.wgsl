// Fused optimizer updates, one dispatch per parameter, in place (no read-back).
// Formulas as published and as PyTorch implements them; see src/optim.rs.

override WG: u32 = 256u;

struct Params {
    n: u32,
    nesterov: u32,
    decoupled: u32,
    _pad: u32,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    dampening: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,   // 1 - beta1^t
    bias_correction2: f32,   // 1 - beta2^t
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// SGD uses bindings 1-3, Adam 1-4 (each entry point's bindings are a dense prefix).
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;

// SGD with momentum / Nesterov / L2 weight decay. state0 = momentum buffer.
@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    var g = grad[i] + p.weight_decay * param[i];
    if (p.momentum != 0.0) {
        let buf = p.momentum * state0[i] + (1.0 - p.dampening) * g;
        state0[i] = buf;
        g = select(buf, g + p.momentum * buf, p.nesterov != 0u);
    }
    param[i] = param[i] - p.lr * g;
}

// Adam (L2 weight decay) or AdamW (decoupled weight decay). state0 = m, state1 = v.
@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    var x = param[i];
    var g = grad[i];
    if (p.decoupled != 0u) {
        x = x * (1.0 - p.lr * p.weight_decay);
    } else {
        g = g + p.weight_decay * x;
    }
    let m = p.beta1 * state0[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * state1[i] + (1.0 - p.beta2) * g * g;
    state0[i] = m;
    state1[i] = v;
    let m_hat = m / p.bias_correction1;
    let v_hat = v / p.bias_correction2;
    param[i] = x - p.lr * m_hat / (sqrt(v_hat) + p.eps);
}
