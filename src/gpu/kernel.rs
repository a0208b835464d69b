//! WGSL shader files, the pipeline cache keyed by (shader, entry point, constants), and
//! `launch`: one dispatch recorded into the pending encoder.

use super::context::GpuContext;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Helpers every shader may use (layout offsets, the folded grid); prepended to each file.
pub(crate) const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// One WGSL file under `shaders/`.
pub(crate) struct Shader {
    pub(crate) name: &'static str,
    pub(crate) source: &'static str,
}

macro_rules! shader {
    ($ident:ident, $file:literal) => {
        pub(crate) const $ident: Shader = Shader {
            name: $file,
            source: include_str!(concat!("../../shaders/", $file, ".wgsl")),
        };
    };
}
shader!(ELEMENTWISE, "elementwise");
shader!(REDUCE, "reduce");
shader!(SOFTMAX, "softmax");
shader!(MATMUL, "matmul");
shader!(INDEX, "index");
shader!(OPTIM, "optim");
shader!(POOL, "pool");
shader!(CONV, "conv");
shader!(ATTENTION, "attention");
shader!(LSTM, "lstm");
shader!(MATMUL_COOP, "matmul_coop");

/// Dispatches recorded since the process started (all devices), for benches and tests.
static DISPATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of compute dispatches recorded so far by this process, on every GPU device (one
/// relaxed atomic add per launch). Take the difference around a region to count its dispatches.
pub fn dispatch_count() -> u64 {
    DISPATCHES.load(std::sync::atomic::Ordering::Relaxed)
}
shader!(NORM, "norm");
shader!(HALF, "half");

/// The WGSL module wgpu gets for a shader file: `COMMON`, then the file, except that the file's
/// leading `enable ...;` directives (with any comments before them) go first, since WGSL
/// allows directives only before every declaration. A file without directives gets exactly
/// `COMMON + "\n" + source`. Public (hidden) for `tests/shaders.rs`, which validates this text.
#[doc(hidden)]
pub fn shader_source(source: &str) -> String {
    let (head, body) = split_enables(source);
    if head.is_empty() {
        format!("{COMMON}\n{body}")
    } else {
        format!("{head}\n{COMMON}\n{body}")
    }
}

/// `source` split after its last leading `enable` directive: the head holds the directives
/// and the blank or `//` comment lines among and before them; empty when there is none.
fn split_enables(source: &str) -> (&str, &str) {
    let mut end = 0;
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("enable ") && t.ends_with(';') {
            end = at + line.len();
        } else if !(t.is_empty() || t.starts_with("//")) {
            break;
        }
        at += line.len();
    }
    source.split_at(end)
}

type Key = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Compiled shader modules and pipelines. Pipeline creation can take milliseconds; each
/// (shader, entry, constants) is built once per device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, wgpu::ComputePipeline>>,
}

/// One dispatch: which entry point, its override constants, the uniform parameters (binding 0)
/// and the storage buffers (bindings 1..), and the workgroup grid.
pub(crate) struct Launch<'a> {
    pub(crate) shader: &'static Shader,
    pub(crate) entry: &'static str,
    pub(crate) constants: &'a [(&'static str, f64)],
    pub(crate) params: &'a [u8],
    pub(crate) buffers: &'a [&'a wgpu::Buffer],
    pub(crate) grid: [u32; 3],
}

impl GpuContext {
    /// The compiled module of a shader file (created once per device).
    fn module(&self, shader: &'static Shader) -> wgpu::ShaderModule {
        let mut modules = self.pipelines.modules.lock().unwrap();
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                let source = shader_source(shader.source);
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })
            .clone()
    }

    /// Creates a pipeline inside a validation error scope, whose answer is returned unawaited.
    pub(crate) fn create_pipeline(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> (wgpu::ComputePipeline, wgpu::ErrorScopeGuard) {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(shader);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        (pipeline, scope)
    }

    fn pipeline(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key: Key = (
            shader.name,
            entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        #[cfg(debug_assertions)]
        super::variants::check_listed(
            &self.limits,
            self.info.subgroup_max_size,
            shader,
            entry,
            constants,
        )?;
        let (pipeline, scope) = self.create_pipeline(shader, entry, constants);
        let what = || format!("{}::{entry} {constants:?}", shader.name);
        // Native targets learn at once whether the pipeline is valid. A browser answers through
        // a promise, and nothing may wait for it: the error marks the device unusable when it
        // arrives, so the next read-back or `synchronize_async` reports it.
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "wgml bug: pipeline {} failed: {e}",
                what()
            )));
        }
        #[cfg(target_arch = "wasm32")]
        {
            // Pop now (scopes are a stack other work pushes onto), await the answer later.
            let (report, what, popped) = (self.error_sink(), what(), scope.pop());
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(e) = popped.await {
                    report(format!("wgml bug: pipeline {what} failed: {e}"));
                }
            });
        }
        self.pipelines
            .pipelines
            .lock()
            .unwrap()
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Records one dispatch into the pending encoder. Nothing waits here.
    pub(crate) fn launch(&self, l: Launch<'_>) -> Result<()> {
        use wgpu::util::DeviceExt;
        self.check_alive(l.entry)?;
        DISPATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pipeline = self.pipeline(l.shader, l.entry, l.constants)?;
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("wgml params"),
                contents: l.params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in l.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(l.entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if l.grid.contains(&0) {
            return Ok(());
        }
        self.with_encoder(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(l.entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(l.grid[0], l.grid[1], l.grid[2]);
        });
        Ok(())
    }

    /// A grid of `workgroups` workgroups folded into 2-D when it exceeds the per-dimension
    /// limit (65,535 on most adapters). Kernels recover the linear id with `linear_workgroup`.
    pub(crate) fn grid_1d(&self, workgroups: usize, op: &'static str) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if workgroups <= max {
            return Ok([workgroups as u32, 1, 1]);
        }
        let y = workgroups.div_ceil(max);
        if y > max {
            return Err(Error::invalid(
                op,
                format!("{workgroups} workgroups exceed the device's {max}x{max} grid"),
            ));
        }
        Ok([max as u32, y as u32, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_are_hoisted_above_common() {
        let src = "// header\nenable f16;\n\nenable wgpu_cooperative_matrix;\nconst X: u32 = 1u;\n";
        let (head, body) = split_enables(src);
        assert_eq!(
            head,
            "// header\nenable f16;\n\nenable wgpu_cooperative_matrix;\n"
        );
        assert_eq!(body, "const X: u32 = 1u;\n");
        let full = shader_source(src);
        assert!(full.starts_with(head), "{full}");
        assert!(full.ends_with(&format!("{COMMON}\n{body}")), "{full}");
    }

    #[test]
    fn sources_without_leading_enables_are_unchanged() {
        for src in [
            "// header\nconst X: u32 = 1u;\n",
            // An `enable` after a declaration is the file's own error, not moved.
            "const X: u32 = 1u;\nenable f16;\n",
            "",
        ] {
            assert_eq!(split_enables(src), ("", src));
            assert_eq!(shader_source(src), format!("{COMMON}\n{src}"));
        }
    }
}
