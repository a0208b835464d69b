// Layer normalisation over rows of `n` contiguous elements, forward and backward (see
// src/cpu/norm.rs for the formulas). Forward and the dx backward: one workgroup per row, threads
// stride over the row and meet in shared-memory trees (a deterministic order). The weight and
// bias gradients: each workgroup sums a block of RB rows for WG columns into one row of a
// partial buffer [blocks, 2n] (dw then db); the launcher sums the partials over blocks with the
// reduce kernel. No atomics anywhere, so every result is deterministic.
// Bindings (1..5), by entry point:
//   layer_norm_forward:          out y, x, w, b, stats (written)
//   layer_norm_backward_dx:      out dx, x, stats, dy, w
//   layer_norm_backward_params:  out partial, x, stats, dy
// WG must be a power of two.

override WG: u32 = 64u;
// Rows summed by one workgroup of layer_norm_backward_params.
override RB: u32 = 64u;

struct Params {
    rows: u32,
    n: u32,
    x_off: u32,
    dy_off: u32,
    has_w: u32,
    has_b: u32,
    eps: f32,
    col_blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> aux: array<f32>;

var<workgroup> red: array<f32, WG>;

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

// a = w, c = b, aux = stats [rows, 2] (mean, rstd).
@compute @workgroup_size(WG)
fn layer_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return; // whole workgroups only: the barriers stay in uniform control flow
    }
    let base = p.x_off + row * p.n;
    let inv_n = 1.0 / f32(p.n);
    var s = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        s += x[base + k];
    }
    let mean = workgroup_sum(s, lid) * inv_n;
    var q = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        let d = x[base + k] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(q, lid) * inv_n + p.eps);
    for (var k = lid; k < p.n; k += WG) {
        var v = (x[base + k] - mean) * rstd;
        if (p.has_w != 0u) {
            v *= a[k];
        }
        if (p.has_b != 0u) {
            v += c[k];
        }
        out[row * p.n + k] = v;
    }
    if (lid == 0u) {
        aux[2u * row] = mean;
        aux[2u * row + 1u] = rstd;
    }
}

// a = stats, c = dy, aux = w.
@compute @workgroup_size(WG)
fn layer_norm_backward_dx(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let xb = p.x_off + row * p.n;
    let gb = p.dy_off + row * p.n;
    let mean = a[2u * row];
    let rstd = a[2u * row + 1u];
    var sg = 0.0;
    var sgh = 0.0;
    for (var k = lid; k < p.n; k += WG) {
        var g = c[gb + k];
        if (p.has_w != 0u) {
            g *= aux[k];
        }
        sg += g;
        sgh += g * (x[xb + k] - mean) * rstd;
    }
    let inv_n = 1.0 / f32(p.n);
    let mg = workgroup_sum(sg, lid) * inv_n;
    let mgh = workgroup_sum(sgh, lid) * inv_n;
    for (var k = lid; k < p.n; k += WG) {
        var g = c[gb + k];
        if (p.has_w != 0u) {
            g *= aux[k];
        }
        let h = (x[xb + k] - mean) * rstd;
        out[row * p.n + k] = rstd * (g - mg - h * mgh);
    }
}

// a = stats, c = dy; out = partial [blocks, 2n]. Workgroup id = block · col_blocks + column block.
@compute @workgroup_size(WG)
fn layer_norm_backward_params(@builtin(workgroup_id) wg: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let id = linear_workgroup(wg, nwg);
    let blk = id / p.col_blocks;
    let col = (id % p.col_blocks) * WG + lid;
    let r0 = blk * RB;
    if (col >= p.n || r0 >= p.rows) {
        return; // no barriers in this entry point
    }
    let r1 = min(r0 + RB, p.rows);
    var dw = 0.0;
    var db = 0.0;
    for (var r = r0; r < r1; r++) {
        let g = c[p.dy_off + r * p.n + col];
        let h = (x[p.x_off + r * p.n + col] - a[2u * r]) * a[2u * r + 1u];
        dw += g * h;
        db += g;
    }
    out[blk * 2u * p.n + col] = dw;
    out[blk * 2u * p.n + p.n + col] = db;
}
