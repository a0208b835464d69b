//! Checkpoints: round trip of parameters and optimizer state, atomic replacement, and clear
//! errors for corrupt files and missing or wrongly shaped tensors.

mod common;

use wgml::nn::{Linear, Module};
use wgml::optim::{Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{checkpoint, Device, Gradients, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgml-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn round_trip_parameters_and_optimizer_state() {
    let dev = Device::cpu();
    let mut rng = Rng::new(0);
    let model = Linear::new(4, 3, true, &mut rng, &dev).unwrap();
    let mut opt = Adam::new(model.parameters(), 0.01);
    let mut g = Gradients::default();
    for (_, p) in model.parameters() {
        g.insert(&p, p.ones_like().unwrap());
    }
    opt.step(&g).unwrap();
    let path = tmp("model.safetensors");
    let mut all = model.parameters();
    all.extend(opt.state());
    checkpoint::save(&path, &all).unwrap();

    let fresh = Linear::new(4, 3, true, &mut Rng::new(9), &dev).unwrap();
    assert_ne!(
        fresh.weight.to_vec().unwrap(),
        model.weight.to_vec().unwrap()
    );
    checkpoint::load_into(&path, &fresh.parameters()).unwrap();
    assert_eq!(
        fresh.weight.to_vec().unwrap(),
        model.weight.to_vec().unwrap()
    );
    assert_eq!(
        fresh.bias.as_ref().unwrap().to_vec().unwrap(),
        model.bias.as_ref().unwrap().to_vec().unwrap()
    );

    let loaded = checkpoint::load(&path, &dev).unwrap();
    let mut opt2 = Adam::new(fresh.parameters(), 0.01);
    opt2.load_state(&loaded).unwrap();
    let names: Vec<String> = opt2.state().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"weight.exp_avg".to_string()) && names.contains(&"step".to_string()),
        "{names:?}"
    );
    // Both optimizers take the same next step.
    opt.step(&g).unwrap();
    let mut g2 = Gradients::default();
    for (_, p) in fresh.parameters() {
        g2.insert(&p, p.ones_like().unwrap());
    }
    opt2.step(&g2).unwrap();
    assert_eq!(
        fresh.weight.to_vec().unwrap(),
        model.weight.to_vec().unwrap()
    );
}

#[test]
fn save_replaces_atomically_and_leaves_no_temp_files() {
    let dev = Device::cpu();
    // A directory of its own: the other tests' saves run in parallel and leave their own
    // temporary files for a moment.
    let dir = tmp("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("atomic.safetensors");
    let a = Tensor::from_vec(vec![1.0, 2.0], [2], &dev).unwrap();
    checkpoint::save(&path, &[("a".into(), a)]).unwrap();
    let b = Tensor::from_vec(vec![3.0, 4.0, 5.0], [3], &dev).unwrap();
    checkpoint::save(&path, &[("a".into(), b)]).unwrap();
    let loaded = checkpoint::load(&path, &dev).unwrap();
    assert_eq!(loaded[0].1.to_vec().unwrap(), vec![3.0, 4.0, 5.0]);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // A save that fails (directory does not exist) leaves nothing behind and reports the path.
    let bad = path
        .parent()
        .unwrap()
        .join("no-such-dir")
        .join("x.safetensors");
    let err =
        checkpoint::save(&bad, &[("a".into(), Tensor::ones([1], &dev).unwrap())]).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[test]
fn corrupt_and_mismatched_files_are_errors() {
    let dev = Device::cpu();
    let path = tmp("corrupt.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let err = checkpoint::load(&path, &dev).unwrap_err().to_string();
    assert!(
        err.contains("corrupt.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    let good = tmp("shapes.safetensors");
    checkpoint::save(&good, &[("w".into(), Tensor::ones([2, 3], &dev).unwrap())]).unwrap();
    // Truncated file.
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    assert!(checkpoint::load(&cut, &dev).is_err());
    // Wrong shape.
    let target = Tensor::zeros([3, 2], &dev).unwrap();
    let err = checkpoint::load_into(&good, &[("w".into(), target.clone())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
    assert_eq!(
        target.to_vec().unwrap(),
        vec![0.0; 6],
        "a failed load must change nothing"
    );
    // Missing tensor.
    let err = checkpoint::load_into(&good, &[("v".into(), target)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing tensor v"), "{err}");
    // Missing file.
    assert!(checkpoint::load(tmp("nope.safetensors"), &dev).is_err());
}

#[test]
fn load_into_gpu_parameters() {
    let Some(gpu) = common::gpu() else { return };
    let path = tmp("gpu.safetensors");
    let src = Tensor::arange(0.0, 6.0, 1.0, &gpu)
        .unwrap()
        .reshape([2, 3])
        .unwrap();
    checkpoint::save(&path, &[("w".into(), src)]).unwrap();
    let dst = Tensor::zeros([2, 3], &gpu).unwrap();
    checkpoint::load_into(&path, &[("w".into(), dst.clone())]).unwrap();
    assert_eq!(dst.to_vec().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}
