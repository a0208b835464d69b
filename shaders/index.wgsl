// Indexing kernels. `gather` reads the f32 input at an index taken from a U32 tensor: it serves
// index_select, embedding and torch.gather. `scatter_add` is its backward, without atomics: each
// invocation owns one destination element and sums, in increasing index position, the gradient
// elements whose index points at it — the same bits on every run and every device, and the
// order of the CPU reference. Neither kernel reads out of bounds, whatever the indices hold.
// Bindings: output first, then the f32 input (source or gradient), then the indices.

override WG: u32 = 256u;

struct Params {
    n: u32,        // invocations: output elements (gather) or destination elements (scatter_add)
    len: u32,      // gather: source size along dim; scatter_add: index count along dim
    rows: u32,     // scatter_add: destination size along dim
    inner: u32,    // scatter_add: destination elements after dim (row = (i / inner) % rows)
    x_step: u32,   // stride along dim of the f32 input
    idx_step: u32, // scatter_add: stride along dim of the indices
    _pad0: u32,
    _pad1: u32,
    out: Strided,  // scatter_add: the destination view (gather writes densely)
    x: Strided,    // the f32 input over the iteration shape, dim's stride set to 0
    idx: Strided,  // the indices over the iteration shape (scatter_add: dim's stride set to 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;

// out[m] = x[m with m[dim] = idx[m]]; an index >= len gives 0 (the host rejects it first).
@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let k = indices[strided_offset(p.idx, i)];
    var v = 0.0;
    if (k < p.len) {
        v = x[strided_offset(p.x, i) + k * p.x_step];
    }
    out[i] = v;
}

// out[m] = sum over k < len, in order, of grad[m with m[dim] = k] where idx[.. k ..] == m[dim].
@compute @workgroup_size(WG)
fn scatter_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let row = (i / p.inner) % p.rows;
    let xb = strided_offset(p.x, i);
    let ib = strided_offset(p.idx, i);
    var acc = 0.0;
    for (var k = 0u; k < p.len; k++) {
        if (indices[ib + k * p.idx_step] == row) {
            acc += x[xb + k * p.x_step];
        }
    }
    out[strided_offset(p.out, i)] = acc;
}
