//! Checkpoints: named tensors saved as safetensors, written atomically (a temporary file in
//! the same directory, synced, then renamed over the target), and loaded with checks.

use crate::{DType, Device, Error, Result, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::path::Path;

/// `tensors` in the safetensors format, as [`save`] writes them (waits for the device; use it
/// where there is no file system, e.g. to offer a download in a browser).
pub fn to_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, bytes) = match t.dtype() {
            DType::F32 => (StDtype::F32, bytemuck::cast_slice(&t.to_vec()?).to_vec()),
            DType::U32 => (
                StDtype::U32,
                bytemuck::cast_slice(&t.to_vec_u32()?).to_vec(),
            ),
            DType::F16 => (
                StDtype::F16,
                bytemuck::cast_slice(&t.to_vec_f16()?).to_vec(),
            ),
        };
        data.push((name.clone(), dtype, t.dims().to_vec(), bytes));
    }
    let views = data
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::invalid("checkpoint::save", format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::invalid("checkpoint::save", e.to_string()))
}

/// Saves `tensors` (e.g. `model.parameters()` plus `optimizer.state()`) to `path`. A crash
/// mid-save leaves any previous file at `path` intact.
pub fn save(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    crate::fs::write_atomic(path, &to_bytes(tensors)?)
}

/// Reads every tensor in a safetensors file onto `device`.
pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        what: format!("reading {}", path.display()),
        source,
    })?;
    from_bytes(&bytes, &path.display().to_string(), device)
}

/// Reads every tensor of safetensors `bytes` (named `what` in errors) onto `device`: the way
/// to load a checkpoint fetched over the network, e.g. in a browser.
pub fn from_bytes(bytes: &[u8], what: &str, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let what = what.to_string();
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        what: what.clone(),
        msg: format!("not a valid safetensors file: {e}"),
    })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let t = match view.dtype() {
            StDtype::F32 => {
                let v: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_vec(v, shape, device)?
            }
            StDtype::F16 => {
                let v: Vec<half::f16> = view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Tensor::from_f16(&v, shape, device)?
            }
            StDtype::U32 => {
                let v: Vec<u32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_indices(&v, shape, device)?
            }
            d => {
                return Err(Error::Format {
                    what,
                    msg: format!("tensor {name} has unsupported dtype {d:?}"),
                })
            }
        };
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Loads `path` into existing tensors in place (e.g. `model.parameters()`). Every named
/// target must be present with the same shape; extra tensors in the file are ignored. F16 and
/// F32 values are converted to the target's dtype (as PyTorch's `load_state_dict`).
pub fn load_into(path: impl AsRef<Path>, targets: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let loaded = load(path, &Device::Cpu)?;
    assign_all(&loaded, &path.display().to_string(), targets)
}

/// [`load_into`] from safetensors `bytes` (named `what` in errors).
pub fn load_into_from_bytes(bytes: &[u8], what: &str, targets: &[(String, Tensor)]) -> Result<()> {
    let loaded = from_bytes(bytes, what, &Device::Cpu)?;
    assign_all(&loaded, what, targets)
}

/// Assigns each target the loaded tensor of its name, after checking every one.
fn assign_all(loaded: &[(String, Tensor)], what: &str, targets: &[(String, Tensor)]) -> Result<()> {
    let find = |n: &str| loaded.iter().find(|(k, _)| k == n).map(|(_, t)| t);
    // Check everything before writing anything, so a bad file changes nothing.
    for (name, t) in targets {
        match find(name) {
            None => {
                return Err(Error::Format {
                    what: what.to_string(),
                    msg: format!("missing tensor {name} (expected shape {:?})", t.dims()),
                })
            }
            Some(src) if src.dims() != t.dims() || !convertible(src.dtype(), t.dtype()) => {
                return Err(Error::Format {
                    what: what.to_string(),
                    msg: format!(
                        "tensor {name} has shape {:?} {:?}, expected {:?} {:?}",
                        src.dims(),
                        src.dtype(),
                        t.dims(),
                        t.dtype()
                    ),
                })
            }
            Some(_) => {}
        }
    }
    for (name, t) in targets {
        t.assign(&crate::no_grad(|| find(name).unwrap().to_dtype(t.dtype()))?)?;
    }
    Ok(())
}

/// Whether a stored dtype loads into a target dtype: the same, or F16 and F32 either way.
fn convertible(stored: DType, target: DType) -> bool {
    stored == target || (stored != DType::U32 && target != DType::U32)
}
