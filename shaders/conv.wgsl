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

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wg, nwg) * WG + lid;
    let plane = p.oh * p.ow;
    let l = p.n * plane;
    let cg = p.c / p.groups;
    let rows = p.groups * cg * p.kh * p.kw;
    if (i >= rows * l) {
        return;
    }
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
    var v = 0.0;
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        v = src[((n * p.c + ch) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    out[i] = v;
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
