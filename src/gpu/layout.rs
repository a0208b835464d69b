//! Explicit bind-group layouts: each entry point's binding signature, read from its WGSL (the
//! `@group(0) @binding(N)` globals the entry point reaches through its calls), and one layout
//! per signature, shared by every pipeline with that signature, so a bind group built for one
//! kernel serves every kernel that binds the same buffers the same way.
//!
//! Binding 0 is always the kernel's parameters: a uniform with a dynamic offset into the
//! device's uniform ring (see `recorder.rs`). The storage bindings follow in binding order,
//! the order launchers list their buffers in.

use std::collections::HashMap;
use std::num::NonZeroU64;

/// Bytes of parameters each dispatch may bind (the largest `Params` struct fits).
pub(crate) const UNIFORM_BINDING: u64 = 512;

/// The storage bindings an entry point uses, in binding order: (binding, read-only).
pub(crate) type Signature = Vec<(u32, bool)>;

/// `source` with `//` comments blanked out.
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers in `text`.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_ident_char(c))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

/// Each function's name and its text (parameters, return type and body).
fn functions(src: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut rest = src;
    while let Some(at) = rest.find("fn ") {
        let starts_word = at == 0 || !rest[..at].ends_with(is_ident_char);
        let after = &rest[at + 3..];
        let name_end = after
            .find(|c: char| !is_ident_char(c))
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let Some(open) = after.find('{') else { break };
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        if starts_word && !name.is_empty() {
            out.insert(name, &after[name_end..end]);
        }
        rest = &after[end..];
    }
    out
}

/// The storage bindings `entry` reaches in `source` (a whole module, `common.wgsl` included),
/// in binding order. Module-scope `@group(0) @binding(N) var<storage, ...> name` declarations
/// count when `name` appears in the entry point or in a function it calls, directly or not.
pub(crate) fn signature(source: &str, entry: &str) -> Signature {
    let src = strip_comments(source);
    // name -> (binding, read-only) of every storage global.
    let mut globals: HashMap<&str, (u32, bool)> = HashMap::new();
    for decl in src.split("@binding(").skip(1) {
        let Some((n, rest)) = decl.split_once(')') else {
            continue;
        };
        let Ok(binding) = n.trim().parse::<u32>() else {
            continue;
        };
        let Some((kind, rest)) = rest.split_once("var<").and_then(|(_, r)| r.split_once('>'))
        else {
            continue;
        };
        let kind: String = kind.chars().filter(|c| !c.is_whitespace()).collect();
        let name = rest.trim_start().split(|c: char| !is_ident_char(c)).next();
        if let (Some(name), true) = (name, kind.starts_with("storage")) {
            globals.insert(name, (binding, kind != "storage,read_write"));
        }
    }
    let fns = functions(&src);
    let mut seen = vec![entry];
    let mut todo = vec![entry];
    let mut used = Signature::new();
    while let Some(f) = todo.pop() {
        for id in identifiers(fns.get(f).copied().unwrap_or_default()) {
            if let Some(&g) = globals.get(id) {
                if !used.contains(&g) {
                    used.push(g);
                }
            } else if fns.contains_key(id) && !seen.contains(&id) {
                seen.push(id);
                todo.push(id);
            }
        }
    }
    used.sort();
    used
}

/// A bind-group layout and the pipeline layout over it, shared by every pipeline with the
/// same [`Signature`]; `id` keys the bind-group cache.
pub(crate) struct SharedLayout {
    pub(crate) id: u32,
    /// The storage bindings in order, and whether each is written: the launcher's buffers
    /// go to these binding numbers, in this order.
    pub(crate) storage: Vec<(u32, bool)>,
    pub(crate) group: wgpu::BindGroupLayout,
    pub(crate) pipeline: wgpu::PipelineLayout,
}

/// The layouts made so far on one device.
#[derive(Default)]
pub(crate) struct Layouts {
    by_signature: HashMap<Signature, std::sync::Arc<SharedLayout>>,
}

impl Layouts {
    /// The shared layout for `sig`, made on first use.
    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        sig: Signature,
    ) -> std::sync::Arc<SharedLayout> {
        let id = self.by_signature.len() as u32;
        self.by_signature
            .entry(sig)
            .or_insert_with_key(|sig| {
                let buffer = |binding, ty, has_dynamic_offset, min_binding_size| {
                    wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty,
                            has_dynamic_offset,
                            min_binding_size,
                        },
                        count: None,
                    }
                };
                let mut entries = vec![buffer(
                    0,
                    wgpu::BufferBindingType::Uniform,
                    true,
                    NonZeroU64::new(UNIFORM_BINDING),
                )];
                entries.extend(sig.iter().map(|&(binding, read_only)| {
                    buffer(
                        binding,
                        wgpu::BufferBindingType::Storage { read_only },
                        false,
                        None,
                    )
                }));
                let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("wgml"),
                    entries: &entries,
                });
                let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("wgml"),
                    bind_group_layouts: &[Some(&group)],
                    immediate_size: 0,
                });
                std::sync::Arc::new(SharedLayout {
                    id,
                    storage: sig.iter().map(|&(b, read_only)| (b, !read_only)).collect(),
                    group,
                    pipeline,
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>; // read
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> x_rw: array<u32>;
fn helper(i: u32) -> f32 { return x[i]; }
fn unused() { out[0] = y[0]; }
@compute @workgroup_size(64)
fn one(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < p.n) { out[id.x] = helper(id.x); }
}
@compute @workgroup_size(64)
fn two() {
    // y is named only in this comment of another entry point's body: x_rw y
    x_rw[0] = 1u;
}
";

    #[test]
    fn an_entry_point_binds_what_it_reaches() {
        assert_eq!(signature(SRC, "one"), vec![(1, false), (2, true)]);
        assert_eq!(signature(SRC, "two"), vec![(2, false)]);
        assert_eq!(signature(SRC, "unused"), vec![(1, false), (3, true)]);
    }
}
