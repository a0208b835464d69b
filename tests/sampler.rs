//! `DistributedSampler`: each rank's shard of every epoch's shuffled order.

use wgml::data::sampler::DistributedSampler;
use wgml::data::shuffled_batches;

fn shards(len: usize, world: usize, drop_last: bool, epoch: u64) -> Vec<Vec<usize>> {
    (0..world)
        .map(|r| {
            let mut s = DistributedSampler::new(len, world, r)
                .unwrap()
                .seed(5)
                .drop_last(drop_last);
            s.set_epoch(epoch);
            s.indices()
        })
        .collect()
}

#[test]
fn shards_cover_the_epoch_once_and_never_overlap() {
    for len in [0usize, 1, 2, 7, 10, 101] {
        for world in [1usize, 2, 3, 4] {
            for drop_last in [false, true] {
                let s = shards(len, world, drop_last, 0);
                let per = s[0].len();
                assert!(s.iter().all(|x| x.len() == per), "equal shards");
                let mut all: Vec<usize> = s.concat();
                all.sort_unstable();
                let mut distinct = all.clone();
                distinct.dedup();
                if drop_last {
                    assert_eq!(per, len / world);
                    // Cut, never repeated.
                    assert_eq!(distinct.len(), all.len(), "len {len} world {world}");
                } else {
                    assert_eq!(per, len.div_ceil(world));
                    // Every index at least once; only the padding repeats.
                    assert_eq!(
                        distinct,
                        (0..len).collect::<Vec<_>>(),
                        "len {len} world {world}"
                    );
                    assert_eq!(all.len() - distinct.len(), per * world - len);
                }
            }
        }
    }
}

#[test]
fn kth_batches_of_all_ranks_are_the_kth_global_batch() {
    // Per-rank batch 4 on 3 ranks = global batch 12 of the single-process order.
    let (len, world, b) = (120, 3, 4);
    for epoch in 0..3 {
        let global = shuffled_batches(len, b * world, 5 + epoch);
        let per_rank: Vec<Vec<Vec<usize>>> = (0..world)
            .map(|r| {
                let mut s = DistributedSampler::new(len, world, r).unwrap().seed(5);
                s.set_epoch(epoch);
                s.batches(b)
            })
            .collect();
        for (k, g) in global.iter().enumerate() {
            let mut union: Vec<usize> = per_rank.iter().flat_map(|p| p[k].clone()).collect();
            union.sort_unstable();
            let mut want = g.clone();
            want.sort_unstable();
            assert_eq!(union, want, "epoch {epoch} batch {k}");
        }
    }
}

#[test]
fn epochs_reshuffle_and_unshuffled_is_in_order() {
    assert_ne!(shards(50, 2, false, 0), shards(50, 2, false, 1));
    let s = DistributedSampler::new(5, 2, 1).unwrap().shuffle(false);
    assert_eq!(s.indices(), vec![1, 3, 0]);
    assert!(DistributedSampler::new(5, 2, 2).is_err());
    assert!(DistributedSampler::new(5, 0, 0).is_err());
}
