//! `Sequential::summary`: per-layer output shapes and parameter counts (the Keras MNIST CNN's
//! known figures), trainable and non-trainable totals, the printed table, bad input.

use wgml::nn::{summary_of, Conv2d, Flatten, Linear, MaxPool2d, Module, Relu, Sequential};
use wgml::rng::Rng;
use wgml::{Conv2dConfig, Device, Result, Tensor};

fn cnn(dev: &Device) -> Sequential {
    let mut rng = Rng::new(0);
    let c = Conv2dConfig::default();
    Sequential::new()
        .add(Conv2d::new(1, 32, [3, 3], c, &mut rng, dev).unwrap())
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 64, [3, 3], c, &mut rng, dev).unwrap())
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Flatten)
        .add(Linear::new(1600, 128, true, &mut rng, dev).unwrap())
        .add(Relu)
        .add(Linear::new(128, 10, true, &mut rng, dev).unwrap())
}

#[test]
fn the_keras_cnn_has_keras_figures() {
    let s = cnn(&Device::cpu()).summary(&[1, 28, 28]).unwrap();
    let rows: Vec<(&str, &[usize], usize)> = s
        .rows
        .iter()
        .map(|r| (r.kind.as_str(), r.output.as_slice(), r.params))
        .collect();
    let want: [(&str, &[usize], usize); 10] = [
        ("Conv2d", &[1, 32, 26, 26], 320),
        ("Relu", &[1, 32, 26, 26], 0),
        ("MaxPool2d", &[1, 32, 13, 13], 0),
        ("Conv2d", &[1, 64, 11, 11], 18_496),
        ("Relu", &[1, 64, 11, 11], 0),
        ("MaxPool2d", &[1, 64, 5, 5], 0),
        ("Flatten", &[1, 1600], 0),
        ("Linear", &[1, 128], 204_928),
        ("Relu", &[1, 128], 0),
        ("Linear", &[1, 10], 1_290),
    ];
    assert_eq!(rows, want);
    // Keras reports 225,034 parameters for this model.
    assert_eq!(s.total_params(), 225_034);
    assert_eq!(s.trainable_params(), 225_034);
    assert_eq!(s.non_trainable_params(), 0);
    let table = s.to_string();
    for line in [
        "Layer (type)",
        "Output Shape",
        "Param #",
        "3 (Conv2d)",
        "[1, 64, 11, 11]",
        "204,928",
        "Total params: 225,034",
        "Trainable params: 225,034",
        "Non-trainable params: 0",
    ] {
        assert!(table.contains(line), "{line:?} missing from\n{table}");
    }
}

/// A layer with a frozen (non-trainable) scale.
struct Frozen {
    scale: Tensor,
}

impl Module for Frozen {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.mul(&self.scale)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("scale".into(), self.scale.clone())]
    }
}

#[test]
fn frozen_parameters_count_as_non_trainable() {
    let dev = Device::cpu();
    let mut rng = Rng::new(0);
    let frozen = Frozen {
        scale: Tensor::ones([4], &dev).unwrap(),
    };
    let model = Sequential::new()
        .add(Linear::new(3, 4, false, &mut rng, &dev).unwrap())
        .add(frozen);
    let s = model.summary(&[3]).unwrap();
    assert_eq!(s.rows[1].kind, "Frozen");
    assert_eq!(s.total_params(), 16);
    assert_eq!(s.trainable_params(), 12);
    assert_eq!(s.non_trainable_params(), 4);
    // One row for a whole module.
    let one = summary_of(&model, &Tensor::zeros([5, 3], &dev).unwrap()).unwrap();
    assert_eq!(one.rows.len(), 1);
    assert_eq!(one.rows[0].output, [5, 4]);
    assert_eq!(one.rows[0].kind, "Sequential");
}

#[test]
fn an_input_the_model_cannot_take_is_an_error() {
    let e = cnn(&Device::cpu())
        .summary(&[1, 28])
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("conv"), "{e}");
}
