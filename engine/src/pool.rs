//! A caching buffer pool: buffers are kept by size class and handed out again, so a training
//! step allocates nothing after the first; counters of bytes in use and at peak.

use std::collections::HashMap;

/// Byte counters of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of all buffers the pool created and still holds or lent out.
    pub allocated: u64,
    /// Bytes lent out to live tensors.
    pub in_use: u64,
    /// Largest `in_use` since creation or the last reset.
    pub peak: u64,
    /// Buffers created (a measure of pool misses).
    pub buffers_created: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

/// The size class of a request: at most 1/8 (12.5%) larger than asked, at least 256 bytes.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let floor_pow2 = 1u64 << (63 - bytes.leading_zeros());
    let granule = (floor_pow2 / 8).max(256);
    bytes.div_ceil(granule) * granule
}

impl Pool {
    /// A free buffer of exactly `class` bytes, if one is cached.
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let buf = self.free.get_mut(&class)?.pop()?;
        self.lend(class);
        Some(buf)
    }

    /// Count a freshly created buffer of `class` bytes as allocated and lent.
    pub(crate) fn created(&mut self, class: u64) {
        self.stats.allocated += class;
        self.stats.buffers_created += 1;
        self.lend(class);
    }

    fn lend(&mut self, class: u64) {
        self.stats.in_use += class;
        self.stats.peak = self.stats.peak.max(self.stats.in_use);
    }

    pub(crate) fn give_back(&mut self, class: u64, buf: wgpu::Buffer) {
        self.stats.in_use -= class;
        self.free.entry(class).or_default().push(buf);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }

    pub(crate) fn reset_peak(&mut self) {
        self.stats.peak = self.stats.in_use;
    }

    /// Drop every cached buffer (e.g. after an out-of-memory error, before retrying).
    pub(crate) fn trim(&mut self) {
        for (class, bufs) in self.free.drain() {
            self.stats.allocated -= class * bufs.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_bound_waste() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(4), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 512);
        for bytes in [1000u64, 4097, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes && c.is_multiple_of(4));
            assert!(
                (c - bytes) as f64 <= bytes as f64 / 8.0 + 256.0,
                "{bytes} -> {c}"
            );
        }
    }
}
