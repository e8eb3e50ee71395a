//! Element types held on the GPU. bf16 is only a load format (WGSL has no bf16); u32 holds
//! token ids and indices (no gradient flows through it).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    U32,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}
