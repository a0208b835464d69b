// Indexing kernels. `gather` reads the f32 input at an index taken from a U32 tensor: it serves
// index_select, embedding and torch.gather. `scatter_add` is its backward, without atomics: each
// invocation owns one destination element and sums, in increasing index position, the gradient
// elements whose index points at it — the same bits on every run and every device, and the
// order of the CPU reference. No kernel reads out of bounds, whatever the indices hold.
// Bindings: output first, then the f32 input (source or gradient), then the indices.
//
// Index validation without a sync: `gather` and `one_hot` record the first out-of-range index
// they meet in the device error words `[code, index, bound, 0]` (the first writer wins, by an
// atomic compare-exchange on `code`); the host reads them behind the data of the next
// read-back and turns them into an error naming the launch's op (see gpu/context.rs).

override WG: u32 = 256u;

struct Params {
    n: u32,        // invocations: output elements (gather) or destination elements (scatter_add)
    len: u32,      // gather: source size along dim; scatter_add: index count along dim
    rows: u32,     // scatter_add: destination size along dim
    inner: u32,    // scatter_add: destination elements after dim (row = (i / inner) % rows)
    x_step: u32,   // stride along dim of the f32 input
    idx_step: u32, // scatter_add: stride along dim of the indices
    code: u32,     // gather, one_hot: this launch's error code (never 0)
    _pad1: u32,
    out: Strided,  // scatter_add: the destination view (gather writes densely)
    x: Strided,    // the f32 input over the iteration shape, dim's stride set to 0
    idx: Strided,  // the indices over the iteration shape (scatter_add: dim's stride set to 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>, 4>;
// gather_h reads its input as packed F16 words (see half.wgsl).
@group(0) @binding(2) var<storage, read> x_w: array<u32>;
// one_hot's bindings: the output, the labels, the error words.
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> err_oh: array<atomic<u32>, 4>;

// The input offset output element i of `gather` reads, or 0xffffffff (after recording the
// index in `err`) when its index is out of range.
fn gather_source(i: u32) -> u32 {
    let k = indices[strided_offset(p.idx, i)];
    if (k < p.len) {
        return strided_offset(p.x, i) + k * p.x_step;
    }
    record_bad_index(k);
    return 0xffffffffu;
}

// Records index `k` in `err` unless an earlier bad index is there.
fn record_bad_index(k: u32) {
    loop {
        let r = atomicCompareExchangeWeak(&err[0], 0u, p.code);
        if (r.exchanged) {
            atomicStore(&err[1], k);
            atomicStore(&err[2], p.len);
            break;
        }
        if (r.old_value != 0u) {
            break;
        }
    }
}

// out[m] = x[m with m[dim] = idx[m]]; an index >= len gives 0 and is recorded in `err`.
@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let o = gather_source(i);
    var v = 0.0;
    if (o != 0xffffffffu) {
        v = x[o];
    }
    out[i] = v;
}

// `gather` from an F16 input (`x_w`), f32 out: only the rows picked are converted.
@compute @workgroup_size(WG)
fn gather_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let o = gather_source(i);
    var v = 0.0;
    if (o != 0xffffffffu) {
        v = load_f16(x_w[o >> 1u], o);
    }
    out[i] = v;
}

// out[r, c] = 1.0 where labels[r] == c, else 0.0, for c < len (the class count); a label >= len
// gives a zero row and is recorded in the error words. `idx` lays out the labels.
@compute @workgroup_size(WG)
fn one_hot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let c = i % p.len;
    let k = labels[strided_offset(p.idx, i / p.len)];
    if (c == 0u && k >= p.len) {
        loop {
            let r = atomicCompareExchangeWeak(&err_oh[0], 0u, p.code);
            if (r.exchanged) {
                atomicStore(&err_oh[1], k);
                atomicStore(&err_oh[2], p.len);
                break;
            }
            if (r.old_value != 0u) {
                break;
            }
        }
    }
    out[i] = select(0.0, 1.0, k == c);
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
