// 2-D max and average pooling over contiguous NCHW planes, forward and backward.
// Backward is a gather: one invocation per input element sums the output windows that cover it
// (deterministic, no atomics). Bindings: 1 = output (or dx), 2 = input (or dy), 3 = arg-max
// indices (flat h·W + w within the plane; written by max forward, read by max backward).

override WG: u32 = 256u;

struct Params {
    planes: u32,        // N·C
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg: array<u32>;
// max_forward_h's views of bindings 1 and 2: packed F16 words (see half.wgsl).
@group(0) @binding(1) var<storage, read_write> out_w: array<u32>;
@group(0) @binding(2) var<storage, read> src_w: array<u32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wg, nwg) * WG + lid;
}

// Window rows [r0, r1) and cols [c0, c1) of output (oy, ox) clipped to the input, and the
// divisor PyTorch uses with count_include_pad (the window clipped to the padded input).
struct Window { r0: i32, r1: i32, c0: i32, c1: i32, divisor: f32 }

fn window(oy: u32, ox: u32) -> Window {
    let ys = i32(oy * p.sh) - i32(p.ph);
    let xs = i32(ox * p.sw) - i32(p.pw);
    let ye = min(ys + i32(p.kh), i32(p.h + p.ph));
    let xe = min(xs + i32(p.kw), i32(p.w + p.pw));
    let divisor = f32((ye - ys) * (xe - xs));
    return Window(max(ys, 0), min(ye, i32(p.h)), max(xs, 0), min(xe, i32(p.w)), divisor);
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if (i >= p.planes * p.oh * p.ow) {
        return;
    }
    let plane = i / (p.oh * p.ow);
    let oy = (i / p.ow) % p.oh;
    let ox = i % p.ow;
    let win = window(oy, ox);
    let base = plane * p.h * p.w;
    var best = f32_neg_inf();
    var best_at = u32(win.r0) * p.w + u32(win.c0);
    for (var y = win.r0; y < win.r1; y++) {
        for (var x = win.c0; x < win.c1; x++) {
            let at = u32(y) * p.w + u32(x);
            let v = src[base + at];
            if (v > best) {
                best = v;
                best_at = at;
            }
        }
    }
    out[i] = best;
    arg[i] = best_at;
}

// The maximum of output element i's window over F16 input: (its f16 bits, its arg-max).
fn max_window_h(i: u32) -> vec2<u32> {
    let plane = i / (p.oh * p.ow);
    let win = window((i / p.ow) % p.oh, i % p.ow);
    let base = plane * p.h * p.w;
    var best = f32_neg_inf();
    var best_bits = 0xfc00u;              // -inf in f16
    var best_at = u32(win.r0) * p.w + u32(win.c0);
    for (var y = win.r0; y < win.r1; y++) {
        for (var x = win.c0; x < win.c1; x++) {
            let at = u32(y) * p.w + u32(x);
            let o = base + at;
            let bits = (src_w[o >> 1u] >> ((o & 1u) * 16u)) & 0xffffu;
            let v = f16_to_f32(bits);
            if (v > best) {
                best = v;
                best_bits = bits;
                best_at = at;
            }
        }
    }
    return vec2<u32>(best_bits, best_at);
}

// max_forward over F16 input into packed F16 output: a word (two outputs) per invocation, the
// maxima copied bit for bit.
@compute @workgroup_size(WG)
fn max_forward_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let w = index(wg, nwg, lid);
    let i = 2u * w;
    let n = p.planes * p.oh * p.ow;
    if (i >= n) {
        return;
    }
    let a = max_window_h(i);
    arg[i] = a.y;
    var word = a.x;
    if (i + 1u < n) {
        let b = max_window_h(i + 1u);
        arg[i + 1u] = b.y;
        word |= b.x << 16u;
    }
    out_w[w] = word;
}

@compute @workgroup_size(WG)
fn avg_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if (i >= p.planes * p.oh * p.ow) {
        return;
    }
    let plane = i / (p.oh * p.ow);
    let win = window((i / p.ow) % p.oh, i % p.ow);
    let base = plane * p.h * p.w;
    var sum = 0.0;
    for (var y = win.r0; y < win.r1; y++) {
        for (var x = win.c0; x < win.c1; x++) {
            sum += src[base + u32(y) * p.w + u32(x)];
        }
    }
    out[i] = sum / win.divisor;
}

// Output rows (or cols) whose windows cover input row y: [lo, hi).
fn covering(y: u32, k: u32, s: u32, pad: u32, n_out: u32) -> vec2<u32> {
    let top = i32(y + pad) - i32(k) + 1;               // first window start covering y
    let lo = select(0u, u32((top + i32(s) - 1) / i32(s)), top > 0);
    let hi = min((y + pad) / s + 1u, n_out);
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(WG)
fn max_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if (i >= p.planes * p.h * p.w) {
        return;
    }
    let plane = i / (p.h * p.w);
    let at = i % (p.h * p.w);
    let rows = covering(at / p.w, p.kh, p.sh, p.ph, p.oh);
    let cols = covering(at % p.w, p.kw, p.sw, p.pw, p.ow);
    var g = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            let o = (plane * p.oh + oy) * p.ow + ox;
            if (arg[o] == at) {
                g += src[o];
            }
        }
    }
    out[i] = g;
}

@compute @workgroup_size(WG)
fn avg_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if (i >= p.planes * p.h * p.w) {
        return;
    }
    let plane = i / (p.h * p.w);
    let at = i % (p.h * p.w);
    let rows = covering(at / p.w, p.kh, p.sh, p.ph, p.oh);
    let cols = covering(at % p.w, p.kw, p.sw, p.pw, p.ow);
    var g = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            g += src[(plane * p.oh + oy) * p.ow + ox] / window(oy, ox).divisor;
        }
    }
    out[i] = g;
}
