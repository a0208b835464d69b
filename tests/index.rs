//! index_select, embedding and gather: GPU vs CPU on awkward shapes, hand-checked values, and the errors.

mod common;

use common::{assert_close, data, gpu, gpu_matches_cpu};
use wgml::rng::Rng;
use wgml::{DType, Device, Error, Tensor};

/// `n` indices below `below`, with repeats (seeded).
fn indices(n: usize, below: usize, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.below(below) as u32).collect()
}

/// Every device to run on: the CPU, and the GPU when there is one.
fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

#[test]
fn index_select_hand_values() {
    for dev in devices() {
        // [[0 1 2 3] [4 5 6 7] [8 9 10 11]]
        let x = Tensor::arange(0.0, 12.0, 1.0, &dev)
            .unwrap()
            .reshape([3, 4])
            .unwrap();
        let i = Tensor::from_indices(&[2, 0, 2], 3, &dev).unwrap();
        let rows = x.index_select(0, &i).unwrap();
        assert_eq!(rows.dims(), &[3, 4]);
        assert_eq!(
            rows.to_vec().unwrap(),
            [8., 9., 10., 11., 0., 1., 2., 3., 8., 9., 10., 11.],
            "{dev:?}"
        );
        let cols = x.index_select(-1, &i).unwrap();
        assert_eq!(cols.dims(), &[3, 3]);
        assert_eq!(
            cols.to_vec().unwrap(),
            [2., 0., 2., 6., 4., 6., 10., 8., 10.],
            "{dev:?}"
        );
        // No indices: an empty result of the right shape.
        let none = Tensor::from_indices(&[], 0, &dev).unwrap();
        let empty = x.index_select(1, &none).unwrap();
        assert_eq!(empty.dims(), &[3, 0]);
        assert!(empty.to_vec().unwrap().is_empty());
    }
}

#[test]
fn index_select_matches_cpu_on_awkward_rows() {
    for rows in [1usize, 3, 17, 127, 129, 1000] {
        let cols = 5;
        let k = rows.min(300) + 7; // more indices than rows when rows are few: repeats
        let idx = indices(k, rows, rows as u64);
        for dim in [0isize, -2] {
            gpu_matches_cpu(
                &format!("index_select [{rows},{cols}] dim {dim}"),
                0.0,
                0.0,
                |d| {
                    let x = Tensor::from_vec(data(rows * cols, 1), [rows, cols], d)?;
                    x.index_select(dim, &Tensor::from_indices(&idx, k, d)?)
                },
            );
        }
        // The indexed dimension last (dim 1 / -1), and in the middle of three.
        let idx = indices(k, rows, rows as u64 + 1);
        for dim in [1isize, -1] {
            gpu_matches_cpu(
                &format!("index_select [3,{rows}] dim {dim}"),
                0.0,
                0.0,
                |d| {
                    let x = Tensor::from_vec(data(3 * rows, 2), [3, rows], d)?;
                    x.index_select(dim, &Tensor::from_indices(&idx, k, d)?)
                },
            );
        }
        gpu_matches_cpu(&format!("index_select [2,{rows},3] dim 1"), 0.0, 0.0, |d| {
            let x = Tensor::from_vec(data(6 * rows, 3), [2, rows, 3], d)?;
            x.index_select(1, &Tensor::from_indices(&idx, k, d)?)
        });
    }
}

#[test]
fn index_select_matches_cpu_on_views() {
    let idx = [4u32, 0, 6, 6, 2, 1, 4];
    // Transposed source (non-contiguous), both dims.
    for dim in [0isize, 1] {
        gpu_matches_cpu(
            &format!("index_select of a transpose, dim {dim}"),
            0.0,
            0.0,
            |d| {
                let x = Tensor::from_vec(data(7 * 9, 4), [9, 7], d)?.t()?;
                assert!(!x.is_contiguous());
                x.index_select(dim, &Tensor::from_indices(&idx, 7, d)?)
            },
        );
    }
    // A narrowed source (offset, row stride larger than the row), a permuted 3-D source, and a
    // broadcast (stride 0) source.
    gpu_matches_cpu("index_select of a narrow", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(10 * 12, 5), [10, 12], d)?
            .narrow(1, 3, 7)?
            .narrow(0, 1, 8)?;
        x.index_select(1, &Tensor::from_indices(&idx, 7, d)?)
    });
    gpu_matches_cpu("index_select of a permute", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(4 * 7 * 3, 6), [4, 7, 3], d)?.permute(&[2, 1, 0])?;
        x.index_select(1, &Tensor::from_indices(&idx, 7, d)?)
    });
    gpu_matches_cpu("index_select of a broadcast", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(7, 7), [7, 1], d)?.broadcast_to([7, 5])?;
        x.index_select(0, &Tensor::from_indices(&idx, 7, d)?)
    });
    // Indices that are themselves views: narrowed (offset) and broadcast (stride 0).
    gpu_matches_cpu("index_select with narrowed indices", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(7 * 3, 8), [7, 3], d)?;
        x.index_select(0, &Tensor::from_indices(&idx, 7, d)?.narrow(0, 2, 4)?)
    });
    gpu_matches_cpu("index_select with broadcast indices", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(7 * 3, 9), [7, 3], d)?;
        let i = Tensor::from_indices(&[5], 1, d)?.broadcast_to([6])?;
        x.index_select(0, &i)
    });
}

#[test]
fn index_select_keeps_u32_words() {
    for dev in devices() {
        let labels = Tensor::from_indices(&[7, 0, 4_000_000_000, 3], 4, &dev).unwrap();
        let i = Tensor::from_indices(&[2, 2, 0], 3, &dev).unwrap();
        let out = labels.index_select(0, &i).unwrap();
        assert_eq!(out.dtype(), DType::U32);
        assert_eq!(
            out.to_vec_u32().unwrap(),
            [4_000_000_000, 4_000_000_000, 7],
            "{dev:?}"
        );
    }
}

#[test]
fn embedding_looks_up_rows() {
    for dev in devices() {
        // Row r of the table is [10r, 10r + 1].
        let table = Tensor::from_vec(
            (0..5)
                .flat_map(|r| [10.0 * r as f32, 10.0 * r as f32 + 1.0])
                .collect(),
            [5, 2],
            &dev,
        )
        .unwrap();
        let ids = Tensor::from_indices(&[4, 0, 4, 1, 3, 3], [2, 3], &dev).unwrap();
        let e = table.embedding(&ids).unwrap();
        assert_eq!(e.dims(), &[2, 3, 2]);
        assert_eq!(
            e.to_vec().unwrap(),
            [40., 41., 0., 1., 40., 41., 10., 11., 30., 31., 30., 31.],
            "{dev:?}"
        );
        // A rank-0 index gives one row of shape [D].
        let one = table
            .embedding(&Tensor::from_indices(&[2], (), &dev).unwrap())
            .unwrap();
        assert_eq!(one.dims(), &[2]);
        assert_eq!(one.to_vec().unwrap(), [20., 21.]);
        // Transposed (non-contiguous) indices.
        let t = table.embedding(&ids.t().unwrap()).unwrap();
        assert_eq!(t.dims(), &[3, 2, 2]);
        assert_eq!(
            t.to_vec().unwrap(),
            [40., 41., 10., 11., 0., 1., 30., 31., 40., 41., 30., 31.]
        );
    }
}

#[test]
fn embedding_matches_cpu_on_awkward_vocabularies() {
    for vocab in [1usize, 3, 17, 127, 129, 1000] {
        let ids = indices(4 * 33, vocab, vocab as u64);
        gpu_matches_cpu(&format!("embedding V={vocab} D=19"), 0.0, 0.0, |d| {
            let table = Tensor::from_vec(data(vocab * 19, 10), [vocab, 19], d)?;
            table.embedding(&Tensor::from_indices(&ids, [4, 33], d)?)
        });
    }
}

#[test]
fn gather_hand_values() {
    for dev in devices() {
        // torch.gather(x, 1, [[0, 0], [1, 0]]) with x = [[1, 2], [3, 4]] is [[1, 1], [4, 3]].
        let x = Tensor::from_vec(vec![1., 2., 3., 4.], [2, 2], &dev).unwrap();
        let i = Tensor::from_indices(&[0, 0, 1, 0], [2, 2], &dev).unwrap();
        assert_eq!(
            x.gather(1, &i).unwrap().to_vec().unwrap(),
            [1., 1., 4., 3.],
            "{dev:?}"
        );
        // Along dim 0: out[i][j] = x[index[i][j]][j].
        assert_eq!(
            x.gather(0, &i).unwrap().to_vec().unwrap(),
            [1., 2., 3., 2.],
            "{dev:?}"
        );
        // An index smaller than the source on the other dim: picks per-row labels' scores.
        let scores = Tensor::from_vec((0..12).map(|v| v as f32).collect(), [3, 4], &dev).unwrap();
        let labels = Tensor::from_indices(&[3, 0, 2], [3, 1], &dev).unwrap();
        let picked = scores.gather(-1, &labels).unwrap();
        assert_eq!(picked.dims(), &[3, 1]);
        assert_eq!(picked.to_vec().unwrap(), [3., 4., 10.], "{dev:?}");
    }
}

#[test]
fn gather_matches_cpu_on_awkward_shapes() {
    for n in [1usize, 3, 17, 127, 129, 1000] {
        // [n, 6] source; index [n, 4] along dim 1, [min(n,50)+3, 6] along dim 0 (repeats).
        let i1 = indices(n * 4, 6, n as u64);
        gpu_matches_cpu(&format!("gather [{n},6] dim -1"), 0.0, 0.0, |d| {
            let x = Tensor::from_vec(data(n * 6, 11), [n, 6], d)?;
            x.gather(-1, &Tensor::from_indices(&i1, [n, 4], d)?)
        });
        let k = n.min(50) + 3;
        let i0 = indices(k * 6, n, n as u64 + 7);
        gpu_matches_cpu(&format!("gather [{n},6] dim 0"), 0.0, 0.0, |d| {
            let x = Tensor::from_vec(data(n * 6, 12), [n, 6], d)?;
            x.gather(0, &Tensor::from_indices(&i0, [k, 6], d)?)
        });
    }
    // 3-D, every dim, index smaller than the source elsewhere.
    let src = [5usize, 7, 4];
    for dim in 0..3 {
        let mut ishape = [4usize, 3, 2];
        ishape[dim] = 9;
        let idx = indices(ishape.iter().product(), src[dim], dim as u64);
        gpu_matches_cpu(
            &format!("gather [5,7,4] dim {dim} index {ishape:?}"),
            0.0,
            0.0,
            |d| {
                let x = Tensor::from_vec(data(140, 13), src, d)?;
                x.gather(dim as isize, &Tensor::from_indices(&idx, ishape, d)?)
            },
        );
    }
}

#[test]
fn gather_matches_cpu_on_views() {
    // Transposed source and transposed index (both non-contiguous).
    let idx = indices(6 * 5, 8, 3);
    gpu_matches_cpu(
        "gather of a transpose with a transposed index",
        0.0,
        0.0,
        |d| {
            let x = Tensor::from_vec(data(8 * 9, 14), [9, 8], d)?.t()?; // [8, 9]
            let i = Tensor::from_indices(&idx, [5, 6], d)?.t()?; // [6, 5]
            x.gather(0, &i)
        },
    );
    gpu_matches_cpu("gather of a narrow along dim 1", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(data(9 * 12, 15), [9, 12], d)?.narrow(1, 2, 8)?;
        x.gather(1, &Tensor::from_indices(&idx, [5, 6], d)?)
    });
}

#[test]
fn out_of_range_indices_are_errors() {
    // The GPU reports bad indices at the next read-back: see tests/bad_input.rs.
    {
        let dev = Device::cpu();
        let x = Tensor::zeros([4, 3], &dev).unwrap();
        let bad = Tensor::from_indices(&[1, 4, 0], 3, &dev).unwrap();
        let e = x.index_select(0, &bad).unwrap_err();
        assert!(
            matches!(e, Error::IndexOutOfRange { op: "index_select", index: 4, size: 4, ref shape } if shape == &[4, 3]),
            "{dev:?}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("index_select") && msg.contains("[4, 3]"),
            "{msg}"
        );
        // Along dim 1 the same index 3 is out of range too.
        let e = x
            .index_select(1, &Tensor::from_indices(&[3], 1, &dev).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    index: 3,
                    size: 3,
                    ..
                }
            ),
            "{e}"
        );

        let e = x
            .embedding(&Tensor::from_indices(&[0, 9], [1, 2], &dev).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "embedding",
                    index: 9,
                    size: 4,
                    ..
                }
            ),
            "{dev:?}: {e}"
        );
        let e = x
            .gather(1, &Tensor::from_indices(&[0, 3], [2, 1], &dev).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "gather",
                    index: 3,
                    size: 3,
                    ..
                }
            ),
            "{dev:?}: {e}"
        );
        // The device is still usable after a rejected call.
        let ok = x
            .index_select(0, &Tensor::from_indices(&[3], 1, &dev).unwrap())
            .unwrap();
        assert_eq!(ok.to_vec().unwrap(), [0.0; 3]);
    }
}

#[test]
fn bad_arguments_are_errors() {
    for dev in devices() {
        let x = Tensor::zeros([4, 3], &dev).unwrap();
        let i = Tensor::from_indices(&[0, 1], 2, &dev).unwrap();
        // F32 indices.
        let f = Tensor::from_vec(vec![0.0, 1.0], 2, &dev).unwrap();
        assert!(matches!(
            x.index_select(0, &f),
            Err(Error::DType {
                op: "index_select",
                ..
            })
        ));
        assert!(matches!(
            x.gather(0, &f.reshape([2, 1]).unwrap()),
            Err(Error::DType { .. })
        ));
        assert!(matches!(
            x.embedding(&f),
            Err(Error::DType {
                op: "embedding",
                ..
            })
        ));
        // Dims out of range.
        assert!(matches!(
            x.index_select(2, &i),
            Err(Error::DimOutOfRange { dim: 2, .. })
        ));
        assert!(matches!(
            x.index_select(-3, &i),
            Err(Error::DimOutOfRange { .. })
        ));
        assert!(matches!(
            x.gather(5, &i.reshape([2, 1]).unwrap()),
            Err(Error::DimOutOfRange { .. })
        ));
        // index_select needs 1-D indices; embedding a 2-D table; gather an index of the same
        // rank that fits the source on the other dims.
        let e = x.index_select(0, &i.reshape([1, 2]).unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("index_select") && e.to_string().contains("[1, 2]"),
            "{e}"
        );
        let e = x.reshape([12]).unwrap().embedding(&i).unwrap_err();
        assert!(
            e.to_string().contains("embedding") && e.to_string().contains("[12]"),
            "{e}"
        );
        let e = x.gather(0, &i).unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { op: "gather", .. }),
            "{e}"
        );
        let e = x
            .gather(0, &Tensor::from_indices(&[0; 8], [2, 4], &dev).unwrap())
            .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { op: "gather", .. }),
            "{e}"
        );
    }
    // Source and indices on different devices.
    if let Some(g) = gpu() {
        let x = Tensor::zeros([4, 3], &Device::cpu()).unwrap();
        let i = Tensor::from_indices(&[0], 1, &g).unwrap();
        let e = x.index_select(0, &i).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DeviceMismatch {
                    op: "index_select",
                    ..
                }
            ),
            "{e}"
        );
        let e = x
            .to_device(&g)
            .unwrap()
            .index_select(0, &i.to_device(&Device::cpu()).unwrap());
        assert!(matches!(e, Err(Error::DeviceMismatch { .. })));
    }
}

#[test]
fn index_select_large_gpu_grid() {
    // More than 65,535 workgroups of 256: the folded 2-D grid (a sample of values checked).
    let Some(g) = gpu() else { return };
    let rows = 65_600usize;
    let cols = 256;
    let x = Tensor::arange(0.0, (rows * cols) as f32, 1.0, &g)
        .unwrap()
        .reshape([rows, cols])
        .unwrap();
    let idx: Vec<u32> = (0..rows as u32).rev().collect();
    let out = x
        .index_select(0, &Tensor::from_indices(&idx, rows, &g).unwrap())
        .unwrap();
    let v = out.to_vec().unwrap();
    for r in [0usize, 1, 65_535, 65_536, rows - 1] {
        let src = rows - 1 - r;
        let want: Vec<f32> = (0..cols).map(|c| (src * cols + c) as f32).collect();
        assert_close(
            &v[r * cols..(r + 1) * cols],
            &want,
            0.0,
            0.0,
            &format!("row {r}"),
        );
    }
}
