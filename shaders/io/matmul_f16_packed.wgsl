// F16 operands as packed words (every adapter); f32 output, cast to F16 by the launcher.
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;

fn load_a(i: u32) -> f32 {
    return load_f16(a[i >> 1u], i);
}

fn load_b(i: u32) -> f32 {
    return load_f16(b[i >> 1u], i);
}

fn store_out(i: u32, v: f32) {
    out[i] = v;
}
