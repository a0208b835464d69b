//! The `Dataset` trait and what it hands out (host-side batches), with in-memory tensors, MNIST,
//! character windows of a text corpus and index subsets as implementations.

use super::mnist::Split;
use super::text::CharCorpus;
use crate::{DType, Device, Error, Result, Tensor};
use std::sync::Arc;

/// Host-side values of one tensor: what a data set produces off the training thread. The
/// device tensor is made from it on the training thread ([`HostTensor::to_tensor`]).
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// Real values (`DType::F32`).
    F32(Vec<f32>),
    /// Indices or class labels (`DType::U32`).
    U32(Vec<u32>),
}

/// Row-major host values with their shape; the first dimension counts examples.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    data: HostData,
    dims: Vec<usize>,
}

impl HostTensor {
    /// `F32` values of shape `dims` (`Err` if the element count does not match).
    pub fn f32(data: Vec<f32>, dims: impl Into<Vec<usize>>) -> Result<HostTensor> {
        HostTensor::new(HostData::F32(data), dims.into())
    }
    /// `U32` values of shape `dims` (`Err` if the element count does not match).
    pub fn u32(data: Vec<u32>, dims: impl Into<Vec<usize>>) -> Result<HostTensor> {
        HostTensor::new(HostData::U32(data), dims.into())
    }
    fn new(data: HostData, dims: Vec<usize>) -> Result<HostTensor> {
        let len = match &data {
            HostData::F32(v) => v.len(),
            HostData::U32(v) => v.len(),
        };
        let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if dims.is_empty() || want != Some(len) {
            return Err(Error::invalid(
                "HostTensor",
                format!(
                    "{len} values do not fill a shape {dims:?} (a batch needs a first dimension)"
                ),
            ));
        }
        Ok(HostTensor { data, dims })
    }
    /// Reads a device tensor back (F16 values as F32); its first dimension counts examples.
    pub fn from_tensor(t: &Tensor) -> Result<HostTensor> {
        let dims = t.dims().to_vec();
        match t.dtype() {
            DType::U32 => HostTensor::u32(t.to_vec_u32()?, dims),
            DType::F32 | DType::F16 => HostTensor::f32(t.to_dtype(DType::F32)?.to_vec()?, dims),
        }
    }
    /// The shape.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }
    /// The values.
    pub fn data(&self) -> &HostData {
        &self.data
    }
    /// Number of examples (the first dimension).
    pub fn rows(&self) -> usize {
        self.dims[0]
    }
    /// The element type a device tensor made from this has.
    pub fn dtype(&self) -> DType {
        match self.data {
            HostData::F32(_) => DType::F32,
            HostData::U32(_) => DType::U32,
        }
    }
    /// The device tensor with these values (an upload on a GPU, a move on the CPU).
    pub fn to_tensor(self, device: &Device) -> Result<Tensor> {
        match self.data {
            HostData::F32(v) => Tensor::from_vec(v, self.dims, device),
            HostData::U32(v) => Tensor::from_indices(&v, self.dims, device),
        }
    }
    /// The rows at `idx`, in that order (`op` names the caller in an out-of-range error).
    pub fn gather_rows(&self, idx: &[usize], op: &'static str) -> Result<HostTensor> {
        let mut dims = self.dims.clone();
        dims[0] = idx.len();
        let data = match &self.data {
            HostData::F32(v) => HostData::F32(gather(v, &self.dims, idx, op)?),
            HostData::U32(v) => HostData::U32(gather(v, &self.dims, idx, op)?),
        };
        Ok(HostTensor { data, dims })
    }
}

/// Rows `idx` of row-major `src` whose shape is `dims`.
fn gather<T: Copy>(src: &[T], dims: &[usize], idx: &[usize], op: &'static str) -> Result<Vec<T>> {
    let n = dims[0];
    let row = src.len().checked_div(n).unwrap_or(0);
    let mut out = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        if i >= n {
            return Err(Error::IndexOutOfRange {
                op,
                index: i,
                size: n,
                shape: dims.to_vec(),
            });
        }
        out.extend_from_slice(&src[i * row..(i + 1) * row]);
    }
    Ok(out)
}

/// A batch of examples on the host: model inputs and targets, one row per example.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Model inputs, `[batch, ...]`.
    pub inputs: HostTensor,
    /// Targets (class ids, next tokens, values), `[batch, ...]`.
    pub targets: HostTensor,
}

impl Batch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.inputs.rows()
    }
    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(inputs, targets)` as tensors on `device`.
    pub fn to_device(self, device: &Device) -> Result<(Tensor, Tensor)> {
        Ok((
            self.inputs.to_tensor(device)?,
            self.targets.to_tensor(device)?,
        ))
    }
}

/// A collection of examples addressed by index, as PyTorch's map-style `Dataset`. Batches are
/// built on the host (by a [`super::DataLoader`]'s background thread on native targets), so
/// implementations are `Send + Sync` and never touch a device.
pub trait Dataset: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The examples at `indices`, in that order. An index `>= len()` is an `Err`.
    fn get_batch(&self, indices: &[usize]) -> Result<Batch>;
    /// One example as a batch of one.
    fn get(&self, index: usize) -> Result<Batch> {
        self.get_batch(&[index])
    }
}

/// Examples held in memory as two host tensors with the same first dimension (Keras's
/// `fit(x, y)`, PyTorch's `TensorDataset`).
#[derive(Clone, Debug)]
pub struct TensorDataset {
    inputs: HostTensor,
    targets: HostTensor,
}

impl TensorDataset {
    /// From device tensors (read back once): `inputs [n, ...]`, `targets [n, ...]`.
    pub fn new(inputs: &Tensor, targets: &Tensor) -> Result<TensorDataset> {
        TensorDataset::from_host(
            HostTensor::from_tensor(inputs)?,
            HostTensor::from_tensor(targets)?,
        )
    }
    /// From host tensors; `Err` unless both have the same number of rows.
    pub fn from_host(inputs: HostTensor, targets: HostTensor) -> Result<TensorDataset> {
        if inputs.rows() != targets.rows() {
            return Err(Error::ShapeMismatch {
                op: "TensorDataset",
                lhs: inputs.dims().to_vec(),
                rhs: targets.dims().to_vec(),
            });
        }
        Ok(TensorDataset { inputs, targets })
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.inputs.rows()
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        Ok(Batch {
            inputs: self
                .inputs
                .gather_rows(indices, "TensorDataset::get_batch")?,
            targets: self
                .targets
                .gather_rows(indices, "TensorDataset::get_batch")?,
        })
    }
}

/// A split of MNIST as a data set: images `[batch, shape...]` (by default `[batch, rows·cols]`)
/// with pixels in [0, 1], optionally standardised, and `U32` labels `[batch]`.
pub struct MnistDataset {
    split: Split,
    shape: Vec<usize>,
    standardise: Option<(f32, f32)>,
}

impl MnistDataset {
    /// The split's images as flat rows of `rows·cols` pixels.
    pub fn new(split: Split) -> MnistDataset {
        let shape = vec![split.rows * split.cols];
        MnistDataset {
            split,
            shape,
            standardise: None,
        }
    }
    /// Each image as `shape` (e.g. `[1, 28, 28]` for a CNN); `Err` unless it holds `rows·cols`
    /// pixels.
    pub fn with_shape(mut self, shape: &[usize]) -> Result<MnistDataset> {
        let px = self.split.rows * self.split.cols;
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(px) {
            return Err(Error::invalid(
                "MnistDataset::with_shape",
                format!("shape {shape:?} does not hold the {px} pixels of an image"),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }
    /// Pixels mapped to `(p - mean) / std` (MNIST's own: 0.1307, 0.3081, as torchvision's
    /// examples use); `Err` unless `std` is positive and finite.
    pub fn standardised(mut self, mean: f32, std: f32) -> Result<MnistDataset> {
        if !(std > 0.0 && std.is_finite() && mean.is_finite()) {
            return Err(Error::invalid(
                "MnistDataset::standardised",
                format!("mean {mean} and std {std} must be finite with std > 0"),
            ));
        }
        self.standardise = Some((mean, std));
        Ok(self)
    }
    /// The underlying split.
    pub fn split(&self) -> &Split {
        &self.split
    }
}

impl Dataset for MnistDataset {
    fn len(&self) -> usize {
        self.split.len()
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let px = self.split.rows * self.split.cols;
        if self.split.images.len() != self.split.len() * px {
            return Err(Error::invalid(
                "MnistDataset::get_batch",
                format!(
                    "{} labels but {} pixels (not {px} per image)",
                    self.split.len(),
                    self.split.images.len()
                ),
            ));
        }
        let mut x = gather(
            &self.split.images,
            &[self.split.len(), px],
            indices,
            "MnistDataset::get_batch",
        )?;
        if let Some((mean, std)) = self.standardise {
            let (scale, shift) = (1.0 / std, -mean / std);
            x.iter_mut().for_each(|p| *p = *p * scale + shift);
        }
        let y = indices
            .iter()
            .map(|&i| self.split.labels[i] as u32)
            .collect();
        let mut dims = vec![indices.len()];
        dims.extend(&self.shape);
        Ok(Batch {
            inputs: HostTensor::f32(x, dims)?,
            targets: HostTensor::u32(y, [indices.len()])?,
        })
    }
}

/// Windows of a token sequence for next-token prediction: example `i` is the `context` ids
/// starting at `i·stride` and, as targets, the `context` ids one further on (both `U32`,
/// `[batch, context]`).
#[derive(Clone, Debug)]
pub struct CharWindows {
    ids: Arc<Vec<u32>>,
    context: usize,
    stride: usize,
}

impl CharWindows {
    /// Windows of `context` ids every `stride` ids of `ids`; `Err` if `context` or `stride` is
    /// zero or `ids` is too short for one window (`context + 1` ids).
    pub fn new(ids: Vec<u32>, context: usize, stride: usize) -> Result<CharWindows> {
        if context == 0 || stride == 0 || ids.len() < context.saturating_add(1) {
            return Err(Error::invalid(
                "CharWindows",
                format!(
                    "{} ids cannot give windows of context {context} with stride {stride}",
                    ids.len()
                ),
            ));
        }
        Ok(CharWindows {
            ids: Arc::new(ids),
            context,
            stride,
        })
    }
    /// The corpus's training split in non-overlapping windows of `context`.
    pub fn train(corpus: &CharCorpus, context: usize) -> Result<CharWindows> {
        CharWindows::new(corpus.train().to_vec(), context, context)
    }
    /// The corpus's validation split in non-overlapping windows of `context` (the windows of
    /// [`CharCorpus::valid_windows`]).
    pub fn valid(corpus: &CharCorpus, context: usize) -> Result<CharWindows> {
        CharWindows::new(corpus.valid().to_vec(), context, context)
    }
}

impl Dataset for CharWindows {
    fn len(&self) -> usize {
        (self.ids.len() - 1 - self.context) / self.stride + 1
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let (n, c) = (self.len(), self.context);
        let mut x = Vec::with_capacity(indices.len() * c);
        let mut y = Vec::with_capacity(indices.len() * c);
        for &i in indices {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    op: "CharWindows::get_batch",
                    index: i,
                    size: n,
                    shape: vec![n, c],
                });
            }
            let s = i * self.stride;
            x.extend_from_slice(&self.ids[s..s + c]);
            y.extend_from_slice(&self.ids[s + 1..s + c + 1]);
        }
        Ok(Batch {
            inputs: HostTensor::u32(x, [indices.len(), c])?,
            targets: HostTensor::u32(y, [indices.len(), c])?,
        })
    }
}

/// The examples of another data set at the given indices, in that order (Keras's
/// `validation_split` takes the last ones of the training data this way).
#[derive(Clone)]
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// `inner`'s examples at `indices`; `Err` if an index is out of range.
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Subset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= inner.len()) {
            return Err(Error::IndexOutOfRange {
                op: "Subset",
                index: bad,
                size: inner.len(),
                shape: vec![inner.len()],
            });
        }
        Ok(Subset { inner, indices })
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let mapped = indices
            .iter()
            .map(|&i| {
                self.indices.get(i).copied().ok_or(Error::IndexOutOfRange {
                    op: "Subset::get_batch",
                    index: i,
                    size: self.indices.len(),
                    shape: vec![self.indices.len()],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.inner.get_batch(&mapped)
    }
}
