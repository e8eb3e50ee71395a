//! GPU time per kernel from timestamp queries: while profiling, every dispatch's compute pass
//! writes a timestamp at its start and end; at each flush the stamps are resolved, read back
//! and added to the kernel's total. The sum over kernels against the host's wall time shows
//! how much of a step the GPU spends idle (waiting for the host to record and submit).
//!
//! Profiling stalls the host at every flush (at most every `SUBMIT_EVERY` dispatches, see
//! `runtime.rs`) to read the stamps back, so the wall time of a profiled step is not a figure;
//! the kernel times are. A failure to read them back ends the timing (nothing more is resolved)
//! and is returned by `profile_stop`; the work itself is not disturbed.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Timestamps one batch can hold: wgpu's largest query set. Two per dispatch.
const QUERIES_PER_BATCH: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// What a dispatch is filed under: the engine op, the WGSL file and entry point, and the
/// grid (which tells apart the shapes of one kernel, e.g. the projections of a layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    op: &'static str,
    source: &'static str,
    entry: &'static str,
    workgroups: [u32; 3],
}

/// GPU time of one kernel at one grid (or, from [`Profile::by_kernel`], over all its grids,
/// with `workgroups` zero).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The engine op that recorded it (`matmul`, `attention_backward`, ...).
    pub op: &'static str,
    /// The WGSL file (`matmul.wgsl`) and entry point.
    pub source: &'static str,
    pub entry: &'static str,
    pub workgroups: [u32; 3],
    pub calls: u64,
    /// Nanoseconds between the start and end stamps of its passes, summed over calls.
    pub ns: f64,
}

/// Per-kernel GPU times of the dispatches recorded between [`crate::Device::profile_start`]
/// and [`crate::Device::profile_stop`], longest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub kernels: Vec<KernelTime>,
}

impl Profile {
    /// Dispatches timed.
    pub fn dispatches(&self) -> u64 {
        self.kernels.iter().map(|k| k.calls).sum()
    }

    /// GPU nanoseconds summed over every dispatch (time the GPU ran our kernels).
    pub fn total_ns(&self) -> f64 {
        self.kernels.iter().map(|k| k.ns).sum()
    }

    /// The same times merged over grids: one row per (op, source, entry), longest first.
    pub fn by_kernel(&self) -> Vec<KernelTime> {
        let mut merged: HashMap<(&str, &str, &str), KernelTime> = HashMap::new();
        for k in &self.kernels {
            let row = merged
                .entry((k.op, k.source, k.entry))
                .or_insert_with(|| KernelTime {
                    workgroups: [0; 3],
                    calls: 0,
                    ns: 0.0,
                    ..k.clone()
                });
            row.calls += k.calls;
            row.ns += k.ns;
        }
        sorted(merged.into_values().collect())
    }

    /// A text table of the `rows` longest kernels (merged over grids when `merge`): share of
    /// the total, milliseconds, calls, microseconds per call.
    pub fn table(&self, rows: usize, merge: bool) -> String {
        let total = self.total_ns().max(1.0);
        let list = if merge {
            self.by_kernel()
        } else {
            self.kernels.clone()
        };
        let mut out = format!(
            "{:>6} {:>10} {:>7} {:>10}  kernel\n",
            "share", "ms", "calls", "us/call"
        );
        for k in list.iter().take(rows) {
            let grid = if merge {
                String::new()
            } else {
                format!(" {:?}", k.workgroups)
            };
            out.push_str(&format!(
                "{:>5.1}% {:>10.3} {:>7} {:>10.1}  {} ({}::{}){grid}\n",
                100.0 * k.ns / total,
                k.ns / 1e6,
                k.calls,
                k.ns / 1e3 / k.calls.max(1) as f64,
                k.op,
                k.source,
                k.entry,
            ));
        }
        out.push_str(&format!(
            "{:>5.1}% {:>10.3} {:>7}             all {} kernels\n",
            100.0,
            self.total_ns() / 1e6,
            self.dispatches(),
            list.len()
        ));
        out
    }
}

fn sorted(mut v: Vec<KernelTime>) -> Vec<KernelTime> {
    v.sort_by(|a, b| b.ns.total_cmp(&a.ns).then(a.entry.cmp(b.entry)));
    v
}

/// The profiler's state inside the runtime.
pub(crate) struct Profiler {
    device: wgpu::Device,
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// The dispatches of the open batch, in query order (dispatch i wrote 2i and 2i + 1).
    pending: Vec<Key>,
    totals: HashMap<Key, (u64, f64)>,
    ns_per_tick: f64,
    /// The first failure reading stamps back; returned by `Device::profile_stop`.
    failed: Option<String>,
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let bytes = QUERIES_PER_BATCH as u64 * 8;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            device: device.clone(),
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES_PER_BATCH,
            }),
            resolve: buffer(
                "profile resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "profile readback",
                wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            ),
            pending: Vec::new(),
            totals: HashMap::new(),
            ns_per_tick: queue.get_timestamp_period() as f64,
            failed: None,
        }
    }

    /// Whether the open batch has no room for another dispatch (flush first). With batches
    /// submitted every `SUBMIT_EVERY` (256) dispatches this does not happen; it keeps the
    /// query indices in range whatever that constant becomes.
    pub(crate) fn full(&self) -> bool {
        (self.pending.len() as u32 + 1) * 2 > QUERIES_PER_BATCH
    }

    /// File the next dispatch and give the stamps its pass writes.
    pub(crate) fn next(
        &mut self,
        op: &'static str,
        launch: &kernels::Launch,
    ) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.pending.len() as u32;
        self.pending.push(Key {
            op,
            source: launch.kernel.source.name,
            entry: launch.kernel.entry,
            workgroups: launch.workgroups,
        });
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Record the resolve of the open batch's stamps at the end of `enc` (before it is
    /// submitted); `collect` reads them once it has run.
    pub(crate) fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        // After a failed read the readback buffer may still be mapped: leave it alone.
        if self.pending.is_empty() || self.failed.is_some() {
            return;
        }
        let n = 2 * self.pending.len() as u32;
        enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, n as u64 * 8);
    }

    /// After the batch with the resolve was submitted: wait for it, read the stamps and add
    /// each dispatch's span to its kernel.
    pub(crate) fn collect(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.pending);
        if self.failed.is_some() {
            return;
        }
        match self.read(2 * keys.len() as u64 * 8) {
            Ok(stamps) => {
                for (key, pair) in keys.into_iter().zip(stamps.chunks_exact(2)) {
                    // A driver may give a zero or wrapped stamp; such a span counts as 0.
                    let ticks = pair[1].saturating_sub(pair[0]);
                    let t = self.totals.entry(key).or_insert((0, 0.0));
                    t.0 += 1;
                    t.1 += ticks as f64 * self.ns_per_tick;
                }
            }
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    fn read(&self, bytes: u64) -> std::result::Result<Vec<u64>, String> {
        let slice = self.readback.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| e.to_string())?;
        rx.recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let stamps = {
            let view = slice.get_mapped_range().map_err(|e| e.to_string())?;
            bytemuck::pod_collect_to_vec(&view[..])
        };
        self.readback.unmap();
        Ok(stamps)
    }

    /// The totals so far, or the first failure to read them.
    pub(crate) fn finish(self) -> Result<Profile> {
        if let Some(reason) = self.failed {
            return Err(Error::Gpu {
                op: "profile",
                reason: format!("reading the timestamps back: {reason}"),
            });
        }
        Ok(Profile {
            kernels: sorted(
                self.totals
                    .into_iter()
                    .map(|(k, (calls, ns))| KernelTime {
                        op: k.op,
                        source: k.source,
                        entry: k.entry,
                        workgroups: k.workgroups,
                        calls,
                        ns,
                    })
                    .collect(),
            ),
        })
    }
}

impl crate::Device {
    /// Time every dispatch recorded from now on (the adapter needs timestamp queries; see
    /// [`crate::Features::timestamps`]). Work recorded before is submitted first and not
    /// timed. Starting again discards the times so far.
    pub fn profile_start(&self) -> Result<()> {
        if !self.0.features.timestamps {
            return Err(Error::MissingFeature {
                op: "profile",
                feature: "TIMESTAMP_QUERY",
                adapter: self.0.info.name.clone(),
            });
        }
        self.check()?;
        let mut rt = self.runtime();
        rt.flush(&self.0.queue);
        rt.profiler = Some(Profiler::new(&self.0.device, &self.0.queue));
        Ok(())
    }

    /// Submit what is recorded, wait for it, stop timing and return the GPU time per kernel
    /// since [`Self::profile_start`].
    pub fn profile_stop(&self) -> Result<Profile> {
        // Profiling ends here whatever else fails.
        let profiler = {
            let mut rt = self.runtime();
            if self.check().is_ok() {
                rt.flush(&self.0.queue);
            }
            rt.profiler.take()
        };
        self.check()?;
        profiler
            .ok_or(Error::Gpu {
                op: "profile_stop",
                reason: "profiling was not started (Device::profile_start)".into(),
            })?
            .finish()
    }

    /// Whether dispatches are being timed.
    pub fn profiling(&self) -> bool {
        self.runtime().profiler.is_some()
    }
}
