//! WGSL shader files, the pipeline cache keyed by (shader, entry point, constants), and
//! `launch`: one dispatch recorded into the pending encoder.

use super::buffer::Binding;
use super::context::GpuContext;
use super::layout::{Layouts, SharedLayout, UNIFORM_BINDING};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
shader!(GRU, "gru");
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

/// One cached pipeline: its key, kept to tell hash collisions apart, and its shared layout.
struct Cached {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    pipeline: wgpu::ComputePipeline,
    layout: Arc<SharedLayout>,
}

impl Cached {
    fn is(&self, shader: &str, entry: &str, constants: &[(&'static str, f64)]) -> bool {
        // Names are `&'static str` constants: compare them by address first, then by text.
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        same(self.shader, shader)
            && same(self.entry, entry)
            && self.constants.len() == constants.len()
            && self
                .constants
                .iter()
                .zip(constants)
                .all(|(a, b)| same(a.0, b.0) && a.1 == b.1.to_bits())
    }
}

/// The hash of a pipeline key, computed without building the key.
fn key_hash(shader: &str, entry: &str, constants: &[(&'static str, f64)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    shader.hash(&mut h);
    entry.hash(&mut h);
    for (k, v) in constants {
        k.hash(&mut h);
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

/// Compiled shader modules, the shared layouts and the pipelines. Pipeline creation can take
/// milliseconds; each (shader, entry, constants) is built once per device, and finding it again
/// allocates nothing.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    layouts: Mutex<Layouts>,
    pipelines: Mutex<HashMap<u64, Vec<Cached>>>,
}

/// One dispatch: which entry point, its override constants, the uniform parameters (binding 0)
/// and the storage buffers (the entry point's storage bindings, in binding order), and the
/// workgroup grid.
pub(crate) struct Launch<'a> {
    pub(crate) shader: &'static Shader,
    pub(crate) entry: &'static str,
    pub(crate) constants: &'a [(&'static str, f64)],
    pub(crate) params: &'a [u8],
    pub(crate) buffers: &'a [Binding],
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

    /// Creates a pipeline, with the layout its binding signature shares, inside a validation
    /// error scope whose answer is returned unawaited.
    pub(crate) fn create_pipeline(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> (
        wgpu::ComputePipeline,
        Arc<SharedLayout>,
        wgpu::ErrorScopeGuard,
    ) {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(shader);
        let sig = super::layout::signature(&shader_source(shader.source), entry);
        let layout = self
            .pipelines
            .layouts
            .lock()
            .unwrap()
            .get(&self.device, sig);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout.pipeline),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        (pipeline, layout, scope)
    }

    /// The pipeline of (shader, entry, constants) and its layout, built on first use.
    fn pipeline(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<(wgpu::ComputePipeline, Arc<SharedLayout>)> {
        let hash = key_hash(shader.name, entry, constants);
        if let Some(c) = self
            .pipelines
            .pipelines
            .lock()
            .unwrap()
            .get(&hash)
            .and_then(|v| v.iter().find(|c| c.is(shader.name, entry, constants)))
        {
            return Ok((c.pipeline.clone(), c.layout.clone()));
        }
        #[cfg(debug_assertions)]
        super::variants::check_listed(
            &self.limits,
            self.info.subgroup_max_size,
            shader,
            entry,
            constants,
        )?;
        let (pipeline, layout, scope) = self.create_pipeline(shader, entry, constants);
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
            .entry(hash)
            .or_default()
            .push(Cached {
                shader: shader.name,
                entry,
                constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
                pipeline: pipeline.clone(),
                layout: layout.clone(),
            });
        Ok((pipeline, layout))
    }

    /// Records one dispatch into the pending compute pass: its parameters go to the uniform
    /// ring, its bind group comes from the cache when the same buffers come back. Nothing
    /// waits here.
    pub(crate) fn launch(self: &Arc<Self>, l: Launch<'_>) -> Result<()> {
        self.check_alive(l.entry)?;
        DISPATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (pipeline, layout) = self.pipeline(l.shader, l.entry, l.constants)?;
        if l.params.len() as u64 > UNIFORM_BINDING {
            return Err(Error::Gpu(format!(
                "wgml bug: {} has {} bytes of parameters, more than the {UNIFORM_BINDING} bound",
                l.entry,
                l.params.len()
            )));
        }
        if l.grid.contains(&0) {
            return Ok(());
        }
        if l.buffers.len() != layout.storage.len() {
            return Err(Error::Gpu(format!(
                "wgml bug: {}::{} binds {} storage buffers, its shader {}",
                l.shader.name,
                l.entry,
                l.buffers.len(),
                layout.storage.len()
            )));
        }
        let unaliased;
        let buffers = match self.unalias(l.buffers, &layout.storage, l.entry)? {
            Some(b) => {
                unaliased = b;
                &unaliased[..]
            }
            None => l.buffers,
        };
        self.record_dispatch(&pipeline, &layout, l.params, buffers, l.grid);
        Ok(())
    }

    /// `None` when no buffer is bound twice with one of the bindings written; else the
    /// bindings with each read-only one that shares a written buffer replaced by a copy of its
    /// words. WebGPU validates usage per buffer, not per range, and storages packed side by side
    /// (`gpu::flat`) share a buffer: writing one parameter from another is legal for a user.
    fn unalias(
        self: &Arc<Self>,
        buffers: &[Binding],
        storage: &[(u32, bool)],
        entry: &'static str,
    ) -> Result<Option<Vec<Binding>>> {
        let writable = |j: usize| storage[j].1;
        let written_twice = |i: usize| {
            (0..buffers.len())
                .any(|j| j != i && writable(j) && buffers[j].buffer == buffers[i].buffer)
        };
        if !(0..buffers.len()).any(written_twice) {
            return Ok(None);
        }
        let mut out = buffers.to_vec();
        for (i, b) in buffers.iter().enumerate() {
            if !written_twice(i) {
                continue;
            }
            if writable(i) {
                return Err(Error::Gpu(format!(
                    "wgml bug: {entry} writes two ranges of one buffer in one dispatch"
                )));
            }
            let bytes = b.size.map_or(b.buffer.size() - b.offset, |s| s.get());
            let lease = super::buffer::lease(self, bytes, entry, &[])?;
            let copy = Binding::whole(lease.buffer());
            self.with_encoder(|enc| {
                enc.copy_buffer_to_buffer(&b.buffer, b.offset, &copy.buffer, 0, bytes)
            });
            out[i] = copy;
            // The lease goes back to the pool after this launch; its reuse is ordered after
            // the dispatch on the queue.
        }
        Ok(Some(out))
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
