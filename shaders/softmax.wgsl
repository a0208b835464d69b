// Fused softmax and log-softmax over the last axis, forward and backward: one workgroup per
// row of `n` contiguous elements; threads stride over the row and meet in shared-memory trees
// (a max, then a sum of exponentials). Numerically stable: exponents are of x - max(x).
// Bindings: output, then the input (forward: x; backward: the forward output y, then dy).
// WG must be a power of two.

override WG: u32 = 256u;

struct Params {
    rows: u32,
    n: u32,
    x_off: u32,
    dy_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;

var<workgroup> red: array<f32, WG>;

// The maximum of `v` over the workgroup (every thread gets it).
fn workgroup_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The sum of `v` over the workgroup, in tree order (every thread gets it).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// (max, sum of exp(x - max)) of the row starting at x[base].
fn row_stats(base: u32, lid: u32) -> vec2<f32> {
    var m = f32_neg_inf();
    for (var k = lid; k < p.n; k += WG) {
        m = max(m, x[base + k]);
    }
    m = workgroup_max(m, lid);
    var s = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        s += exp(x[base + k] - m);
    }
    return vec2<f32>(m, workgroup_sum(s, lid));
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return; // whole workgroups only: the barriers stay in uniform control flow
    }
    let base = p.x_off + row * p.n;
    let st = row_stats(base, lid);
    let inv = 1.0 / st.y;
    for (var k = lid; k < p.n; k += WG) {
        out[row * p.n + k] = exp(x[base + k] - st.x) * inv;
    }
}

@compute @workgroup_size(WG)
fn log_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = p.x_off + row * p.n;
    let st = row_stats(base, lid);
    // (x - max) first: exact for nearby values, where x - (max + log s) would round at |max|.
    let log_s = log(st.y);
    for (var k = lid; k < p.n; k += WG) {
        out[row * p.n + k] = (x[base + k] - st.x) - log_s;
    }
}

// dx = y · (dy - Σ dy·y), with y = softmax(x) read from `x`.
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let yb = p.x_off + row * p.n;
    let gb = p.dy_off + row * p.n;
    var s = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        s += dy[gb + k] * x[yb + k];
    }
    s = workgroup_sum(s, lid);
    for (var k = lid; k < p.n; k += WG) {
        out[row * p.n + k] = x[yb + k] * (dy[gb + k] - s);
    }
}

// dx = dy - exp(y) · Σ dy, with y = log_softmax(x) read from `x`.
@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let yb = p.x_off + row * p.n;
    let gb = p.dy_off + row * p.n;
    var s = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        s += dy[gb + k];
    }
    s = workgroup_sum(s, lid);
    for (var k = lid; k < p.n; k += WG) {
        out[row * p.n + k] = dy[gb + k] - exp(x[yb + k]) * s;
    }
}
