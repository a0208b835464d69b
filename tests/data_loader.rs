//! `DataLoader` and the data sets: every example once per epoch (with and without drop_last),
//! seeded and reproducible orders, background prefetch identical to inline loading, shards
//! that never overlap, and errors for bad input.

use std::collections::HashSet;
use wgml::data::mnist::Split;
use wgml::data::{
    shuffled_batches, Batch, CharWindows, DataLoader, Dataset, HostData, HostTensor, MnistDataset,
    Sampler, SequentialSampler, TensorDataset,
};
use wgml::{Device, Result, Tensor};

/// Example `i` has input `[i, -i]` and target `i`, so a batch names its examples.
fn numbered(n: usize) -> TensorDataset {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let y: Vec<u32> = (0..n as u32).collect();
    TensorDataset::from_host(
        HostTensor::f32(x, [n, 2]).unwrap(),
        HostTensor::u32(y, [n]).unwrap(),
    )
    .unwrap()
}

fn ids(b: &Batch) -> Vec<usize> {
    match b.targets.data() {
        HostData::U32(v) => v.iter().map(|&i| i as usize).collect(),
        HostData::F32(_) => panic!("targets are ids"),
    }
}

fn epoch_ids(loader: &DataLoader, epoch: usize) -> Vec<Vec<usize>> {
    loader
        .epoch(epoch)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            // Inputs travel with their targets.
            let HostData::F32(x) = b.inputs.data() else {
                panic!("inputs are f32")
            };
            for (row, &i) in x.chunks(2).zip(&ids(&b)) {
                assert_eq!(row, [i as f32, -(i as f32)]);
            }
            ids(&b)
        })
        .collect()
}

#[test]
fn every_example_once_per_epoch_keeping_the_last_batch() {
    for (n, bs) in [(103, 10), (100, 10), (7, 16), (1, 1)] {
        let loader = DataLoader::new(numbered(n), bs).unwrap();
        assert_eq!(loader.len(), n.div_ceil(bs));
        for epoch in 0..3 {
            let batches = epoch_ids(&loader, epoch);
            assert_eq!(batches.len(), loader.len());
            assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == bs));
            let mut all: Vec<usize> = batches.concat();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..n).collect::<Vec<_>>(),
                "n {n} batch {bs} epoch {epoch}"
            );
        }
    }
}

#[test]
fn drop_last_drops_only_the_partial_batch() {
    for (n, bs) in [(103, 10), (100, 10), (7, 16)] {
        let loader = DataLoader::new(numbered(n), bs).unwrap().drop_last(true);
        assert_eq!(loader.len(), n / bs);
        for epoch in 0..3 {
            let batches = epoch_ids(&loader, epoch);
            assert_eq!(batches.len(), n / bs);
            assert!(batches.iter().all(|b| b.len() == bs));
            let all: Vec<usize> = batches.concat();
            let distinct: HashSet<usize> = all.iter().copied().collect();
            assert_eq!(distinct.len(), all.len(), "an example came twice");
            assert_eq!(all.len(), n - n % bs);
        }
    }
}

#[test]
fn orders_are_seeded_reproducible_and_new_each_epoch() {
    let loader = DataLoader::new(numbered(50), 8).unwrap();
    let e0 = epoch_ids(&loader, 0);
    assert_eq!(e0, epoch_ids(&loader, 0), "the same epoch twice differs");
    assert_ne!(e0, epoch_ids(&loader, 1), "every epoch has the same order");
    // The default order is data::shuffled_batches with seed 0 + epoch (the examples' old loop).
    assert_eq!(e0, shuffled_batches(50, 8, 0));
    assert_eq!(epoch_ids(&loader, 3), shuffled_batches(50, 8, 3));
    let other = DataLoader::new(numbered(50), 8).unwrap().seed(11);
    assert_ne!(epoch_ids(&other, 0), e0);
    let sequential = DataLoader::new(numbered(50), 8).unwrap().shuffle(false);
    assert_eq!(
        epoch_ids(&sequential, 4).concat(),
        (0..50).collect::<Vec<_>>()
    );
}

#[test]
fn background_prefetch_gives_the_same_batches_as_inline_loading() {
    let threaded = DataLoader::new(numbered(64), 5).unwrap().prefetch(3);
    let inline = DataLoader::new(numbered(64), 5).unwrap().prefetch(0);
    for epoch in 0..2 {
        let a: Vec<Batch> = threaded.epoch(epoch).unwrap().map(|b| b.unwrap()).collect();
        let b: Vec<Batch> = inline.epoch(epoch).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(a, b);
    }
    // Abandoning an epoch early stops the producer (the drop joins it; no hang).
    let mut it = threaded.epoch(0).unwrap();
    assert_eq!(it.len(), 13);
    assert!(it.next().unwrap().is_ok());
    drop(it);
}

/// A rank/world split of a seeded order, as a distributed sampler would do it.
struct Shard {
    rank: usize,
    world: usize,
}

impl Sampler for Shard {
    fn indices(&self, len: usize, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        wgml::rng::Rng::new(epoch as u64).shuffle(&mut order);
        order
            .into_iter()
            .skip(self.rank)
            .step_by(self.world)
            .collect()
    }
}

#[test]
fn shards_cover_the_data_without_overlap() {
    let n = 37;
    for world in [1, 2, 3, 4] {
        for epoch in 0..2 {
            let mut seen = Vec::new();
            for rank in 0..world {
                let loader = DataLoader::new(numbered(n), 4)
                    .unwrap()
                    .sampler(Shard { rank, world });
                seen.extend(epoch_ids(&loader, epoch).concat());
            }
            let distinct: HashSet<usize> = seen.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                seen.len(),
                "world {world}: an example in two shards"
            );
            assert_eq!(distinct.len(), n, "world {world}: an example in no shard");
        }
    }
}

/// A sampler that names an example the data set does not have.
struct Broken;

impl Sampler for Broken {
    fn indices(&self, len: usize, _: usize) -> Vec<usize> {
        vec![len]
    }
}

#[test]
fn bad_input_is_an_error_naming_what() {
    let msg = |r: Result<DataLoader>| r.err().unwrap().to_string();
    assert!(msg(DataLoader::new(numbered(4), 0)).contains("batch_size"));
    let e = DataLoader::new(numbered(4), 2)
        .unwrap()
        .sampler(Broken)
        .epoch(0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sampler") && e.contains('4'), "{e}");
    let e = numbered(4).get_batch(&[1, 9]).unwrap_err().to_string();
    assert!(e.contains("TensorDataset") && e.contains('9'), "{e}");
    for f in [0.0, 1.0, -0.5, f64::NAN, 0.01] {
        assert!(
            DataLoader::new(numbered(4), 2).unwrap().split(f).is_err(),
            "{f}"
        );
    }
    assert!(HostTensor::f32(vec![1.0; 5], [2, 3]).is_err());
    assert!(HostTensor::u32(vec![1; 3], Vec::<usize>::new()).is_err());
    let rows = TensorDataset::from_host(
        HostTensor::f32(vec![0.0; 6], [3, 2]).unwrap(),
        HostTensor::u32(vec![0; 2], [2]).unwrap(),
    );
    assert!(rows.unwrap_err().to_string().contains("TensorDataset"));
    assert!(CharWindows::new(vec![1, 2, 3], 3, 1).is_err());
    assert!(CharWindows::new(vec![1, 2, 3], 0, 1).is_err());
}

#[test]
fn validation_split_takes_the_last_examples() {
    let loader = DataLoader::new(numbered(20), 4).unwrap();
    let (train, valid) = loader.split(0.25).unwrap();
    assert_eq!(epoch_ids(&valid, 0).concat(), (15..20).collect::<Vec<_>>());
    let mut rest = epoch_ids(&train, 0).concat();
    rest.sort_unstable();
    assert_eq!(rest, (0..15).collect::<Vec<_>>());
}

#[test]
fn tensor_dataset_from_device_tensors() {
    let dev = Device::cpu();
    let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), [4, 3], &dev).unwrap();
    let y = Tensor::from_indices(&[7, 8, 9, 10], [4], &dev).unwrap();
    let ds = TensorDataset::new(&x, &y).unwrap();
    assert_eq!(ds.len(), 4);
    let b = ds.get_batch(&[2, 0]).unwrap();
    assert_eq!(b.inputs.dims(), &[2, 3]);
    assert_eq!(
        b.inputs.data(),
        &HostData::F32(vec![6.0, 7.0, 8.0, 0.0, 1.0, 2.0])
    );
    assert_eq!(b.targets.data(), &HostData::U32(vec![9, 7]));
    let (tx, ty) = b.to_device(&dev).unwrap();
    assert_eq!(tx.to_vec().unwrap(), [6.0, 7.0, 8.0, 0.0, 1.0, 2.0]);
    assert_eq!(ty.to_vec_u32().unwrap(), [9, 7]);
}

#[test]
fn mnist_dataset_shapes_and_standardises() {
    let split = Split {
        images: (0..3 * 4).map(|v| v as f32 / 12.0).collect(),
        labels: vec![3, 1, 4],
        rows: 2,
        cols: 2,
    };
    let ds = MnistDataset::new(split)
        .with_shape(&[1, 2, 2])
        .unwrap()
        .standardised(0.5, 0.25)
        .unwrap();
    let b = ds.get_batch(&[2, 1]).unwrap();
    assert_eq!(b.inputs.dims(), &[2, 1, 2, 2]);
    let HostData::F32(x) = b.inputs.data() else {
        panic!()
    };
    let want: Vec<f32> = [8, 9, 10, 11, 4, 5, 6, 7]
        .iter()
        .map(|&v| (v as f32 / 12.0 - 0.5) / 0.25)
        .collect();
    for (g, w) in x.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{x:?} vs {want:?}");
    }
    assert_eq!(b.targets.data(), &HostData::U32(vec![4, 1]));
    assert!(ds.get_batch(&[3]).is_err());
    let split = Split {
        images: vec![0.0; 4],
        labels: vec![0],
        rows: 2,
        cols: 2,
    };
    assert!(MnistDataset::new(split).with_shape(&[1, 3, 2]).is_err());
}

#[test]
fn char_windows_are_inputs_and_next_characters() {
    let ids: Vec<u32> = (0..10).collect();
    let ds = CharWindows::new(ids.clone(), 3, 3).unwrap();
    // Starts 0, 3, 6 (the window at 6 needs ids up to 9).
    assert_eq!(ds.len(), 3);
    let b = ds.get_batch(&[2, 0]).unwrap();
    assert_eq!(b.inputs.data(), &HostData::U32(vec![6, 7, 8, 0, 1, 2]));
    assert_eq!(b.targets.data(), &HostData::U32(vec![7, 8, 9, 1, 2, 3]));
    let overlapping = CharWindows::new(ids, 3, 1).unwrap();
    assert_eq!(overlapping.len(), 7);
    assert!(overlapping.get_batch(&[7]).is_err());
    // The corpus's validation windows are CharCorpus::valid_windows.
    let corpus = wgml::data::text::CharCorpus::from_text("hello world, hello wgml", 0.5).unwrap();
    let valid = CharWindows::valid(&corpus, 4).unwrap();
    let all: Vec<usize> = (0..valid.len()).collect();
    let b = valid.get_batch(&all).unwrap();
    let (x, y) = corpus.valid_windows(4);
    assert_eq!(b.inputs.data(), &HostData::U32(x));
    assert_eq!(b.targets.data(), &HostData::U32(y));
    let _ = SequentialSampler;
}
