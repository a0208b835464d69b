// Helpers prepended to every shader file (see src/gpu/kernel.rs).

// A strided layout of up to 8 dimensions: sizes and strides in elements, packed in vec4s
// because arrays in the uniform address space need a 16-byte stride.
struct Strided {
    dims: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
    rank: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
}

// Storage offset of the i-th element (row-major over `dims`) of a strided layout.
fn strided_offset(l: Strided, i: u32) -> u32 {
    if (l.rank == 1u) {
        return l.offset + i * l.strides[0].x;
    }
    var rem = i;
    var off = l.offset;
    for (var d = i32(l.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = l.dims[k / 4u][k % 4u];
        off += (rem % size) * l.strides[k / 4u][k % 4u];
        rem = rem / size;
    }
    return off;
}

// Linear workgroup id of a grid folded into 2-D to stay under 65,535 per dimension.
fn linear_workgroup(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}
