//! Optimizers (SGD with momentum/Nesterov, Adam, AdamW), global-norm gradient clipping and
//! learning-rate schedules. Updates run in place under `no_grad`: on the GPU one fused WGSL
//! dispatch per parameter with no read-back; on the CPU the same formulas as loops.

use crate::backprop::Gradients;
use crate::gpu::buffer::GpuBuffer;
use crate::gpu::flat::Flat;
use crate::gpu::optim::{self as gpu, OptimParams};
use crate::tensor::Storage;
use crate::{no_grad, DType, Error, Result, Shape, Tensor};
use std::sync::Arc;

/// What every optimizer offers a training loop.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    /// [`Optimizer::step`] with the gradients first scaled so their global L2 norm is at most
    /// `max_norm` (as [`clip_grad_norm`] over this optimizer's parameters); returns the norm
    /// before clipping as a one-element tensor (nothing is read back). `grads` is left as it
    /// is. On a GPU with every parameter in one fused step this is two dispatches in all: the
    /// norm's partial sums and the update that applies the scale.
    fn step_clipped(&mut self, grads: &Gradients, max_norm: f32) -> Result<Tensor>;
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

/// The flat buffers of a fused GPU step: every parameter, its gradient and each of its states
/// packed at the same offsets (see `gpu::flat`), so one dispatch updates them all. Built at the
/// first step where every parameter qualifies; the parameters then live in `params` (their
/// tensors keep working as before), and the states are views of `states`.
struct Fused {
    params: Flat,
    grads: Flat,
    states: Vec<Flat>,
}

/// What the optimizers share: the parameters and, on a GPU, their fused flat buffers.
struct Params {
    slots: Vec<Slot>,
    fused: Option<Fused>,
}

fn gpu_buffer(t: &Tensor) -> Option<&Arc<GpuBuffer>> {
    match t.storage() {
        Storage::Gpu(b) => Some(b),
        Storage::Cpu(_) => None,
    }
}

/// The GPU storages of `ts` (all on a GPU in a fused step).
fn gpu_buffers<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> Vec<&'a GpuBuffer> {
    ts.into_iter()
        .filter_map(|t| gpu_buffer(t).map(|b| b.as_ref()))
        .collect()
}

impl Params {
    fn new(params: impl IntoIterator<Item = (String, Tensor)>) -> Params {
        Params {
            slots: slots(params),
            fused: None,
        }
    }

    /// The gradients of a fused step, dense F32 in slot order, when every parameter takes part:
    /// distinct dense F32 GPU parameters with elements on one device, each with a gradient of
    /// its shape there. `None` sends the step down the per-parameter path.
    fn fusable(&self, grads: &Gradients) -> Result<Option<Vec<Tensor>>> {
        let Some(first) = self.slots.first() else {
            return Ok(None);
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let p = &s.param;
            let qualifies = p.device().same(first.param.device())
                && p.dtype() == DType::F32
                && p.is_contiguous()
                && p.layout().offset == 0
                && p.numel() > 0
                && gpu_buffer(p).is_some_and(|b| seen.insert(Arc::as_ptr(b)));
            let g = grads.get(p).filter(|g| {
                g.dims() == p.dims() && g.device().same(p.device()) && g.dtype() != DType::U32
            });
            match (qualifies, g) {
                (true, Some(g)) => out.push(g.to_dtype(DType::F32)?.dense()?),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// One fused step of `entry` over every slot with gradients `grads` (from
    /// [`Params::fusable`]); `clip` bounds the global gradient norm, which is then returned.
    fn fused_step(
        &mut self,
        grads: &[Tensor],
        n_states: usize,
        entry: &'static str,
        p: OptimParams,
        clip: Option<f32>,
    ) -> Result<Option<Tensor>> {
        const OP: &str = "optimizer step";
        let bufs = gpu_buffers(self.slots.iter().map(|s| &s.param));
        let ctx = bufs[0].ctx().clone();
        let lens: Vec<usize> = self.slots.iter().map(|s| s.param.numel()).collect();
        // (Re)pack when the parameters are not where the last packing put them.
        let packed = self.fused.as_ref().is_some_and(|f| {
            f.params.lens() == lens && bufs.iter().enumerate().all(|(i, b)| f.params.holds(i, b))
        });
        if !packed {
            let params = Flat::zeros(&ctx, &lens, OP)?;
            params.adopt(&bufs);
            self.fused = Some(Fused {
                params,
                grads: Flat::zeros(&ctx, &lens, OP)?,
                states: (0..n_states)
                    .map(|_| Flat::zeros(&ctx, &lens, OP))
                    .collect::<Result<_>>()?,
            });
        }
        let f = self.fused.as_ref().unwrap();
        // States: missing ones start as zeroed views of the flat states; ones made elsewhere
        // (unfused steps, load_state) move in.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.state.len() < n_states {
                slot.state.clear();
                for flat in &f.states {
                    let b = GpuBuffer::at(&ctx, flat.place(i));
                    crate::gpu::buffer::clear(&b, 0, lens[i]);
                    let t = Tensor::from_storage(
                        Storage::Gpu(b),
                        slot.param.shape().clone(),
                        DType::F32,
                        slot.param.device(),
                        None,
                    );
                    slot.state.push(t);
                }
            }
        }
        for (k, flat) in f.states.iter().enumerate() {
            let states: Vec<Tensor> = self
                .slots
                .iter()
                .map(|s| s.state[k].dense())
                .collect::<Result<_>>()?;
            flat.adopt(&gpu_buffers(&states));
            for (slot, t) in self.slots.iter_mut().zip(states) {
                slot.state[k] = t;
            }
        }
        f.grads.copy_in(&gpu_buffers(grads));
        let n = f.params.words();
        let mut p = OptimParams { n: n as u32, ..p };
        let mut buffers = vec![f.params.binding(), f.grads.binding()];
        buffers.extend(f.states.iter().map(Flat::binding));
        let Some(max_norm) = clip else {
            gpu::launch(&ctx, entry, &p, &buffers)?;
            return Ok(None);
        };
        let chunks = gpu::chunks(n);
        let partials = crate::gpu::buffer::alloc(&ctx, chunks, OP, &[chunks])?;
        p.chunks = chunks as u32;
        p.max_norm = max_norm;
        gpu::launch(
            &ctx,
            "sum_squares",
            &p,
            &[partials.binding(), f.grads.binding()],
        )?;
        let norm = crate::gpu::buffer::alloc(&ctx, 1, OP, &[])?;
        buffers.extend([partials.binding(), norm.binding()]);
        let clipped = match entry {
            "adam_step" => "adam_step_clipped",
            _ => "sgd_step_clipped",
        };
        gpu::launch(&ctx, clipped, &p, &buffers)?;
        let device = self.slots[0].param.device();
        Ok(Some(Tensor::from_storage(
            Storage::Gpu(norm),
            Shape::from(()),
            DType::F32,
            device,
            None,
        )))
    }

    /// One step of every slot with a gradient: fused on a GPU when every parameter qualifies
    /// ([`Params::fusable`]), else one update per parameter (after [`clip_grad_norm`] on a copy
    /// of `grads` when clipping). Returns the norm when clipping.
    fn step(
        &mut self,
        grads: &Gradients,
        clip: Option<f32>,
        n_states: usize,
        entry: &'static str,
        p: OptimParams,
        cpu: impl Fn(&mut [f32], &[f32], &mut [&mut Vec<f32>]),
    ) -> Result<Option<Tensor>> {
        no_grad(|| {
            if let Some(fused_grads) = self.fusable(grads)? {
                return self.fused_step(&fused_grads, n_states, entry, p, clip);
            }
            let clipped;
            let (grads, norm) = match clip {
                Some(max_norm) => {
                    let mut g = grads.clone();
                    let params: Vec<Tensor> = self.slots.iter().map(|s| s.param.clone()).collect();
                    let norm = clip_grad_norm(&mut g, &params, max_norm)?;
                    clipped = g;
                    (&clipped, Some(norm))
                }
                None => (grads, None),
            };
            for slot in &mut self.slots {
                if let Some(g) = grads.get(&slot.param) {
                    update(slot, g, n_states, entry, p, &cpu)?;
                }
            }
            Ok(norm)
        })
    }
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
    cpu: &impl Fn(&mut [f32], &[f32], &mut [&mut Vec<f32>]),
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
    params: Params,
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
            params: Params::new(params),
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

impl Sgd {
    /// One step; `clip` as in [`Optimizer::step_clipped`].
    fn run(&mut self, grads: &Gradients, clip: Option<f32>) -> Result<Option<Tensor>> {
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
        self.params.step(grads, clip, 1, "sgd_step", p, |x, g, st| {
            for i in 0..x.len() {
                let mut gi = g[i] + wd * x[i];
                if mu != 0.0 {
                    let buf = mu * st[0][i] + (1.0 - tau) * gi;
                    st[0][i] = buf;
                    gi = if nesterov { gi + mu * buf } else { buf };
                }
                x[i] -= lr * gi;
            }
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.run(grads, None).map(|_| ())
    }
    fn step_clipped(&mut self, grads: &Gradients, max_norm: f32) -> Result<Tensor> {
        self.run(grads, Some(max_norm))
            .map(|n| n.expect("wgml bug: a clipped step returns the norm"))
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        state_entries(&self.params.slots, &["momentum_buffer"], None)
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        load_slots(&mut self.params.slots, &["momentum_buffer"], state).map(|_| ())
    }
}

/// Adam (Kingma & Ba, 2015) with L2 weight decay, or AdamW (Loshchilov & Hutter, 2019) with
/// decoupled weight decay, as PyTorch implements them:
/// `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= lr·(m/(1-β1ᵗ)) / (√(v/(1-β2ᵗ)) + ε)`,
/// where AdamW first scales `p *= 1 - lr·wd` and Adam instead adds `wd·p` to `g`.
pub struct Adam {
    params: Params,
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
            params: Params::new(params),
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

impl Adam {
    /// One step; `clip` as in [`Optimizer::step_clipped`].
    fn run(&mut self, grads: &Gradients, clip: Option<f32>) -> Result<Option<Tensor>> {
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
        self.params
            .step(grads, clip, 2, "adam_step", p, |x, g, st| {
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
            })
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.run(grads, None).map(|_| ())
    }
    fn step_clipped(&mut self, grads: &Gradients, max_norm: f32) -> Result<Tensor> {
        self.run(grads, Some(max_norm))
            .map(|n| n.expect("wgml bug: a clipped step returns the norm"))
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        state_entries(&self.params.slots, &["exp_avg", "exp_avg_sq"], Some(self.t))
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        if let Some(t) = load_slots(&mut self.params.slots, &["exp_avg", "exp_avg_sq"], state)? {
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
