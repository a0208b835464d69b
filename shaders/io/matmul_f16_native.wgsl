// F16 operands and output as `array<f16>` (adapters with SHADER_F16); f32 accumulation.
enable f16;

@group(0) @binding(1) var<storage, read_write> out: array<f16>;
@group(0) @binding(2) var<storage, read> a: array<f16>;
@group(0) @binding(3) var<storage, read> b: array<f16>;

fn load_a(i: u32) -> f32 {
    return f32(a[i]);
}

fn load_b(i: u32) -> f32 {
    return f32(b[i]);
}

fn store_out(i: u32, v: f32) {
    out[i] = f16(v);
}
