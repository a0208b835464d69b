//! `DType`: the element types a tensor can hold.

/// Element type. Storage is 4-byte words on both backends; `U32` holds indices (argmax output,
/// gather/index_select indices, class labels); `F16` packs two values per word (see
/// `Tensor::from_f16`, `Tensor::to_dtype` and the `amp` module). Ops compute F16 in f32 and
/// round their F16 outputs once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float, the default.
    F32,
    /// IEEE 754 half precision (binary16).
    F16,
    /// 32-bit unsigned integer, for indices.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}
