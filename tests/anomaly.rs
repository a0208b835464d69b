//! Anomaly mode: the first op whose forward output or backward gradient holds a NaN or an
//! infinity is named, with its shapes, on both devices; off, nothing is checked.

mod common;

use wgml::{detect_anomaly, set_detect_anomaly, Device, Error, Tensor};

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu())
        .chain(common::gpu())
        .collect()
}

#[test]
fn forward_nan_names_the_op() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, -1.0, 2.0], [3], &dev)
            .unwrap()
            .requires_grad();
        let r = detect_anomaly(|| {
            let y = x.mul_scalar(2.0)?; // finite
            let z = y.log()?; // log(-2) = NaN: the first anomaly
            let w = z.exp()?; // NaN again, not the first
            w.sum_all()
        });
        let e = r.unwrap_err();
        match &e {
            Error::NonFinite { phase, op, detail } => {
                assert_eq!(*phase, "forward", "{e}");
                assert!(op.contains("Log") && op.contains("[3]"), "{e}");
                assert!(detail.contains("1 NaN"), "{e}");
            }
            _ => panic!("{dev:?}: {e:?}"),
        }
        // The same graph under set_detect_anomaly: backward() reports the forward anomaly.
        set_detect_anomaly(true);
        let loss = x.log().unwrap().sum_all().unwrap();
        let e = loss.backward().unwrap_err();
        set_detect_anomaly(false);
        assert!(
            matches!(
                e,
                Error::NonFinite {
                    phase: "forward",
                    ..
                }
            ),
            "{e:?}"
        );
        // Off: no check, the NaN flows through.
        let loss = x.log().unwrap().sum_all().unwrap();
        assert!(loss.item().unwrap().is_nan());
        assert!(loss.backward().is_ok());
    }
}

#[test]
fn backward_inf_names_the_op() {
    for dev in devices() {
        // sqrt is finite at 0, its gradient 1 / (2 sqrt x) is not.
        let x = Tensor::from_vec(vec![0.0, 4.0], [1, 2], &dev)
            .unwrap()
            .requires_grad();
        let r = detect_anomaly(|| {
            let loss = x.sqrt()?.mul_scalar(3.0)?.sum_all()?;
            loss.backward()
        });
        let Err(e) = r else {
            panic!("{dev:?}: expected an anomaly")
        };
        match &e {
            Error::NonFinite { phase, op, detail } => {
                assert_eq!(*phase, "backward", "{e}");
                assert!(op.contains("Sqrt") && op.contains("[1, 2]"), "{e}");
                assert!(detail.contains("1 infinite"), "{e}");
            }
            _ => panic!("{dev:?}: {e:?}"),
        }
        // A clean graph passes under anomaly mode with the right gradient.
        let x = Tensor::from_vec(vec![1.0, 4.0], [2], &dev)
            .unwrap()
            .requires_grad();
        let g = detect_anomaly(|| x.sqrt()?.sum_all()?.backward()).unwrap();
        let gx = g.get(&x).unwrap().to_vec().unwrap();
        assert!(
            (gx[0] - 0.5).abs() < 1e-6 && (gx[1] - 0.25).abs() < 1e-6,
            "{gx:?}"
        );
    }
}
