//! Launcher for `shaders/matmul_coop.wgsl` (F16 matmul on cooperative matrices): whether the
//! device can run it, for which shapes it pays, and the dispatch.
//!
//! wgpu 30 exposes cooperative matrices as the experimental `wgpu_cooperative_matrix` WGSL
//! extension: naga has square `coop_mat8x8` / `coop_mat16x16` types of f16 or f32 only, and the
//! Vulkan backend lists the adapter's subgroup-scope `VK_KHR_cooperative_matrix` configurations
//! with 8 or 16 per side. The kernel uses 16×16×16 fragments, f16 × f16 accumulated in f32, the
//! configuration tensor-core GPUs list (NVIDIA); no software adapter offers cooperative
//! matrices, so this kernel runs only on such hardware, and CI checks it by compiling it to
//! SPIR-V (`tests/shaders.rs`) and by the selection tests below.

use super::buffer::GpuBuffer;
use super::context::GpuContext;
use super::kernel::{Launch, MATMUL_COOP};
use super::matmul::prepare;
use crate::cpu::matmul::Mkn;
use crate::shape::Layout;
use crate::{Error, Result};
use wgpu::{CooperativeMatrixProperties, CooperativeScalarType, Features};

/// Side of one cooperative fragment (M = N = K of one multiply-add), `FRAG` in the shader.
const FRAG: u32 = 16;
/// Output block of one workgroup, `BM` × `BN` in the shader (2×2 fragments).
const BLOCK: usize = 32;

/// A cooperative-matrix configuration the device supports and `matmul_coop.wgsl` uses. Only
/// [`coop_config`] makes one, so holding it means the device can run the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CoopConfig {
    /// Fragment side: M = N = K of one multiply-add (16).
    pub(crate) frag: u32,
}

/// The configuration for a device created with `features` on an adapter listing `props`:
/// `Some` only when the device has `EXPERIMENTAL_COOPERATIVE_MATRIX` and `SHADER_F16` and the
/// adapter lists exactly 16×16×16 with f16 A/B and an f32 accumulator. A configuration with
/// saturating accumulation does not count: Vulkan then requires the saturating operand on
/// every multiply-add, which naga never emits.
pub(crate) fn coop_config(
    features: Features,
    props: &[CooperativeMatrixProperties],
) -> Option<CoopConfig> {
    if !features.contains(Features::EXPERIMENTAL_COOPERATIVE_MATRIX | Features::SHADER_F16) {
        return None;
    }
    props
        .iter()
        .any(|p| {
            (p.m_size, p.n_size, p.k_size) == (FRAG, FRAG, FRAG)
                && p.ab_type == CooperativeScalarType::F16
                && p.cr_type == CooperativeScalarType::F32
                && !p.saturating_accumulation
        })
        .then_some(CoopConfig { frag: FRAG })
}

/// [`coop_config`] for an opened device.
pub(crate) fn device_config(ctx: &GpuContext) -> Option<CoopConfig> {
    coop_config(ctx.features, &ctx.coop_props)
}

/// The override constants of `matmul_coop.wgsl`: `wg` invocations (one subgroup) and the
/// operands' majors.
pub(crate) fn constants(wg: u32, trans_a: bool, trans_b: bool) -> [(&'static str, f64); 3] {
    [
        ("WG", wg as f64),
        ("TRANS_A", trans_a as u32 as f64),
        ("TRANS_B", trans_b as u32 as f64),
    ]
}

/// Whether an `m × k @ k × n` product should take the cooperative kernel. M and N must each
/// fill one 32×32 output block and K one 16-deep step: below that, half or more of every
/// multiply-add is zero padding and the block's staging and round trip through workgroup
/// memory cost more than they save, while the plain kernels have skinny tiles (8×128, 128×8)
/// for exactly those shapes. Above it, tensor cores run f16 products several times faster than
/// the FMA loop even with up to half of an edge block wasted.
pub(crate) fn use_coop(cfg: Option<CoopConfig>, m: usize, n: usize, k: usize) -> bool {
    cfg.is_some() && m >= BLOCK && n >= BLOCK && k >= FRAG as usize
}

/// `out[b] = a[b] @ b[b]` for every batch on cooperative matrices. `a` is F16 `[..B, M, K]`,
/// `b` is F16 `[..B, K, N]` (batch dims already broadcast, stride 0 where broadcast), each
/// matrix row- or column-major (see `matmul::matrix_major`) with at most
/// `matmul::MAX_BATCH_DIMS` batch dims after merging (see `matmul::batch_fits`); the checks
/// and parameters are `matmul::prepare`'s. Offsets and strides count F16 elements (the
/// o-th 16-bit half of the buffer). `out` is contiguous **f32** `[..B, M, N]`. `cfg` comes
/// from [`coop_config`] for this device.
///
/// A workgroup is meant to be one subgroup: it has the adapter's largest subgroup size, so no
/// subgroup is partial; where the driver picks smaller subgroups each computes the whole block
/// (the same values), which is correct but slower.
///
/// Exercised only on adapters that list the configuration (no CI adapter does): see
/// `tests/shaders.rs` for the compile-only check.
pub(crate) fn matmul_coop(
    a: (&GpuBuffer, &Layout),
    b: (&GpuBuffer, &Layout),
    out: &GpuBuffer,
    s: Mkn,
    cfg: CoopConfig,
) -> Result<()> {
    const OP: &str = "matmul_coop";
    let precondition = |what: &str| {
        Error::invalid(
            OP,
            format!("wgml bug: {what} (layouts {:?} and {:?})", a.1, b.1),
        )
    };
    if cfg.frag != FRAG {
        return Err(precondition("configuration not made by coop_config"));
    }
    let Some(prep) = prepare(OP, a.1, b.1, s, (BLOCK, BLOCK))? else {
        return Ok(());
    };
    let (trans_a, trans_b, p) = (prep.trans_a, prep.trans_b, prep.params);
    let ctx = out.ctx();
    let wg = ctx.info.subgroup_max_size.max(1);
    if wg > ctx.limits.max_compute_invocations_per_workgroup {
        return Err(precondition("subgroup larger than a workgroup may be"));
    }
    ctx.launch(Launch {
        shader: &MATMUL_COOP,
        entry: "matmul_coop",
        constants: &constants(wg, trans_a, trans_b),
        params: bytemuck::bytes_of(&p),
        buffers: &[out.binding(), a.0.binding(), b.0.binding()],
        grid: ctx.grid_1d(prep.workgroups, OP)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CooperativeScalarType::{F16, F32};

    fn prop(
        size: u32,
        ab: CooperativeScalarType,
        cr: CooperativeScalarType,
    ) -> CooperativeMatrixProperties {
        CooperativeMatrixProperties {
            m_size: size,
            n_size: size,
            k_size: size,
            ab_type: ab,
            cr_type: cr,
            saturating_accumulation: false,
        }
    }

    /// The two features the kernel needs (`Features` has no const `union`).
    fn both() -> Features {
        Features::EXPERIMENTAL_COOPERATIVE_MATRIX | Features::SHADER_F16
    }
    const RIGHT: CoopConfig = CoopConfig { frag: 16 };

    #[test]
    fn config_needs_the_exact_configuration() {
        assert_eq!(coop_config(both(), &[]), None);
        assert_eq!(coop_config(both(), &[prop(8, F32, F32)]), None);
        assert_eq!(coop_config(both(), &[prop(16, F16, F16)]), None);
        assert_eq!(coop_config(both(), &[prop(8, F16, F32)]), None);
        assert_eq!(coop_config(both(), &[prop(16, F32, F32)]), None);
        assert_eq!(coop_config(both(), &[prop(16, F16, F32)]), Some(RIGHT));
        // Found anywhere in the list, as a Vulkan driver lists many.
        let list = [prop(8, F32, F32), prop(16, F16, F16), prop(16, F16, F32)];
        assert_eq!(coop_config(both(), &list), Some(RIGHT));
        // Non-square sizes are not what the square naga types load.
        let mut wide = prop(16, F16, F32);
        wide.n_size = 8;
        assert_eq!(coop_config(both(), &[wide]), None);
        let mut saturating = prop(16, F16, F32);
        saturating.saturating_accumulation = true;
        assert_eq!(coop_config(both(), &[saturating]), None);
    }

    #[test]
    fn config_needs_both_features() {
        let list = [prop(16, F16, F32)];
        assert_eq!(coop_config(Features::empty(), &list), None);
        assert_eq!(coop_config(Features::SHADER_F16, &list), None);
        assert_eq!(
            coop_config(Features::EXPERIMENTAL_COOPERATIVE_MATRIX, &list),
            None
        );
        let more = both() | Features::SUBGROUP;
        assert_eq!(coop_config(more, &list), Some(RIGHT));
    }

    #[test]
    fn shape_gate() {
        assert!(!use_coop(None, 4096, 4096, 4096));
        let c = Some(RIGHT);
        assert!(use_coop(c, 32, 32, 16));
        assert!(use_coop(c, 1000, 33, 17));
        assert!(!use_coop(c, 31, 4096, 4096)); // few rows: the wide kernel's case
        assert!(!use_coop(c, 4096, 31, 4096)); // few columns: the tall kernel's case
        assert!(!use_coop(c, 4096, 4096, 15)); // less than one K step
        assert!(!use_coop(c, 1, 1, 1));
    }
}
