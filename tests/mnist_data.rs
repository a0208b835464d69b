//! The MNIST IDX reader on the shipped files and on corrupt input; seeded batching.

use wgml::data::{mnist, shuffled_batches};
use wgml::Device;

#[test]
fn shipped_mnist_loads_with_canonical_counts() {
    let m = mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!((m.train.rows, m.train.cols), (28, 28));
    let mut counts = [0usize; 10];
    for &l in &m.train.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert!(m.train.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let (x, y) = m.test.batch(&[0, 1, 2], &Device::cpu()).unwrap();
    assert_eq!(x.dims(), &[3, 784]);
    assert_eq!(y.to_vec_u32().unwrap(), vec![7, 2, 1]);
}

#[test]
fn corrupt_idx_is_an_error() {
    assert!(mnist::parse_images(&[0, 0, 8, 3], "x").is_err());
    let mut hdr = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    hdr.extend([0u8; 7]);
    let err = mnist::parse_images(&hdr, "imgs").unwrap_err().to_string();
    assert!(
        err.contains("imgs") && err.contains("2 images of 2x2"),
        "{err}"
    );
    let err = mnist::parse_labels(&[0, 0, 8, 3, 0, 0, 0, 1, 5], "lbl")
        .unwrap_err()
        .to_string();
    assert!(err.contains("2049"), "{err}");
    assert!(mnist::load("/nonexistent").is_err());
}

#[test]
fn batches_are_seeded_and_cover_everything() {
    let a = shuffled_batches(10, 3, 1);
    assert_eq!(a, shuffled_batches(10, 3, 1));
    assert_ne!(a, shuffled_batches(10, 3, 2));
    assert_eq!(a.iter().map(|b| b.len()).collect::<Vec<_>>(), [3, 3, 3, 1]);
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
}
