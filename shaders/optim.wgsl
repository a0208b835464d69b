// Fused optimizer updates in place (no read-back): one dispatch per parameter, or one for all
// of a model's parameters packed side by side in flat buffers (src/gpu/flat.rs; the gaps
// between them hold zeros in `grad` and the states, so updating them changes nothing used).
// The `_clipped` steps also scale the gradients to a global norm of at most `max_norm`
// (torch.nn.utils.clip_grad_norm_), from per-chunk sums of squares made by `sum_squares`.
// Formulas as published and as PyTorch implements them; see src/optim.rs.

override WG: u32 = 256u;

struct Params {
    n: u32,
    nesterov: u32,
    decoupled: u32,
    chunks: u32,             // partial sums of squares (the _clipped steps)
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    dampening: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,   // 1 - beta1^t
    bias_correction2: f32,   // 1 - beta2^t
    max_norm: f32,           // the _clipped steps
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// SGD uses bindings 1-3, Adam 1-4; their _clipped forms add 5-6.
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
@group(0) @binding(5) var<storage, read> partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> norm_out: array<f32>;
// sum_squares: bindings 1-2.
@group(0) @binding(1) var<storage, read_write> sq_out: array<f32>;

// Elements each invocation of sum_squares adds up.
const SQ_ITEMS: u32 = 16u;

var<workgroup> red: array<f32, WG>;

// The sum of `v` over the workgroup, in every invocation (WG is a power of two).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            red[lid] += red[lid + w];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// sq_out[w] = the sum of grad[i]^2 over chunk w (WG·SQ_ITEMS elements) of the first p.n.
@compute @workgroup_size(WG)
fn sum_squares(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg);
    let start = w * WG * SQ_ITEMS;
    var s = 0.0;
    for (var k = 0u; k < SQ_ITEMS; k++) {
        let i = start + k * WG + lid;
        if (i < p.n) {
            s += grad[i] * grad[i];
        }
    }
    let total = workgroup_sum(s, lid);
    if (lid == 0u && w < p.chunks) {
        sq_out[w] = total;
    }
}

// The factor that clips the global gradient norm to p.max_norm: min(1, max / (norm + 1e-6)),
// from the p.chunks partial sums of squares. The first workgroup stores the norm.
fn clip_scale(w: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var k = lid; k < p.chunks; k += WG) {
        s += partials[k];
    }
    let norm = sqrt(workgroup_sum(s, lid));
    if (w == 0u && lid == 0u) {
        norm_out[0] = norm;
    }
    return min(1.0, p.max_norm / (norm + 1e-6));
}

// SGD with momentum / Nesterov / L2 weight decay on element i with gradient g.
// state0 = momentum buffer.
fn sgd_update(i: u32, grad_i: f32) {
    var g = grad_i + p.weight_decay * param[i];
    if (p.momentum != 0.0) {
        let buf = p.momentum * state0[i] + (1.0 - p.dampening) * g;
        state0[i] = buf;
        g = select(buf, g + p.momentum * buf, p.nesterov != 0u);
    }
    param[i] = param[i] - p.lr * g;
}

// Adam (L2 weight decay) or AdamW (decoupled weight decay) on element i with gradient g.
// state0 = m, state1 = v.
fn adam_update(i: u32, grad_i: f32) {
    var x = param[i];
    var g = grad_i;
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

@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i < p.n) {
        sgd_update(i, grad[i]);
    }
}

@compute @workgroup_size(WG)
fn sgd_step_clipped(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg);
    let scale = clip_scale(w, lid);
    let i = w * WG + lid;
    if (i < p.n) {
        sgd_update(i, grad[i] * scale);
    }
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i < p.n) {
        adam_update(i, grad[i]);
    }
}

@compute @workgroup_size(WG)
fn adam_step_clipped(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg);
    let scale = clip_scale(w, lid);
    let i = w * WG + lid;
    if (i < p.n) {
        adam_update(i, grad[i] * scale);
    }
}
