//! Elementwise ops: the CPU reference against hand values, GPU against CPU on awkward, strided and broadcast shapes, random broadcast pairs, and a grid large enough to fold.

mod common;

use common::{assert_close, data, gpu, gpu_matches_cpu};
use proptest::prelude::*;
use wgml::{DType, Device, Result, Tensor};

/// Sizes that are not multiples of the workgroup (256) nor of each other.
const SIZES: [usize; 6] = [1, 3, 17, 127, 129, 1000];

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

type UnaryFn = fn(&Tensor) -> Result<Tensor>;
type BinaryFn = fn(&Tensor, &Tensor) -> Result<Tensor>;
type ScalarFn = fn(f32, f32) -> f32;

/// Every unary op of the public API, by name, with the GPU-vs-CPU tolerance (atol, rtol).
fn unary_ops() -> Vec<(&'static str, f32, f32, UnaryFn)> {
    vec![
        ("neg", 0.0, 0.0, |x| x.neg()),
        ("abs", 0.0, 0.0, |x| x.abs()),
        ("exp", 1e-6, 1e-5, |x| x.exp()),
        ("log", 1e-6, 1e-5, |x| x.abs()?.add_scalar(0.01)?.log()),
        ("sqrt", 1e-6, 1e-5, |x| x.abs()?.sqrt()),
        ("relu", 0.0, 0.0, |x| x.relu()),
        ("sigmoid", 1e-6, 1e-5, |x| x.sigmoid()),
        ("tanh", 1e-6, 1e-5, |x| x.tanh()),
        ("gelu", 1e-6, 1e-5, |x| x.gelu()),
        ("recip", 1e-6, 1e-5, |x| x.recip()),
        ("affine", 1e-6, 1e-6, |x| x.affine(-1.5, 0.25)),
        ("add_scalar", 1e-6, 1e-6, |x| x.add_scalar(3.5)),
        ("sub_scalar", 1e-6, 1e-6, |x| x.sub_scalar(0.75)),
        ("mul_scalar", 1e-6, 1e-6, |x| x.mul_scalar(-2.0)),
        ("div_scalar", 1e-6, 1e-6, |x| x.div_scalar(3.0)),
        ("powf 2", 1e-5, 1e-4, |x| x.powf(2.0)),
        ("powf 3 (negative bases)", 1e-5, 1e-4, |x| x.powf(3.0)),
        ("powf -1", 1e-5, 1e-4, |x| x.powf(-1.0)),
        ("powf -2", 1e-5, 1e-4, |x| x.powf(-2.0)),
        ("powf 0.5 (NaN for negatives)", 1e-5, 1e-4, |x| x.powf(0.5)),
        ("powf -1.5", 1e-5, 1e-4, |x| x.powf(-1.5)),
        ("powf 0", 0.0, 0.0, |x| x.powf(0.0)),
        ("clamp", 0.0, 0.0, |x| x.clamp(-0.5, 1.25)),
        ("eq_scalar", 0.0, 0.0, |x| x.eq_scalar(0.5)),
        ("gt_scalar", 0.0, 0.0, |x| x.gt_scalar(0.5)),
        ("ge_scalar", 0.0, 0.0, |x| x.ge_scalar(0.5)),
        ("lt_scalar", 0.0, 0.0, |x| x.lt_scalar(-0.5)),
        ("le_scalar", 0.0, 0.0, |x| x.le_scalar(-0.5)),
        ("to_dtype u32 and back", 0.0, 0.0, |x| {
            x.mul_scalar(10.0)?
                .to_dtype(DType::U32)?
                .to_dtype(DType::F32)
        }),
    ]
}

/// Every binary op, with the GPU-vs-CPU tolerance.
fn binary_ops() -> Vec<(&'static str, f32, f32, BinaryFn)> {
    vec![
        ("add", 0.0, 0.0, |a, b| a.add(b)),
        ("sub", 0.0, 0.0, |a, b| a.sub(b)),
        ("mul", 0.0, 0.0, |a, b| a.mul(b)),
        ("div", 1e-6, 1e-6, |a, b| a.div(b)),
        ("maximum", 0.0, 0.0, |a, b| a.maximum(b)),
        ("minimum", 0.0, 0.0, |a, b| a.minimum(b)),
        ("eq", 0.0, 0.0, |a, b| a.eq(b)),
        ("ne", 0.0, 0.0, |a, b| a.ne(b)),
        ("lt", 0.0, 0.0, |a, b| a.lt(b)),
        ("le", 0.0, 0.0, |a, b| a.le(b)),
        ("gt", 0.0, 0.0, |a, b| a.gt(b)),
        ("ge", 0.0, 0.0, |a, b| a.ge(b)),
    ]
}

/// Test data on a half-step grid, so comparisons see equal values and `eq_scalar(0.5)` hits.
fn grid_data(n: usize, seed: u64) -> Vec<f32> {
    data(n, seed)
        .into_iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect()
}

// ---------------------------------------------------------------- CPU reference, by hand

#[test]
fn unary_hand_values() {
    for dev in devices() {
        let one = |f: fn(&Tensor) -> Result<Tensor>, x: f32| -> f32 {
            f(&Tensor::from_vec(vec![x], 1, &dev).unwrap())
                .unwrap()
                .to_vec()
                .unwrap()[0]
        };
        let close = |got: f32, want: f32, what: &str| {
            assert!(
                (got - want).abs() <= 2e-7 + 2e-7 * want.abs(),
                "{dev:?} {what}: {got} vs {want}"
            );
        };
        close(one(|x| x.gelu(), 1.0), 0.841_344_7, "gelu(1)");
        close(one(|x| x.gelu(), -1.0), -0.158_655_3, "gelu(-1)");
        close(one(|x| x.gelu(), 0.0), 0.0, "gelu(0)");
        close(one(|x| x.sigmoid(), 0.0), 0.5, "sigmoid(0)");
        close(one(|x| x.sigmoid(), 2.0), 0.880_797_1, "sigmoid(2)");
        close(one(|x| x.sigmoid(), -100.0), 0.0, "sigmoid(-100)");
        close(one(|x| x.tanh(), 0.5), 0.462_117_16, "tanh(0.5)");
        close(one(|x| x.tanh(), 50.0), 1.0, "tanh(50)");
        close(one(|x| x.tanh(), -50.0), -1.0, "tanh(-50)");
        close(one(|x| x.exp(), 1.0), std::f32::consts::E, "exp(1)");
        close(one(|x| x.log(), std::f32::consts::E), 1.0, "log(e)");
        close(one(|x| x.sqrt(), 4.0), 2.0, "sqrt(4)");
        close(one(|x| x.neg(), 3.0), -3.0, "neg(3)");
        close(one(|x| x.abs(), -3.0), 3.0, "abs(-3)");
        close(one(|x| x.relu(), -1.0), 0.0, "relu(-1)");
        close(one(|x| x.relu(), 2.5), 2.5, "relu(2.5)");
        close(one(|x| x.recip(), 4.0), 0.25, "recip(4)");
        close(one(|x| x.affine(2.0, 3.0), 1.0), 5.0, "affine(1; 2, 3)");
        close(one(|x| x.add_scalar(1.5), 1.0), 2.5, "add_scalar");
        close(one(|x| x.sub_scalar(1.5), 1.0), -0.5, "sub_scalar");
        close(one(|x| x.mul_scalar(1.5), 2.0), 3.0, "mul_scalar");
        close(one(|x| x.div_scalar(4.0), 1.0), 0.25, "div_scalar");
        close(one(|x| x.clamp(-1.0, 1.0), 5.0), 1.0, "clamp high");
        close(one(|x| x.clamp(-1.0, 1.0), -5.0), -1.0, "clamp low");
        close(one(|x| x.clamp(-1.0, 1.0), 0.5), 0.5, "clamp inside");
        // pow with C conventions: negative bases for integer exponents only.
        close(one(|x| x.powf(3.0), -2.0), -8.0, "(-2)^3");
        close(one(|x| x.powf(2.0), -2.0), 4.0, "(-2)^2");
        close(one(|x| x.powf(-1.0), -2.0), -0.5, "(-2)^-1");
        close(one(|x| x.powf(-2.0), -2.0), 0.25, "(-2)^-2");
        close(one(|x| x.powf(0.5), 9.0), 3.0, "9^0.5");
        close(one(|x| x.powf(1.5), 4.0), 8.0, "4^1.5");
        close(one(|x| x.powf(0.0), -3.0), 1.0, "(-3)^0");
        close(one(|x| x.powf(0.0), 0.0), 1.0, "0^0");
        close(one(|x| x.powf(2.0), 0.0), 0.0, "0^2");
        assert!(
            one(|x| x.powf(0.5), -4.0).is_nan(),
            "{dev:?}: (-4)^0.5 is NaN"
        );
        assert!(
            one(|x| x.powf(-1.5), -4.0).is_nan(),
            "{dev:?}: (-4)^-1.5 is NaN"
        );
        assert_eq!(one(|x| x.powf(-1.0), 0.0), f32::INFINITY, "{dev:?}: 0^-1");
        assert_eq!(one(|x| x.recip(), 0.0), f32::INFINITY, "{dev:?}: 1/0");
        // Scalar comparisons give 1.0 / 0.0.
        assert_eq!(one(|x| x.eq_scalar(2.0), 2.0), 1.0);
        assert_eq!(one(|x| x.eq_scalar(2.0), 2.5), 0.0);
        assert_eq!(one(|x| x.gt_scalar(2.0), 2.0), 0.0);
        assert_eq!(one(|x| x.ge_scalar(2.0), 2.0), 1.0);
        assert_eq!(one(|x| x.lt_scalar(2.0), 1.0), 1.0);
        assert_eq!(one(|x| x.le_scalar(2.0), 3.0), 0.0);
    }
}

#[test]
fn to_dtype_truncates_and_round_trips() {
    for dev in devices() {
        let x = Tensor::from_vec(
            vec![
                3.7,
                -1.0,
                0.0,
                16_777_216.0,
                5e9,
                0.999,
                f32::NAN,
                f32::INFINITY,
            ],
            8,
            &dev,
        )
        .unwrap();
        let u = x.to_dtype(DType::U32).unwrap();
        assert_eq!(u.dtype(), DType::U32);
        assert_eq!(
            u.to_vec_u32().unwrap(),
            [3, 0, 0, 16_777_216, u32::MAX, 0, 0, u32::MAX],
            "{dev:?}"
        );
        // U32 -> F32 rounds to nearest (2^24 + 1 is not representable).
        let i = Tensor::from_indices(&[0, 7, 16_777_217, 4_000_000_000], 4, &dev).unwrap();
        let f = i.to_dtype(DType::F32).unwrap();
        assert_eq!(f.dtype(), DType::F32);
        assert_eq!(
            f.to_vec().unwrap(),
            [0.0, 7.0, 16_777_216.0, 4e9],
            "{dev:?}"
        );
        // Same dtype is the same tensor; F16 goes through f32 (tests/f16.rs covers it).
        assert_eq!(x.to_dtype(DType::F32).unwrap().id(), x.id());
        assert_eq!(i.to_dtype(DType::F16).unwrap().dtype(), DType::F16);
        assert_eq!(
            i.to_dtype(DType::F16)
                .unwrap()
                .to_dtype(DType::U32)
                .unwrap()
                .to_vec_u32()
                .unwrap(),
            [0, 7, u32::MAX, u32::MAX], // beyond 65504: inf, saturated
            "{dev:?}"
        );
        // Float-only ops refuse U32, binary ops refuse mixed dtypes.
        assert!(i.exp().is_err());
        assert!(i.add(&i).is_err());
        assert!(x
            .narrow(0, 0, 4)
            .unwrap()
            .add(&i.to_dtype(DType::F32).unwrap())
            .is_ok());
        assert!(x.narrow(0, 0, 4).unwrap().add(&i).is_err());
    }
}

#[test]
fn binary_and_where_hand_values() {
    for dev in devices() {
        let a = Tensor::from_vec(vec![1.0, -2.0, 3.0, 4.0], 4, &dev).unwrap();
        let b = Tensor::from_vec(vec![2.0, -2.0, 1.0, 8.0], 4, &dev).unwrap();
        let v = |t: Result<Tensor>| t.unwrap().to_vec().unwrap();
        assert_eq!(v(a.add(&b)), [3.0, -4.0, 4.0, 12.0], "{dev:?}");
        assert_eq!(v(a.sub(&b)), [-1.0, 0.0, 2.0, -4.0]);
        assert_eq!(v(a.mul(&b)), [2.0, 4.0, 3.0, 32.0]);
        assert_eq!(v(a.div(&b)), [0.5, 1.0, 3.0, 0.5]);
        assert_eq!(v(a.maximum(&b)), [2.0, -2.0, 3.0, 8.0]);
        assert_eq!(v(a.minimum(&b)), [1.0, -2.0, 1.0, 4.0]);
        assert_eq!(v(a.eq(&b)), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(v(a.ne(&b)), [1.0, 0.0, 1.0, 1.0]);
        assert_eq!(v(a.lt(&b)), [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(v(a.le(&b)), [1.0, 1.0, 0.0, 1.0]);
        assert_eq!(v(a.gt(&b)), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(v(a.ge(&b)), [0.0, 1.0, 1.0, 0.0]);
        // U32 operands compare as indices (not as float bit patterns), to an F32 mask.
        let i = Tensor::from_indices(&[1, 5, 3_000_000_000, 7], 4, &dev).unwrap();
        let j = Tensor::from_indices(&[1, 6, 2, 7], 4, &dev).unwrap();
        let eq = i.eq(&j).unwrap();
        assert_eq!(eq.dtype(), DType::F32);
        assert_eq!(eq.to_vec().unwrap(), [1.0, 0.0, 0.0, 1.0], "{dev:?}");
        assert_eq!(v(i.gt(&j)), [0.0, 0.0, 1.0, 0.0], "{dev:?}");
        // where with a broadcast condition column and a scalar on_false.
        let cond = Tensor::from_vec(vec![1.0, 0.0], [2, 1], &dev).unwrap();
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &dev).unwrap();
        let f = Tensor::scalar(-1.0, &dev).unwrap();
        let w = Tensor::where_cond(&cond, &t, &f).unwrap();
        assert_eq!(w.dims(), &[2, 3]);
        assert_eq!(
            w.to_vec().unwrap(),
            [1.0, 2.0, 3.0, -1.0, -1.0, -1.0],
            "{dev:?}"
        );
    }
}

#[test]
fn broadcasting_hand_values() {
    for dev in devices() {
        // [3,1,2] + [4,1] -> [3,4,2]: out[i][j][k] = a[i][0][k] + b[j][0].
        let a =
            Tensor::from_vec((0..6).map(|v| v as f32 * 10.0).collect(), [3, 1, 2], &dev).unwrap();
        let b = Tensor::from_vec(vec![0.0, 1.0, 2.0, 3.0], [4, 1], &dev).unwrap();
        let c = a.add(&b).unwrap();
        assert_eq!(c.dims(), &[3, 4, 2]);
        let want: Vec<f32> = (0..3)
            .flat_map(|i| {
                (0..4).flat_map(move |j| (0..2).map(move |k| (i * 2 + k) as f32 * 10.0 + j as f32))
            })
            .collect();
        assert_eq!(c.to_vec().unwrap(), want, "{dev:?}");
        // Scalar (rank 0) times a tensor, both ways round.
        let s = Tensor::scalar(2.0, &dev).unwrap();
        assert_eq!(s.mul(&b).unwrap().to_vec().unwrap(), [0.0, 2.0, 4.0, 6.0]);
        assert_eq!(b.mul(&s).unwrap().dims(), &[4, 1]);
        assert_eq!(s.mul(&s).unwrap().dims(), &[] as &[usize]);
    }
}

// ---------------------------------------------------------------- GPU against CPU

#[test]
fn unary_gpu_matches_cpu_on_awkward_sizes() {
    for (name, atol, rtol, f) in unary_ops() {
        for n in SIZES {
            gpu_matches_cpu(&format!("{name} [{n}]"), atol, rtol, |d| {
                f(&Tensor::from_vec(
                    grid_or_data(name, n * 3, n as u64),
                    [n, 3],
                    d,
                )?)
            });
        }
        // Transposed (non-contiguous) input.
        gpu_matches_cpu(&format!("{name} transposed [7,129]"), atol, rtol, |d| {
            f(&Tensor::from_vec(grid_or_data(name, 129 * 7, 3), [129, 7], d)?.t()?)
        });
        // Narrowed and permuted 3-D input.
        gpu_matches_cpu(&format!("{name} permuted narrow"), atol, rtol, |d| {
            let x = Tensor::from_vec(grid_or_data(name, 5 * 17 * 6, 4), [5, 17, 6], d)?;
            f(&x.narrow(1, 2, 13)?.permute(&[2, 0, 1])?)
        });
    }
}

/// Comparisons get grid data (equal values occur); the rest smooth data.
fn grid_or_data(name: &str, n: usize, seed: u64) -> Vec<f32> {
    if name.contains("_scalar")
        && !name.contains("add")
        && !name.contains("sub")
        && !name.contains("mul")
        && !name.contains("div")
    {
        grid_data(n, seed)
    } else {
        data(n, seed)
    }
}

#[test]
fn binary_gpu_matches_cpu_on_awkward_shapes() {
    for (name, atol, rtol, f) in binary_ops() {
        for n in SIZES {
            gpu_matches_cpu(&format!("{name} [{n}]"), atol, rtol, |d| {
                let a = Tensor::from_vec(grid_data(n, 1), n, d)?;
                let b = Tensor::from_vec(grid_data(n, 2), n, d)?;
                f(&a, &b)
            });
        }
        gpu_matches_cpu(&format!("{name} [3,1,5] x [4,1]"), atol, rtol, |d| {
            let a = Tensor::from_vec(grid_data(15, 3), [3, 1, 5], d)?;
            let b = Tensor::from_vec(grid_data(4, 4), [4, 1], d)?;
            f(&a, &b)
        });
        gpu_matches_cpu(
            &format!("{name} transposed x contiguous [17,129]"),
            atol,
            rtol,
            |d| {
                let a = Tensor::from_vec(grid_data(17 * 129, 5), [129, 17], d)?.t()?;
                let b = Tensor::from_vec(grid_data(17 * 129, 6), [17, 129], d)?;
                f(&a, &b)
            },
        );
        gpu_matches_cpu(&format!("{name} scalar x [127,3]"), atol, rtol, |d| {
            let s = Tensor::scalar(0.5, d)?;
            let b = Tensor::from_vec(grid_data(381, 7), [127, 3], d)?;
            f(&s, &b)?.add(&f(&b, &s)?)
        });
        gpu_matches_cpu(
            &format!("{name} row [1,1000] x transposed column"),
            atol,
            rtol,
            |d| {
                let a = Tensor::from_vec(grid_data(1000, 8), [1, 1000], d)?;
                let b = Tensor::from_vec(grid_data(3, 9), [1, 3], d)?.t()?; // [3, 1]
                f(&a, &b)
            },
        );
    }
}

#[test]
fn where_gpu_matches_cpu() {
    for n in SIZES {
        gpu_matches_cpu(&format!("where [{n}]"), 0.0, 0.0, |d| {
            let c = Tensor::from_vec(data(n, 1), n, d)?.gt_scalar(0.0)?;
            let a = Tensor::from_vec(data(n, 2), n, d)?;
            let b = Tensor::from_vec(data(n, 3), n, d)?;
            Tensor::where_cond(&c, &a, &b)
        });
    }
    gpu_matches_cpu(
        "where broadcast cond [3,1,5], transposed a, scalar b",
        0.0,
        0.0,
        |d| {
            let c = Tensor::from_vec(data(15, 4), [3, 1, 5], d)?.lt_scalar(0.3)?;
            let a = Tensor::from_vec(data(20, 5), [5, 4], d)?.t()?; // [4, 5]
            let b = Tensor::scalar(9.0, d)?;
            Tensor::where_cond(&c, &a, &b)
        },
    );
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// NumPy broadcasting written out element by element: the reference for the random pairs.
fn broadcast_reference(
    a: &[f32],
    ad: &[usize],
    b: &[f32],
    bd: &[usize],
    f: fn(f32, f32) -> f32,
) -> (Vec<usize>, Vec<f32>) {
    let rank = ad.len().max(bd.len());
    let pad = |d: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - d.len())
            .chain(d.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(ad), pad(bd));
    let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let (sa, sb, so) = (strides(&pa), strides(&pb), strides(&out));
    let n: usize = out.iter().product();
    let vals = (0..n)
        .map(|i| {
            let (mut ia, mut ib) = (0, 0);
            for d in 0..rank {
                let c = (i / so[d]) % out[d];
                ia += if pa[d] == 1 { 0 } else { c * sa[d] };
                ib += if pb[d] == 1 { 0 } else { c * sb[d] };
            }
            f(a[ia], b[ib])
        })
        .collect();
    (out, vals)
}

/// A pair of broadcast-compatible shapes: each is the common shape with some leading dims
/// dropped and some dims set to 1.
fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        prop::collection::vec(1usize..=5, 0..=4),
        prop::collection::vec(any::<bool>(), 4),
        prop::collection::vec(any::<bool>(), 4),
        0usize..=4,
        0usize..=4,
    )
        .prop_map(|(full, ones_a, ones_b, drop_a, drop_b)| {
            let make = |ones: &[bool], drop: usize| -> Vec<usize> {
                full.iter()
                    .enumerate()
                    .skip(drop.min(full.len()))
                    .map(|(i, &d)| if ones[i] { 1 } else { d })
                    .collect()
            };
            (make(&ones_a, drop_a), make(&ones_b, drop_b))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_broadcast_pairs((sa, sb) in shape_pair(), seed in 0u64..1000) {
        let a = data(sa.iter().product(), seed);
        let b = data(sb.iter().product(), seed + 1);
        let ops: [(&str, ScalarFn, BinaryFn); 3] = [
            ("add", |x, y| x + y, |a, b| a.add(b)),
            ("mul", |x, y| x * y, |a, b| a.mul(b)),
            ("maximum", f32::max, |a, b| a.maximum(b)),
        ];
        for (name, f, op) in ops {
            let (dims, want) = broadcast_reference(&a, &sa, &b, &sb, f);
            for dev in devices() {
                let ta = Tensor::from_slice(&a, sa.clone(), &dev).unwrap();
                let tb = Tensor::from_slice(&b, sb.clone(), &dev).unwrap();
                let got = op(&ta, &tb).unwrap();
                prop_assert_eq!(got.dims(), dims.as_slice());
                assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0,
                    &format!("{name} {sa:?} x {sb:?} on {dev:?}"));
            }
        }
    }
}

#[test]
fn folded_grid_over_65535_workgroups() {
    // 65,535 workgroups of 256 hold 16,776,960 elements: one more workgroup needs the 2-D grid.
    let Some(g) = gpu() else { return };
    let n = 65_535 * 256 + 1000;
    let x = Tensor::arange(0.0, n as f32, 1.0, &g).unwrap();
    assert_eq!(x.numel(), n);
    let y = x.neg().unwrap().to_vec().unwrap();
    let z = x
        .add(&Tensor::scalar(0.5, &g).unwrap())
        .unwrap()
        .to_vec()
        .unwrap();
    for i in [
        0,
        1,
        255,
        256,
        65_535 * 256 - 1,
        65_535 * 256,
        65_535 * 256 + 1,
        n - 1,
    ] {
        assert_eq!(y[i], -(i as f32), "neg at {i}");
        assert_eq!(z[i], i as f32 + 0.5, "add at {i}");
    }
    // A strided sample over the whole range.
    for i in (0..n).step_by(9973) {
        assert_eq!(y[i], -(i as f32), "neg at {i}");
    }
}
