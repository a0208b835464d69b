//! Lists the GPU adapters wgml can use (backend, type, limits, features) and the device
//! `Device::best()` picks here.
//!
//! `cargo run --release --example device_info`

use wgml::Device;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let adapters = wgml::gpu::adapters();
    if adapters.is_empty() {
        println!("no GPU adapter found (on Linux, install mesa-vulkan-drivers for lavapipe)");
    }
    for a in &adapters {
        let i = &a.info;
        let l = &a.limits;
        println!("gpu:{}  {}", a.index, i.name);
        println!(
            "    backend {:?}, type {:?}, driver {} {}",
            i.backend, i.device_type, i.driver, i.driver_info
        );
        println!(
            "    max buffer {} MiB, max storage binding {} MiB, storage buffers/stage {}",
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_storage_buffers_per_shader_stage
        );
        println!(
            "    workgroup: max invocations {}, size {}x{}x{}, shared memory {} KiB, groups/dim {}",
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_workgroups_per_dimension
        );
        println!("    features {:?}", a.features);
    }
    println!("Device::best() -> {}", Device::best().name());
}
