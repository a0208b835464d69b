//! Optimizers (SGD with momentum/Nesterov, Adam, AdamW), global-norm gradient clipping and
//! learning-rate schedules. Updates run in place under `no_grad`: on the GPU one fused WGSL
//! dispatch per parameter with no read-back; on the CPU the same formulas as loops.

use crate::backprop::Gradients;
use crate::gpu::optim::{self as gpu, OptimParams};
use crate::tensor::Storage;
use crate::{no_grad, Error, Result, Tensor};

/// What every optimizer offers a training loop.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (for schedules).
    fn set_lr(&mut self, lr: f32);
    /// Named state tensors (moments, momentum buffers, step count) for checkpoints.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores state saved by [`Optimizer::state`] (tensors matched by name and shape).
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// A parameter with its name and its optimizer state tensors (created at the first step).
struct Slot {
    name: String,
    param: Tensor,
    state: Vec<Tensor>,
}

fn slots(params: impl IntoIterator<Item = (String, Tensor)>) -> Vec<Slot> {
    params
        .into_iter()
        .map(|(name, param)| Slot {
            name,
            param,
            state: Vec::new(),
        })
        .collect()
}

/// Runs the fused update for one parameter: the GPU kernel, or `cpu` over plain slices
/// `(param, grad, states)`.
fn update(
    slot: &mut Slot,
    grad: &Tensor,
    n_states: usize,
    entry: &'static str,
    p: OptimParams,
    cpu: impl Fn(&mut [f32], &[f32], &mut [&mut Vec<f32>]),
) -> Result<()> {
    const OP: &str = "optimizer step";
    if grad.dims() != slot.param.dims() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: slot.param.dims().to_vec(),
            rhs: grad.dims().to_vec(),
        });
    }
    slot.param.check_same_device(grad, OP)?;
    if slot.param.dtype() != crate::DType::F32 {
        return Err(Error::DType {
            op: OP,
            msg: format!(
                "parameter {} is {:?} {:?}; optimizers update F32 parameters (keep F32 master weights and train F16 through amp::autocast)",
                slot.name,
                slot.param.dtype(),
                slot.param.dims()
            ),
        });
    }
    let grad = &grad.to_dtype(crate::DType::F32)?;
    if !slot.param.is_contiguous() || slot.param.layout().offset != 0 {
        return Err(Error::invalid(
            OP,
            format!("parameter {} must be a dense tensor", slot.name),
        ));
    }
    while slot.state.len() < n_states {
        slot.state.push(slot.param.zeros_like()?);
    }
    let grad = grad.dense()?;
    let p = OptimParams {
        n: slot.param.numel() as u32,
        ..p
    };
    match (slot.param.storage(), grad.storage()) {
        (Storage::Gpu(x), Storage::Gpu(g)) => {
            let states: Vec<_> = slot.state[..n_states]
                .iter()
                .map(|s| match s.storage() {
                    Storage::Gpu(b) => b.clone(),
                    Storage::Cpu(_) => unreachable!("state lives with its parameter"),
                })
                .collect();
            let refs: Vec<_> = states.iter().map(|b| b.as_ref()).collect();
            gpu::step(entry, &p, x, g, &refs)
        }
        (Storage::Cpu(x), Storage::Cpu(g)) => {
            let mut guards: Vec<_> = slot.state[..n_states]
                .iter()
                .map(|s| match s.storage() {
                    Storage::Cpu(v) => v.clone(),
                    Storage::Gpu(_) => unreachable!("state lives with its parameter"),
                })
                .collect();
            let mut locks: Vec<_> = guards.iter_mut().map(|v| v.write().unwrap()).collect();
            let mut refs: Vec<&mut Vec<f32>> = locks.iter_mut().map(|l| &mut ***l).collect();
            let n = p.n as usize;
            cpu(
                &mut x.write().unwrap()[..n],
                &g.read().unwrap()[..n],
                &mut refs,
            );
            Ok(())
        }
        _ => unreachable!("devices checked"),
    }
}

fn state_entries(slots: &[Slot], names: &[&str], step: Option<u64>) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for s in slots {
        for (t, n) in s.state.iter().zip(names) {
            out.push((format!("{}.{n}", s.name), t.clone()));
        }
    }
    if let (Some(step), Some(first)) = (step, slots.first()) {
        if let Ok(t) = Tensor::scalar(step as f32, first.param.device()) {
            out.push(("step".to_string(), t));
        }
    }
    out
}

fn load_slots(
    slots: &mut [Slot],
    names: &[&str],
    state: &[(String, Tensor)],
) -> Result<Option<u64>> {
    let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t);
    for s in slots.iter_mut() {
        let mut loaded = Vec::new();
        for n in names {
            let key = format!("{}.{n}", s.name);
            match find(&key) {
                Some(t) if t.dims() == s.param.dims() => {
                    loaded.push(t.to_device(s.param.device())?.dense()?.copy()?)
                }
                Some(t) => {
                    return Err(Error::ShapeMismatch {
                        op: "load_state",
                        lhs: s.param.dims().to_vec(),
                        rhs: t.dims().to_vec(),
                    })
                }
                None => break,
            }
        }
        if loaded.len() == names.len() {
            s.state = loaded;
        }
    }
    match find("step") {
        Some(t) => Ok(Some(t.item()? as u64)),
        None => Ok(None),
    }
}

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2
/// weight decay, as in PyTorch's `torch.optim.SGD`:
/// `g = grad + wd·p; buf = μ·buf + (1-τ)·g; g = nesterov ? g + μ·buf : buf; p -= lr·g`.
pub struct Sgd {
    slots: Vec<Slot>,
    lr: f32,
    momentum: f32,
    dampening: f32,
    nesterov: bool,
    weight_decay: f32,
}

impl Sgd {
    /// Plain SGD over named parameters (e.g. `model.parameters()`).
    pub fn new(params: impl IntoIterator<Item = (String, Tensor)>, lr: f32) -> Sgd {
        Sgd {
            slots: slots(params),
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
    /// Sets the momentum factor μ.
    pub fn momentum(mut self, momentum: f32) -> Sgd {
        self.momentum = momentum;
        self
    }
    /// Sets the dampening τ.
    pub fn dampening(mut self, dampening: f32) -> Sgd {
        self.dampening = dampening;
        self
    }
    /// Uses Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Sgd {
        self.nesterov = on;
        self
    }
    /// L2 weight decay added to the gradient.
    pub fn weight_decay(mut self, wd: f32) -> Sgd {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        let p = OptimParams {
            nesterov: self.nesterov as u32,
            lr: self.lr,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            dampening: self.dampening,
            ..Default::default()
        };
        let (mu, tau, wd, lr, nesterov) = (
            self.momentum,
            self.dampening,
            self.weight_decay,
            self.lr,
            self.nesterov,
        );
        // The kernel binds the momentum buffer even when μ = 0 (WGSL bindings are static).
        let n_states = 1;
        no_grad(|| {
            for slot in &mut self.slots {
                let Some(g) = grads.get(&slot.param) else {
                    continue;
                };
                update(slot, g, n_states, "sgd_step", p, |x, g, st| {
                    for i in 0..x.len() {
                        let mut gi = g[i] + wd * x[i];
                        if mu != 0.0 {
                            let buf = mu * st[0][i] + (1.0 - tau) * gi;
                            st[0][i] = buf;
                            gi = if nesterov { gi + mu * buf } else { buf };
                        }
                        x[i] -= lr * gi;
                    }
                })?;
            }
            Ok(())
        })
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        state_entries(&self.slots, &["momentum_buffer"], None)
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        load_slots(&mut self.slots, &["momentum_buffer"], state).map(|_| ())
    }
}

/// Adam (Kingma & Ba, 2015) with L2 weight decay, or AdamW (Loshchilov & Hutter, 2019) with
/// decoupled weight decay, as PyTorch implements them:
/// `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= lr·(m/(1-β1ᵗ)) / (√(v/(1-β2ᵗ)) + ε)`,
/// where AdamW first scales `p *= 1 - lr·wd` and Adam instead adds `wd·p` to `g`.
pub struct Adam {
    slots: Vec<Slot>,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    t: u64,
}

impl Adam {
    /// Adam with PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8, no weight decay).
    pub fn new(params: impl IntoIterator<Item = (String, Tensor)>, lr: f32) -> Adam {
        Adam {
            slots: slots(params),
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
        }
    }
    /// AdamW with decoupled weight decay `wd` (PyTorch's default is 0.01).
    pub fn adamw(params: impl IntoIterator<Item = (String, Tensor)>, lr: f32, wd: f32) -> Adam {
        Adam {
            weight_decay: wd,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }
    /// Sets (β1, β2).
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Sets ε.
    pub fn eps(mut self, eps: f32) -> Adam {
        self.eps = eps;
        self
    }
    /// Sets the weight decay (L2 for Adam, decoupled for AdamW).
    pub fn weight_decay(mut self, wd: f32) -> Adam {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - (self.beta1 as f64).powi(self.t as i32);
        let bc2 = 1.0 - (self.beta2 as f64).powi(self.t as i32);
        let p = OptimParams {
            decoupled: self.decoupled as u32,
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            bias_correction1: bc1 as f32,
            bias_correction2: bc2 as f32,
            ..Default::default()
        };
        let (lr, b1, b2, eps, wd, decoupled) = (
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            self.decoupled,
        );
        let (bc1, bc2) = (bc1 as f32, bc2 as f32);
        no_grad(|| {
            for slot in &mut self.slots {
                let Some(g) = grads.get(&slot.param) else {
                    continue;
                };
                update(slot, g, 2, "adam_step", p, |x, g, st| {
                    use rayon::prelude::*;
                    let (m, v) = st.split_at_mut(1);
                    let (m, v) = (&mut m[0][..x.len()], &mut v[0][..x.len()]);
                    const CH: usize = 1 << 14;
                    x.par_chunks_mut(CH)
                        .zip(g.par_chunks(CH))
                        .zip(m.par_chunks_mut(CH).zip(v.par_chunks_mut(CH)))
                        .for_each(|((x, g), (m, v))| {
                            for i in 0..x.len() {
                                let mut xi = x[i];
                                let mut gi = g[i];
                                if decoupled {
                                    xi *= 1.0 - lr * wd;
                                } else {
                                    gi += wd * xi;
                                }
                                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                                x[i] = xi - lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
                            }
                        });
                })?;
            }
            Ok(())
        })
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        state_entries(&self.slots, &["exp_avg", "exp_avg_sq"], Some(self.t))
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        if let Some(t) = load_slots(&mut self.slots, &["exp_avg", "exp_avg_sq"], state)? {
            self.t = t;
        }
        Ok(())
    }
}

/// Scales all gradients of `params` so their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping as a one-element
/// tensor; nothing is read back from the device.
pub fn clip_grad_norm(grads: &mut Gradients, params: &[Tensor], max_norm: f32) -> Result<Tensor> {
    no_grad(|| {
        let present: Vec<&Tensor> = params.iter().filter(|p| grads.get(p).is_some()).collect();
        let Some(first) = present.first() else {
            return Tensor::scalar(0.0, &crate::Device::Cpu);
        };
        let mut total = Tensor::zeros((), first.device())?;
        for p in &present {
            let g = grads.get(p).unwrap();
            total = total.add(&g.mul(g)?.sum_all()?)?;
        }
        let norm = total.sqrt()?;
        // scale = min(1, max_norm / (norm + 1e-6)), as a device scalar.
        let scale = norm
            .add_scalar(1e-6)?
            .recip()?
            .mul_scalar(max_norm)?
            .clamp(f32::NEG_INFINITY, 1.0)?;
        for p in present {
            let g = grads.get(p).unwrap().mul(&scale)?;
            grads.insert(p, g);
        }
        Ok(norm)
    })
}

/// A learning-rate schedule: the rate for a given epoch (or step) count.
pub trait LrSchedule {
    /// The learning rate after `epoch` completed epochs.
    fn lr(&self, epoch: usize) -> f32;
}

/// Multiplies the base rate by `gamma` every `step_size` epochs (`torch.optim.lr_scheduler.StepLR`).
pub struct StepLr {
    /// Initial learning rate.
    pub base_lr: f32,
    /// Epochs between decays.
    pub step_size: usize,
    /// Decay factor.
    pub gamma: f32,
}

impl LrSchedule for StepLr {
    fn lr(&self, epoch: usize) -> f32 {
        self.base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Cosine annealing from `base_lr` to `eta_min` over `t_max` epochs
/// (`torch.optim.lr_scheduler.CosineAnnealingLR`, without restarts).
pub struct CosineLr {
    /// Initial learning rate.
    pub base_lr: f32,
    /// Length of the half cosine.
    pub t_max: usize,
    /// Final learning rate.
    pub eta_min: f32,
}

impl LrSchedule for CosineLr {
    fn lr(&self, epoch: usize) -> f32 {
        let t = epoch.min(self.t_max) as f32 / self.t_max.max(1) as f32;
        self.eta_min
            + 0.5 * (self.base_lr - self.eta_min) * (1.0 + (std::f32::consts::PI * t).cos())
    }
}
