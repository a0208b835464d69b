//! Every pipeline the launchers can build, as (shader, entry point, override constants), so a
//! shader check can compile all of them under another WGSL compiler (Tint, in the browser
//! tests) and not only those a test happens to reach. Debug builds refuse to build a pipeline
//! missing from this list, so the whole test suite keeps it true.

use super::context::GpuContext;
use super::kernel::{
    Shader, ATTENTION, CONV, ELEMENTWISE, GRU, HALF, INDEX, LSTM, NORM, OPTIM, POOL,
};
use super::kernel::{MATMUL_COOP, REDUCE, SOFTMAX};
use super::{attention, conv, coop, elementwise, gru, index, lstm, matmul, norm, optim, pool};
use super::{reduce, softmax};
use crate::op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};

/// One pipeline: a shader file, an entry point and its override constants.
pub(crate) struct Variant {
    pub(crate) shader: &'static Shader,
    pub(crate) entry: &'static str,
    pub(crate) constants: Vec<(&'static str, f64)>,
}

impl Variant {
    /// The device features the shader's `enable` directives need (empty for most).
    pub(crate) fn needs(&self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        for line in self.shader.source.lines().map(str::trim) {
            match line {
                "enable f16;" => f |= wgpu::Features::SHADER_F16,
                "enable wgpu_cooperative_matrix;" => {
                    f |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
                }
                _ => {}
            }
        }
        f
    }
}

/// Overrides that only size workgroup arrays from the adapter's limits and the head size
/// (attention's tiles): the list holds a sample of their values, and the debug check ignores
/// them, since every value the launcher computes fits the adapter by construction.
#[cfg(debug_assertions)]
const SIZED: [&str; 4] = ["BK", "TA", "TB", "TC"];

/// Head sizes (D, Dv) whose attention tiles the list samples: the smallest, odd, unequal, and
/// the largest the kernels take.
const HEAD_SIZES: [(usize, usize); 5] = [(1, 1), (3, 5), (32, 32), (64, 48), (128, 128)];

/// Every unary op code with scalars (the scalars are uniforms, not constants).
fn unary_codes() -> Vec<u32> {
    let mut ops = vec![
        UnaryOp::Copy,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Affine { mul: 1.0, add: 0.0 },
        UnaryOp::Powf(1.0),
        UnaryOp::Recip,
        UnaryOp::Clamp { min: 0.0, max: 1.0 },
        UnaryOp::GeluGrad,
        UnaryOp::Sign,
        UnaryOp::U32ToF32,
        UnaryOp::F32ToU32,
    ];
    ops.extend(CMP.map(|c| UnaryOp::CmpScalar(c, 0.0)));
    ops.into_iter().map(|op| op.code().0).collect()
}

const CMP: [CmpOp; 6] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];

fn binary_codes() -> Vec<u32> {
    let mut ops = vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ];
    ops.extend(CMP.map(BinaryOp::Cmp));
    ops.into_iter().map(BinaryOp::code).collect()
}

/// Every pipeline the launchers build on a device with these limits, features and largest
/// subgroup size, including those needing features it lacks (see [`Variant::needs`]).
pub(crate) fn all(limits: &wgpu::Limits, subgroup_max: u32) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut add = |shader: &'static Shader, entry, constants: &[(&'static str, f64)]| {
        out.push(Variant {
            shader,
            entry,
            constants: constants.to_vec(),
        })
    };
    let wg = |n: usize| [("WG", n as f64)];
    for code in unary_codes() {
        add(&ELEMENTWISE, "unary", &elementwise::constants(code));
        for in0 in [false, true] {
            add(
                &ELEMENTWISE,
                "unary_h",
                &elementwise::constants_h(code, in0, true),
            );
        }
    }
    for code in binary_codes() {
        add(&ELEMENTWISE, "binary", &elementwise::constants(code));
        for (in0, in1) in [(false, false), (false, true), (true, false), (true, true)] {
            add(
                &ELEMENTWISE,
                "binary_h",
                &elementwise::constants_h(code, in0, in1),
            );
        }
    }
    for entry in ["where_select", "fill"] {
        add(&ELEMENTWISE, entry, &elementwise::constants(0));
    }
    let reduce_ops = [
        ReduceOp::Sum,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::ArgMax,
    ];
    for code in reduce_ops.map(reduce::op_code).map(|c| c as f64) {
        add(
            &REDUCE,
            "reduce_thread",
            &[("OP", code), ("WG", reduce::THREAD_WG as f64)],
        );
        for len in [1, usize::MAX] {
            let wg = reduce::workgroup_size(len) as f64;
            add(&REDUCE, "reduce_wg", &[("OP", code), ("WG", wg)]);
        }
    }
    for n in [1, usize::MAX] {
        for entry in [
            "softmax",
            "log_softmax",
            "softmax_backward",
            "log_softmax_backward",
        ] {
            add(&SOFTMAX, entry, &wg(softmax::workgroup_size(n)));
        }
        for entry in ["layer_norm_forward", "layer_norm_backward_dx"] {
            add(&NORM, entry, &wg(norm::workgroup_size(n)));
        }
    }
    add(
        &NORM,
        "layer_norm_backward_params",
        &[("WG", norm::PARAM_WG as f64), ("RB", norm::PARAM_RB as f64)],
    );
    for entry in ["im2col", "im2col_h", "col2im"] {
        add(&CONV, entry, &wg(conv::WG));
    }
    for entry in [
        "max_forward",
        "max_forward_h",
        "avg_forward",
        "max_backward",
        "avg_backward",
    ] {
        add(&POOL, entry, &wg(pool::WG));
    }
    for entry in ["gather", "gather_h", "one_hot", "scatter_add"] {
        add(&INDEX, entry, &wg(index::WG));
    }
    for entry in ["lstm_forward", "lstm_backward"] {
        add(&LSTM, entry, &wg(lstm::WG));
    }
    for h in [1, 65, 129] {
        for entry in ["lstm_seq_forward", "lstm_seq_backward"] {
            add(&LSTM, entry, &wg(lstm::seq_workgroup(h)));
        }
    }
    for entry in ["gru_forward", "gru_backward"] {
        add(&GRU, entry, &wg(gru::WG));
    }
    for h in [1, 65, 129] {
        for entry in ["gru_seq_forward", "gru_seq_backward"] {
            add(&GRU, entry, &wg(lstm::seq_workgroup(h)));
        }
    }
    for entry in [
        "sgd_step",
        "adam_step",
        "sgd_step_clipped",
        "adam_step_clipped",
        "sum_squares",
    ] {
        add(&OPTIM, entry, &wg(optim::WG));
    }
    add(&HALF, "to_f32", &[]);
    for src_f16 in [0.0, 1.0] {
        add(&HALF, "to_f16", &[("SRC_F16", src_f16)]);
    }
    add(&ATTENTION, "attention_di", &[]);
    for (d, dv) in HEAD_SIZES {
        add(
            &ATTENTION,
            "attention_forward",
            &attention::constants(limits, d, dv, 0),
        );
        add(
            &ATTENTION,
            "attention_dq",
            &attention::constants(limits, d, dv, 0),
        );
        add(
            &ATTENTION,
            "attention_dkdv",
            &attention::constants(limits, d, dv, 2),
        );
    }
    let transposes = [(false, false), (false, true), (true, false), (true, true)];
    for io in [
        matmul::Io::F32,
        matmul::Io::F16Packed,
        matmul::Io::F16Native,
    ] {
        for c in &matmul::CONFIGS {
            for (ta, tb) in transposes {
                add(io.shader(), "matmul", &matmul::constants(c, ta, tb));
            }
        }
    }
    for (ta, tb) in transposes {
        let c = coop::constants(subgroup_max.max(1), ta, tb);
        add(&MATMUL_COOP, "matmul_coop", &c);
    }
    out
}

/// The constants of a pipeline with the [`SIZED`] ones left out, as bits for comparison.
#[cfg(debug_assertions)]
fn key(constants: &[(&'static str, f64)]) -> Vec<(&'static str, u64)> {
    constants
        .iter()
        .filter(|(k, _)| !SIZED.contains(k))
        .map(|(k, v)| (*k, v.to_bits()))
        .collect()
}

/// `Err` naming the pipeline when it is missing from [`all`]: a launcher builds something the
/// shader checks never compiled. Run by debug builds before each new pipeline.
#[cfg(debug_assertions)]
pub(crate) fn check_listed(
    limits: &wgpu::Limits,
    subgroup_max: u32,
    shader: &Shader,
    entry: &str,
    constants: &[(&'static str, f64)],
) -> crate::Result<()> {
    let want = key(constants);
    let listed = all(limits, subgroup_max)
        .iter()
        .any(|v| v.shader.name == shader.name && v.entry == entry && key(&v.constants) == want);
    if listed {
        return Ok(());
    }
    Err(crate::Error::Gpu(format!(
        "wgml bug: pipeline {}::{entry} {constants:?} is not in gpu::variants::all, so no shader \
         check compiles it; add it there",
        shader.name
    )))
}

/// What compiling one listed pipeline on a device gave.
#[derive(Debug)]
pub enum Checked {
    /// The shader compiler accepted it.
    Ok,
    /// Not compiled: the device lacks a feature the shader enables (named).
    Skipped(String),
    /// The compiler's error.
    Failed(String),
}

/// Compiles every pipeline of [`all`] on `ctx` and reports each as `shader::entry
/// {constants}` with what the device's shader compiler said (naga and the driver natively,
/// Tint in Chrome). For shader checks: `tests/shaders.rs` natively, `tests/web.rs` in a
/// browser. Never blocks: on native targets the answers are ready at once.
pub async fn check_all(ctx: &GpuContext) -> Vec<(String, Checked)> {
    let mut out = Vec::new();
    for v in all(&ctx.limits, ctx.info.subgroup_max_size) {
        let name = format!("{}::{} {:?}", v.shader.name, v.entry, v.constants);
        let missing = v.needs() - ctx.features;
        if !missing.is_empty() {
            out.push((name, Checked::Skipped(format!("needs {missing:?}"))));
            continue;
        }
        let (_pipeline, _layout, scope) = ctx.create_pipeline(v.shader, v.entry, &v.constants);
        let checked = match scope.pop().await {
            None => Checked::Ok,
            Some(e) => Checked::Failed(e.to_string()),
        };
        out.push((name, checked));
    }
    out
}

/// The (shader, entry point) pairs [`all`] lists, for a test that every entry point of every
/// shader file is among them.
pub fn listed_entry_points() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = all(&wgpu::Limits::default(), 32)
        .iter()
        .map(|v| (v.shader.name, v.entry))
        .collect();
    v.dedup();
    v
}
