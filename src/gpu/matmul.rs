//! Launcher for `shaders/matmul.wgsl`: tile configurations, the choice per shape, and the
//! operand checks (row- or column-major matrices, at most `MAX_BATCH_DIMS` batch dims).

use super::buffer::GpuBuffer;
use super::kernel::{Launch, Shader, MATMUL};
use crate::cpu::matmul::Mkn;
use crate::shape::{collapse_joint, Layout};
use crate::{Error, Result};

/// The operands' element type, and so which build of `shaders/matmul.wgsl` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Io {
    /// F32 operands and output.
    F32,
    /// F16 operands as packed words (every adapter); f32 output for the caller to cast.
    F16Packed,
    /// F16 operands and output as `array<f16>` (`SHADER_F16`).
    F16Native,
}

/// `shaders/matmul.wgsl` with its `// io:begin` … `// io:end` block replaced by `io` (a file
/// of `shaders/io/`), built once per process; `io`'s `enable` directives open the source.
fn with_io(name: &'static str, io: &str) -> Shader {
    let base = MATMUL.source;
    let (begin, end) = (base.find("// io:begin"), base.find("// io:end"));
    let (Some(begin), Some(end)) = (begin, end) else {
        panic!("wgml bug: shaders/matmul.wgsl lost its io markers");
    };
    // WGSL directives (`enable f16;`) must open the module: lift them from the block.
    let (enables, decls): (Vec<&str>, Vec<&str>) = io
        .lines()
        .partition(|l| l.trim_start().starts_with("enable "));
    let source = format!(
        "{}\n{}{}{}",
        enables.join("\n"),
        &base[..begin],
        decls.join("\n"),
        &base[end + "// io:end".len()..]
    );
    Shader {
        name,
        source: Box::leak(source.into_boxed_str()),
    }
}

static MATMUL_F16_PACKED: std::sync::LazyLock<Shader> = std::sync::LazyLock::new(|| {
    with_io(
        "matmul_f16_packed",
        include_str!("../../shaders/io/matmul_f16_packed.wgsl"),
    )
});
static MATMUL_F16_NATIVE: std::sync::LazyLock<Shader> = std::sync::LazyLock::new(|| {
    with_io(
        "matmul_f16_native",
        include_str!("../../shaders/io/matmul_f16_native.wgsl"),
    )
});

impl Io {
    pub(crate) fn shader(self) -> &'static Shader {
        match self {
            Io::F32 => &MATMUL,
            Io::F16Packed => &MATMUL_F16_PACKED,
            Io::F16Native => &MATMUL_F16_NATIVE,
        }
    }
}

/// The kernel an F16 product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum F16Kernel {
    /// Cooperative matrices (tensor cores), f32 output for the caller to cast.
    Coop(super::coop::CoopConfig),
    /// The FMA kernel on `array<f16>`.
    Native,
    /// The FMA kernel on packed words, f32 output for the caller to cast.
    Packed,
}

/// The kernel for an F16 product of shape `s`: cooperative matrices where the device has them
/// and the shape pays (see `coop::use_coop`), unless a tile configuration is forced (tests of
/// the FMA configurations) or the packed path is (`with_f16_path`); else the path's FMA kernel.
pub(crate) fn pick_f16(
    coop: Option<super::coop::CoopConfig>,
    path: super::half::F16Path,
    s: Mkn,
    forced_config: bool,
) -> F16Kernel {
    use super::half::F16Path;
    match (coop, path) {
        (Some(cfg), F16Path::Native)
            if !forced_config && super::coop::use_coop(Some(cfg), s.m, s.n, s.k) =>
        {
            F16Kernel::Coop(cfg)
        }
        (_, F16Path::Native) => F16Kernel::Native,
        (_, F16Path::Packed) => F16Kernel::Packed,
    }
}

/// Batch dims (after merging) the kernel indexes; more are materialised by the caller.
pub(crate) const MAX_BATCH_DIMS: usize = 4;

/// Outputs per invocation along M and N: `TM` and `TN` in the shader (const there, because
/// function-scope arrays cannot be sized by an override).
const TM: u32 = 4;
const TN: u32 = 4;

/// One tile configuration: a workgroup of `wg_x × wg_y` invocations computes a block of
/// `(wg_y·TM) × (wg_x·TN)` outputs, stepping through K `tk` at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) name: &'static str,
    wg_x: u32,
    wg_y: u32,
    tk: u32,
}

impl Config {
    fn bm(&self) -> usize {
        (self.wg_y * TM) as usize
    }
    fn bn(&self) -> usize {
        (self.wg_x * TN) as usize
    }
}

/// Every configuration `pick` may choose; tests run each on shapes that are not multiples of
/// its tile.
pub(crate) const CONFIGS: [Config; 4] = [
    // 64×64 tiles of 256 invocations: the most reuse per load, for large products.
    Config {
        name: "large64x64",
        wg_x: 16,
        wg_y: 16,
        tk: 16,
    },
    // 32×32 tiles: four times the workgroups of `large` for mid-sized products.
    Config {
        name: "small32x32",
        wg_x: 8,
        wg_y: 8,
        tk: 16,
    },
    // 8×128 tiles: few rows (vector @ matrix, small batches of tokens).
    Config {
        name: "wide8x128",
        wg_x: 32,
        wg_y: 2,
        tk: 16,
    },
    // 128×8 tiles: few columns (matrix @ vector).
    Config {
        name: "tall128x8",
        wg_x: 2,
        wg_y: 32,
        tk: 16,
    },
];
const LARGE: usize = 0;
const SMALL: usize = 1;
const WIDE: usize = 2;
const TALL: usize = 3;

/// The configuration for a shape: skinny products get a skinny tile so few invocations idle;
/// large ones the 64×64 tile once there are enough tiles to fill a GPU.
pub(crate) fn pick(s: Mkn, batch: usize) -> usize {
    if s.m <= 8 && s.n > 32 {
        WIDE
    } else if s.n <= 8 && s.m > 32 {
        TALL
    } else if s.m.div_ceil(64) * s.n.div_ceil(64) * batch >= 64 {
        LARGE
    } else {
        SMALL
    }
}

/// Whether a matrix `[rows, cols]` (the last two dims of `l`) is stored column-major, and its
/// leading stride; `None` when neither dim has unit stride (the caller copies it). A dim of
/// size 1 accepts any stride.
pub(crate) fn matrix_major(l: &Layout) -> Option<(bool, usize)> {
    let r = l.shape.rank();
    let (rows, cols) = (l.shape.dims()[r - 2], l.shape.dims()[r - 1]);
    let (rs, cs) = (l.strides[r - 2], l.strides[r - 1]);
    if cs == 1 || cols == 1 {
        Some((false, if rows == 1 { 0 } else { rs }))
    } else if rs == 1 || rows == 1 {
        Some((true, cs))
    } else {
        None
    }
}

/// Batch dims, and each operand's batch strides, after merging the dims that merge in both
/// operands and the (contiguous) output.
pub(crate) fn merged_batch(la: &Layout, lb: &Layout, mn: usize) -> (Vec<usize>, Vec<Vec<usize>>) {
    let nb = la.shape.rank() - 2;
    let batch = &la.shape.dims()[..nb];
    let out: Vec<usize> = crate::Shape::new(batch.to_vec())
        .contiguous_strides()
        .iter()
        .map(|s| s * mn)
        .collect();
    collapse_joint(batch, &[&la.strides[..nb], &lb.strides[..nb], &out])
}

/// Whether the kernel can index the batch dims of these operands without a copy.
pub(crate) fn batch_fits(la: &Layout, lb: &Layout) -> bool {
    merged_batch(la, lb, 1).0.len() <= MAX_BATCH_DIMS
}

/// `Params` in `shaders/matmul.wgsl` (and `shaders/matmul_coop.wgsl`, which shares it).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    /// Output rows.
    pub(crate) m: u32,
    /// Output columns.
    pub(crate) n: u32,
    /// The contracted dim.
    pub(crate) k: u32,
    /// Product of the batch dims.
    pub(crate) batch: u32,
    /// Leading stride of `a` (see [`matrix_major`]).
    pub(crate) lda: u32,
    /// Leading stride of `b`.
    pub(crate) ldb: u32,
    /// Element offset of `a`'s first matrix.
    pub(crate) a_off: u32,
    /// Element offset of `b`'s first matrix.
    pub(crate) b_off: u32,
    /// Output blocks along M per batch.
    pub(crate) tiles_m: u32,
    /// Output blocks along N per batch.
    pub(crate) tiles_n: u32,
    /// Keeps `bdims` at its 16-byte offset, as in the shader.
    pub(crate) _pad: [u32; 2],
    /// Merged batch dims, outermost first, padded in front with 1s.
    pub(crate) bdims: [u32; 4],
    /// `a`'s strides along `bdims` (0 where broadcast).
    pub(crate) a_bstrides: [u32; 4],
    /// `b`'s strides along `bdims`.
    pub(crate) b_bstrides: [u32; 4],
}

/// `out[b] = a[b] @ b[b]` for every batch. `a` is `[..B, M, K]`, `b` is `[..B, K, N]` (batch
/// dims already broadcast, stride 0 where broadcast), each matrix row- or column-major (see
/// [`matrix_major`]) and at most [`MAX_BATCH_DIMS`] batch dims after merging (see
/// [`batch_fits`]); `out` is contiguous `[..B, M, N]`. `config` forces a configuration; `io`
/// says how the elements are stored.
pub(crate) fn matmul(
    a: (&GpuBuffer, &Layout),
    b: (&GpuBuffer, &Layout),
    out: &GpuBuffer,
    s: Mkn,
    config: Option<usize>,
    io: Io,
) -> Result<()> {
    const OP: &str = "matmul";
    let c = CONFIGS[config.unwrap_or_else(|| pick(s, batch_of(a.1)))];
    let Some(prep) = prepare(OP, a.1, b.1, s, (c.bm(), c.bn()))? else {
        return Ok(());
    };
    let (trans_a, trans_b, p) = (prep.trans_a, prep.trans_b, prep.params);
    let ctx = out.ctx();
    ctx.launch(Launch {
        shader: io.shader(),
        entry: "matmul",
        constants: &constants(&c, trans_a, trans_b),
        params: bytemuck::bytes_of(&p),
        buffers: &[out.binding(), a.0.binding(), b.0.binding()],
        grid: ctx.grid_1d(prep.workgroups, OP)?,
    })
}

/// The override constants of `matmul.wgsl` for configuration `c` and the operands' majors.
pub(crate) fn constants(c: &Config, trans_a: bool, trans_b: bool) -> [(&'static str, f64); 5] {
    [
        ("WG_X", c.wg_x as f64),
        ("WG_Y", c.wg_y as f64),
        ("TK", c.tk as f64),
        ("TRANS_A", trans_a as u32 as f64),
        ("TRANS_B", trans_b as u32 as f64),
    ]
}

/// Batches of a `[..B, M, K]` operand.
fn batch_of(l: &Layout) -> usize {
    l.shape.dims()[..l.shape.rank() - 2].iter().product()
}

/// What every batched matmul kernel needs (`matmul.wgsl`, `matmul_coop.wgsl`): each operand's
/// major, the `Params` uniform, and the workgroup count for `block` = (rows, cols) of output
/// per workgroup.
pub(crate) struct Prepared {
    pub(crate) trans_a: bool,
    pub(crate) trans_b: bool,
    pub(crate) params: Params,
    pub(crate) workgroups: usize,
}

/// [`Prepared`] for `la @ lb` (layouts as [`matmul`] takes them); `None` for an empty product.
/// Operands that break the launchers' preconditions are a wgml bug, reported as such.
pub(crate) fn prepare(
    op: &'static str,
    la: &Layout,
    lb: &Layout,
    s: Mkn,
    block: (usize, usize),
) -> Result<Option<Prepared>> {
    let batch = batch_of(la);
    if batch * s.m * s.n == 0 {
        return Ok(None);
    }
    let precondition =
        |what: &str| Error::invalid(op, format!("wgml bug: {what} (layouts {la:?} and {lb:?})"));
    let (trans_a, lda) = matrix_major(la).ok_or_else(|| precondition("lhs not row/col-major"))?;
    let (trans_b, ldb) = matrix_major(lb).ok_or_else(|| precondition("rhs not row/col-major"))?;
    let (dims, strides) = merged_batch(la, lb, s.m * s.n);
    if dims.len() > MAX_BATCH_DIMS {
        return Err(precondition("too many batch dims"));
    }
    let (tiles_m, tiles_n) = (s.m.div_ceil(block.0), s.n.div_ceil(block.1));
    let mut p = Params {
        m: s.m as u32,
        n: s.n as u32,
        k: s.k as u32,
        batch: batch as u32,
        lda: lda as u32,
        ldb: ldb as u32,
        a_off: la.offset as u32,
        b_off: lb.offset as u32,
        tiles_m: tiles_m as u32,
        tiles_n: tiles_n as u32,
        bdims: [1; 4],
        ..Default::default()
    };
    let pad = MAX_BATCH_DIMS - dims.len();
    for (i, &d) in dims.iter().enumerate() {
        p.bdims[pad + i] = d as u32;
        p.a_bstrides[pad + i] = strides[0][i] as u32;
        p.b_bstrides[pad + i] = strides[1][i] as u32;
    }
    Ok(Some(Prepared {
        trans_a,
        trans_b,
        params: p,
        workgroups: tiles_m * tiles_n * batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;

    #[test]
    fn f16_builds_of_the_matmul_shader_validate() {
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        for (shader, caps) in [
            (&*MATMUL_F16_PACKED, Capabilities::default()),
            (&*MATMUL_F16_NATIVE, Capabilities::SHADER_FLOAT16),
        ] {
            let source = super::super::kernel::shader_source(shader.source);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&source)));
            Validator::new(ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&source)));
        }
        assert!(MATMUL_F16_NATIVE.source.starts_with("enable f16;"));
    }

    #[test]
    fn f16_products_pick_cooperative_matrices_only_where_they_pay() {
        use super::super::coop::CoopConfig;
        use super::super::half::F16Path::{Native, Packed};
        let coop = CoopConfig { frag: 16 };
        let cfg = Some(coop);
        let big = Mkn {
            m: 256,
            k: 64,
            n: 128,
        };
        let skinny = Mkn {
            m: 4,
            k: 64,
            n: 128,
        };
        let shallow = Mkn { m: 64, k: 8, n: 64 };
        assert_eq!(pick_f16(cfg, Native, big, false), F16Kernel::Coop(coop));
        assert_eq!(pick_f16(cfg, Native, skinny, false), F16Kernel::Native);
        assert_eq!(pick_f16(cfg, Native, shallow, false), F16Kernel::Native);
        // A forced tile configuration or a forced packed path keeps the FMA kernels.
        assert_eq!(pick_f16(cfg, Native, big, true), F16Kernel::Native);
        assert_eq!(pick_f16(cfg, Packed, big, false), F16Kernel::Packed);
        // No cooperative matrices: the path decides.
        assert_eq!(pick_f16(None, Native, big, false), F16Kernel::Native);
        assert_eq!(pick_f16(None, Packed, big, false), F16Kernel::Packed);
    }

    #[test]
    fn majors() {
        let l = Layout::contiguous(Shape::from([3, 4]));
        assert_eq!(matrix_major(&l), Some((false, 4)));
        assert_eq!(matrix_major(&l.transpose(0, 1)), Some((true, 4)));
        let p = Layout::contiguous(Shape::from([2, 3, 4])).permute(&[2, 0, 1]); // strides (12, 4)
        assert_eq!(matrix_major(&p), None);
        let row = Layout::contiguous(Shape::from([4, 5])).narrow(1, 2, 1);
        assert_eq!(matrix_major(&row), Some((false, 5)));
    }

    #[test]
    fn batch_merging() {
        let a = Layout::contiguous(Shape::from([2, 3, 4, 5]));
        let b = Layout::contiguous(Shape::from([5, 6])).broadcast_to(&Shape::from([2, 3, 5, 6]));
        let (dims, strides) = merged_batch(&a, &b, 4 * 6);
        assert_eq!(dims, vec![6]);
        assert_eq!(strides[0], vec![20]);
        assert_eq!(strides[1], vec![0]);
    }
}
