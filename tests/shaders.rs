//! Every WGSL file in `shaders/` parses and validates with naga (the version wgpu uses), with `common.wgsl` prepended as `src/gpu/kernel.rs` does; every entry point is in `gpu::variants`, and every listed pipeline builds on the adapter.

mod common;

use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use std::path::{Path, PathBuf};

fn shader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

/// Parses and validates one WGSL source; the error carries naga's full report.
fn validate(name: &str, source: &str) -> Result<naga::Module, String> {
    validate_info(name, source).map(|(module, _)| module)
}

/// The capabilities a source's `enable` directives ask for, as wgpu grants them for the device
/// features wgml requests (`SHADER_F16`, `EXPERIMENTAL_COOPERATIVE_MATRIX`); none for a source
/// without directives, so every other file is validated under `Capabilities::default()`.
fn capabilities(source: &str) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in source.lines().map(str::trim) {
        match line {
            "enable f16;" => caps |= Capabilities::SHADER_FLOAT16,
            "enable wgpu_cooperative_matrix;" => caps |= Capabilities::COOPERATIVE_MATRIX,
            _ => {}
        }
    }
    caps
}

/// [`validate`], also returning naga's module info (for a back end).
fn validate_info(name: &str, source: &str) -> Result<(naga::Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: parse error:\n{}", e.emit_to_string(source)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities(source))
        .validate(&module)
        .map_err(|e| format!("{name}: validation error:\n{}", e.emit_to_string(source)))?;
    Ok((module, info))
}

/// The files under `shaders/`, read at test time so a new file is covered without a change here.
fn shader_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shader_dir())
        .expect("shaders/ directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    files
}

#[test]
fn common_wgsl_validates_alone() {
    let common = std::fs::read_to_string(shader_dir().join("common.wgsl")).unwrap();
    validate("common.wgsl", &common).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn every_shader_file_validates_with_common_prepended() {
    let files = shader_files();
    assert!(
        files.iter().any(|f| f.ends_with("elementwise.wgsl")),
        "shaders/ lists {files:?}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "common.wgsl" {
            continue;
        }
        let body = std::fs::read_to_string(path).unwrap();
        // Exactly the source `PipelineCache` hands to wgpu.
        let source = wgml::gpu::shader_source(&body);
        if let Err(e) = validate(&name, &source) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn compute_entry_points_are_present() {
    // Entry points the launchers name; a rename in a .wgsl file must fail here, not at run time.
    let expected: &[(&str, &[&str])] = &[
        (
            "elementwise.wgsl",
            &[
                "unary",
                "binary",
                "where_select",
                "fill",
                "unary_h",
                "binary_h",
            ],
        ),
        ("index.wgsl", &["gather", "gather_h", "scatter_add"]),
        ("half.wgsl", &["to_f32", "to_f16"]),
        ("conv.wgsl", &["im2col", "im2col_h", "col2im"]),
        (
            "pool.wgsl",
            &["max_forward", "max_forward_h", "max_backward"],
        ),
        ("matmul_coop.wgsl", &["matmul_coop"]),
    ];
    for (file, entries) in expected {
        let body = std::fs::read_to_string(shader_dir().join(file)).unwrap();
        let module =
            validate(file, &wgml::gpu::shader_source(&body)).unwrap_or_else(|e| panic!("{e}"));
        for entry in *entries {
            let ep = module
                .entry_points
                .iter()
                .find(|ep| ep.name == *entry)
                .unwrap_or_else(|| panic!("{file}: no entry point {entry}"));
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{file}::{entry}");
        }
    }
}

#[test]
fn an_invalid_shader_is_rejected() {
    // The check is not vacuous: a type error and a syntax error are both caught.
    assert!(validate("bad", "fn f() -> u32 { return 1.5; }").is_err());
    assert!(validate("bad", "fn f( {").is_err());
}

#[test]
fn override_sized_workgroup_arrays_need_no_capability() {
    // Tile sizes are `override` constants; a workgroup array sized by one validates with
    // `Capabilities::default()` (naga checks the size once the pipeline resolves it).
    let src = "override TILE: u32 = 16u;
        var<workgroup> tile: array<f32, TILE>;
        @group(0) @binding(0) var<storage, read_write> out: array<f32>;
        @compute @workgroup_size(TILE)
        fn main(@builtin(local_invocation_index) i: u32) {
            tile[i] = f32(i);
            workgroupBarrier();
            out[i] = tile[TILE - 1u - i];
        }";
    validate("override-sized", src).unwrap_or_else(|e| panic!("{e}"));
}

/// SPIR-V capabilities wgpu-hal 30's Vulkan backend allows a device with `SHADER_F16` and
/// `EXPERIMENTAL_COOPERATIVE_MATRIX` (its always-available set plus what those two add), so a
/// shader needing anything else fails here as it would in `create_shader_module`.
fn vulkan_capabilities() -> naga::FastHashSet<naga::back::spv::Capability> {
    use naga::back::spv::Capability as C;
    [
        C::Shader,
        C::Matrix,
        C::Sampled1D,
        C::Image1D,
        C::ImageQuery,
        C::DerivativeControl,
        C::StorageImageExtendedFormats,
        C::Float16,
        C::CooperativeMatrixKHR,
        C::VulkanMemoryModel,
    ]
    .into_iter()
    .collect()
}

/// `matmul_coop.wgsl` for every operand major, through naga's SPIR-V back end with the options
/// wgpu-hal uses on a Vulkan 1.3 device: no CI adapter offers cooperative matrices, so this is
/// the only check that the kernel compiles for Vulkan at all.
#[test]
fn coop_matmul_compiles_to_spirv() {
    use naga::back::spv;
    let body = std::fs::read_to_string(shader_dir().join("matmul_coop.wgsl")).unwrap();
    let source = wgml::gpu::shader_source(&body);
    assert!(
        source.starts_with("enable f16;\nenable wgpu_cooperative_matrix;\n"),
        "directives not hoisted:\n{}",
        &source[..200]
    );
    let (module, info) =
        validate_info("matmul_coop.wgsl", &source).unwrap_or_else(|e| panic!("{e}"));
    let options = spv::Options {
        lang_version: (1, 6),
        capabilities: Some(vulkan_capabilities()),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Restrict,
            image_load: naga::proc::BoundsCheckPolicy::Restrict,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::Polyfill,
        force_loop_bounding: true,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "matmul_coop".into(),
    };
    for (wg, trans_a, trans_b) in [
        (32.0, 0.0, 0.0),
        (32.0, 1.0, 0.0),
        (64.0, 0.0, 1.0),
        (32.0, 1.0, 1.0),
    ] {
        let constants: naga::back::PipelineConstants = [
            ("WG".to_string(), wg),
            ("TRANS_A".to_string(), trans_a),
            ("TRANS_B".to_string(), trans_b),
        ]
        .into_iter()
        .collect();
        let (resolved, resolved_info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, "matmul_coop")),
            &constants,
        )
        .unwrap_or_else(|e| panic!("overrides {constants:?}: {e}"));
        let words = spv::write_vec(&resolved, &resolved_info, &options, Some(&pipeline))
            .unwrap_or_else(|e| panic!("SPIR-V for {constants:?}: {e}"));
        assert_eq!(words[0], 0x0723_0203, "SPIR-V magic");
        // Walk the instructions (word count in the high half, opcode in the low half): the
        // product must be on cooperative matrices, not lowered to something else.
        const OP_COOP_MUL_ADD: u32 = 4459;
        let (mut at, mut mul_adds) = (5, 0);
        while at < words.len() {
            let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
            mul_adds += (op == OP_COOP_MUL_ADD) as usize;
            at += count.max(1);
        }
        assert_eq!(
            mul_adds, 4,
            "OpCooperativeMatrixMulAddKHR count for {constants:?}"
        );
    }
}

#[test]
fn coop_matmul_needs_its_capabilities() {
    // Not vacuous: without the capabilities its directives ask for, naga rejects the file.
    let body = std::fs::read_to_string(shader_dir().join("matmul_coop.wgsl")).unwrap();
    let source = wgml::gpu::shader_source(&body);
    let module = naga::front::wgsl::parse_str(&source).unwrap();
    for caps in [
        Capabilities::default(),
        Capabilities::SHADER_FLOAT16,
        Capabilities::COOPERATIVE_MATRIX,
    ] {
        assert!(
            Validator::new(ValidationFlags::all(), caps)
                .validate(&module)
                .is_err(),
            "validated with only {caps:?}"
        );
    }
}

/// Every `@compute` entry point of every shader file is in `gpu::variants`, the list the
/// browser tests compile under Tint; a new kernel cannot slip past that check.
#[test]
fn every_entry_point_is_in_the_variant_list() {
    let listed = wgml::gpu::variants::listed_entry_points();
    let mut missing = Vec::new();
    for path in shader_files() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "common" {
            continue;
        }
        let body = std::fs::read_to_string(&path).unwrap();
        let module = validate(&name, &wgml::gpu::shader_source(&body)).unwrap();
        for ep in &module.entry_points {
            if !listed.iter().any(|(s, e)| *s == name && *e == ep.name) {
                missing.push(format!("{name}::{}", ep.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "entry points missing from gpu::variants::all: {missing:?}"
    );
}

/// Every pipeline the launchers can build compiles on this machine's adapter (naga, then the
/// driver), the same list `tests/web.rs` compiles with Tint in Chromium.
#[test]
fn every_listed_pipeline_builds_on_the_adapter() {
    let Some(wgml::Device::Gpu(ctx)) = common::gpu() else {
        return;
    };
    let results = pollster::block_on(wgml::gpu::variants::check_all(&ctx));
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, c)| match c {
            wgml::gpu::variants::Checked::Failed(e) => Some(format!("{name}: {e}")),
            _ => None,
        })
        .collect();
    let built = results
        .iter()
        .filter(|(_, c)| matches!(c, wgml::gpu::variants::Checked::Ok))
        .count();
    eprintln!(
        "{built} of {} pipelines built on {}",
        results.len(),
        ctx.name()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(built > 200, "only {built} pipelines built");
}
