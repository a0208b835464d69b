// im2col and its adjoint col2im for 2-D convolution (NCHW input, OIHW weights).
// The column matrix is [G, R, L] with R = C/G·KH·KW rows and L = N·OH·OW columns, so
// conv = W[G, O/G, R] @ cols[G, R, L] runs on the tiled matmul kernel.
// col2im is a gather (each input element sums the entries that read it): deterministic.
// Bindings: 1 = output, 2 = input.

override WG: u32 = 256u;

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    kh: u32, kw: u32, oh: u32, ow: u32,
    sh: u32, sw: u32, ph: u32, pw: u32,
    dh: u32, dw: u32, groups: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
// im2col_h's views of the same bindings: packed F16 words (see half.wgsl).
@group(0) @binding(1) var<storage, read_write> out_w: array<u32>;
@group(0) @binding(2) var<storage, read> src_w: array<u32>;

// Elements of the column matrix.
fn cols_len() -> u32 {
    return p.groups * (p.c / p.groups) * p.kh * p.kw * p.n * p.oh * p.ow;
}

// The input element column-matrix element i copies, or 0xffffffff where it is padding.
fn im2col_source(i: u32) -> u32 {
    let plane = p.oh * p.ow;
    let l = p.n * plane;
    let row = i / l;
    let col = i % l;
    let kx = row % p.kw;
    let ky = (row / p.kw) % p.kh;
    let ch = row / (p.kw * p.kh);          // gi·cg + c: the input channel
    let n = col / plane;
    let oy = (col % plane) / p.ow;
    let ox = col % p.ow;
    let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
    let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        return ((n * p.c + ch) * p.h + u32(iy)) * p.w + u32(ix);
    }
    return 0xffffffffu;
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= cols_len()) {
        return;
    }
    let s = im2col_source(i);
    var v = 0.0;
    if (s != 0xffffffffu) {
        v = src[s];
    }
    out[i] = v;
}

// The F16 half (bits) of column element i.
fn im2col_half(i: u32) -> u32 {
    let s = im2col_source(i);
    if (s == 0xffffffffu) {
        return 0u;
    }
    return (src_w[s >> 1u] >> ((s & 1u) * 16u)) & 0xffffu;
}

// im2col of F16 storage into packed F16 columns: a word (two elements) per invocation, the
// halves copied bit for bit.
@compute @workgroup_size(WG)
fn im2col_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wg, nwg) * WG + lid;
    let i = 2u * w;
    let len = cols_len();
    if (i >= len) {
        return;
    }
    var word = im2col_half(i);
    if (i + 1u < len) {
        word |= im2col_half(i + 1u) << 16u;
    }
    out_w[w] = word;
}

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    if (i >= p.n * p.c * p.h * p.w) {
        return;
    }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ch = (i / (p.w * p.h)) % p.c;
    let n = i / (p.w * p.h * p.c);
    let plane = p.oh * p.ow;
    let l = p.n * plane;
    var g = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = i32(iy + p.ph) - i32(ky * p.dh);     // = oy·sh
        if (ty < 0 || u32(ty) % p.sh != 0u || u32(ty) / p.sh >= p.oh) {
            continue;
        }
        let oy = u32(ty) / p.sh;
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pw) - i32(kx * p.dw);
            if (tx < 0 || u32(tx) % p.sw != 0u || u32(tx) / p.sw >= p.ow) {
                continue;
            }
            let ox = u32(tx) / p.sw;
            let row = (ch * p.kh + ky) * p.kw + kx;
            g += src[row * l + n * plane + oy * p.ow + ox];
        }
    }
    out[i] = g;
}
