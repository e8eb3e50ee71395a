//! Execution: GPU storage from the pool, the pipeline cache keyed by (kernel, entry point,
//! override constants), and one pending command encoder that ops record into and that is
//! submitted at sync points (a download, an explicit `sync`) and, without waiting, every
//! [`SUBMIT_EVERY`] dispatches.

use std::collections::HashMap;
use std::sync::Arc;

use kernels::{Launch, Source};

use crate::device::{Device, DeviceInner};
use crate::error::{Error, Result};
use crate::pool::size_class;
use crate::profile::Profiler;

/// Bytes of one uniform parameter slot; kernels' parameter structs must fit in it.
const PARAM_SLOT: u64 = 256;
/// Uniform ring size: the number of dispatches per submission is at most RING / slot.
const UNIFORM_RING: u64 = 1 << 20;
/// Dispatches after which the open batch is submitted without waiting, so that the GPU starts
/// on a long step (a training step records thousands) while the host records the rest,
/// instead of idling until the first sync point.
pub(crate) const SUBMIT_EVERY: u32 = 256;

/// A GPU buffer lent by the pool; returned to it on drop.
pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    dev: Arc<DeviceInner>,
    /// Bumped by every op that writes this storage after it was made (an optimizer step on
    /// a parameter), so copies made from it can tell they are stale.
    version: std::sync::atomic::AtomicU64,
}

impl Storage {
    pub(crate) fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub(crate) fn mark_written(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("storage buffer present until drop")
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            let mut pool = self.dev.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.give_back(self.class, buf);
        }
    }
}

type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

pub(crate) struct Runtime {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    encoder: Option<wgpu::CommandEncoder>,
    ring: wgpu::Buffer,
    ring_bytes: Vec<u8>,
    slot: u64,
    pub(crate) dispatches_total: u64,
    /// Dispatches in the open batch.
    batch_dispatches: u32,
    /// Command buffers submitted to the queue (one per flush).
    pub(crate) submits_total: u64,
    /// Timestamps around every dispatch, while `Device::profile_start` is in effect.
    pub(crate) profiler: Option<Profiler>,
}

impl Runtime {
    pub(crate) fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Self {
        let slot = PARAM_SLOT.max(limits.min_uniform_buffer_offset_alignment as u64);
        let ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform ring"),
            size: UNIFORM_RING,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Runtime {
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            encoder: None,
            ring,
            ring_bytes: Vec::new(),
            slot,
            dispatches_total: 0,
            batch_dispatches: 0,
            submits_total: 0,
            profiler: None,
        }
    }
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

impl Device {
    /// A pooled buffer of at least `bytes` bytes.
    pub(crate) fn alloc_storage(&self, op: &'static str, bytes: u64) -> Result<Storage> {
        self.check()?;
        let limit = self.0.limits.max_buffer_size;
        if bytes > limit {
            return Err(Error::BufferTooLarge { op, bytes, limit });
        }
        let class = size_class(bytes).min(limit.max(4) / 4 * 4);
        let cached = self
            .0
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(class);
        let buffer = match cached {
            Some(b) => b,
            None => {
                let scope = self
                    .0
                    .device
                    .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let b = self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: class,
                    usage: storage_usage(),
                    mapped_at_creation: false,
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(Error::OutOfMemory {
                        bytes: class,
                        in_use: self.pool_stats().in_use,
                        reason: e.to_string(),
                    });
                }
                self.check()?;
                self.0
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .created(class);
                b
            }
        };
        Ok(Storage {
            buffer: Some(buffer),
            class,
            dev: self.0.clone(),
            version: Default::default(),
        })
    }

    /// Record a copy of `data` into `dst` (ordered with the pending dispatches).
    pub(crate) fn upload(&self, dst: &Storage, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.check()?;
        let padded = (data.len() as u64).div_ceil(4) * 4;
        let staging = self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: padded,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::MAP_WRITE,
            mapped_at_creation: true,
        });
        {
            let mut view = staging.get_mapped_range_mut(..).map_err(|e| {
                self.check().err().unwrap_or(Error::Gpu {
                    op: "upload",
                    reason: e.to_string(),
                })
            })?;
            view.slice(..data.len()).copy_from_slice(data);
        }
        staging.unmap();
        let mut rt = self.runtime();
        let enc = rt.encoder(&self.0.device);
        enc.copy_buffer_to_buffer(&staging, 0, dst.buffer(), 0, padded);
        Ok(())
    }

    /// Submit everything recorded, then copy `bytes` bytes of `src` back to the host.
    pub(crate) fn download(&self, src: &Storage, bytes: u64) -> Result<Vec<u8>> {
        Ok(self
            .download_many(&[(src, bytes)])?
            .pop()
            .expect("one buffer asked, one returned"))
    }

    /// [`Device::download`] of several buffers with one submission and one wait.
    pub(crate) fn download_many(&self, srcs: &[(&Storage, u64)]) -> Result<Vec<Vec<u8>>> {
        if srcs.iter().all(|&(_, bytes)| bytes == 0) {
            return Ok(srcs.iter().map(|_| Vec::new()).collect());
        }
        self.check()?;
        let stagings: Vec<Option<wgpu::Buffer>> = {
            let mut rt = self.runtime();
            let stagings = srcs
                .iter()
                .map(|&(src, bytes)| {
                    (bytes > 0).then(|| {
                        let padded = bytes.div_ceil(4) * 4;
                        let staging = self.0.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("download"),
                            size: padded,
                            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                            mapped_at_creation: false,
                        });
                        rt.encoder(&self.0.device).copy_buffer_to_buffer(
                            src.buffer(),
                            0,
                            &staging,
                            0,
                            padded,
                        );
                        staging
                    })
                })
                .collect();
            rt.flush(&self.0.queue);
            stagings
        };
        let (tx, rx) = std::sync::mpsc::channel();
        for staging in stagings.iter().flatten() {
            let tx = tx.clone();
            staging.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
        }
        drop(tx);
        // A fault the driver reported explains a failed wait better than the wait's own error.
        let failed = |reason: String| {
            self.check().err().unwrap_or(Error::Gpu {
                op: "download",
                reason,
            })
        };
        self.0
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| failed(e.to_string()))?;
        for _ in stagings.iter().flatten() {
            rx.recv()
                .map_err(|e| failed(e.to_string()))?
                .map_err(|e| failed(e.to_string()))?;
        }
        self.check()?;
        stagings
            .iter()
            .zip(srcs)
            .map(|(staging, &(_, bytes))| match staging {
                None => Ok(Vec::new()),
                Some(staging) => {
                    let view = staging
                        .get_mapped_range(..)
                        .map_err(|e| failed(e.to_string()))?;
                    Ok(view[..bytes as usize].to_vec())
                }
            })
            .collect()
    }

    /// Submit the pending commands and wait until the GPU has finished them.
    pub fn sync(&self) -> Result<()> {
        self.check()?;
        self.runtime().flush(&self.0.queue);
        self.0
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| {
                self.check().err().unwrap_or(Error::Gpu {
                    op: "sync",
                    reason: e.to_string(),
                })
            })?;
        self.check()
    }

    /// Record one dispatch of `launch` over `buffers` (bound at the kernel's binding numbers,
    /// after the uniform parameters at 0), each buffer bound over its first `bytes` bytes.
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        launch: &Launch,
        buffers: &[(&Storage, u64)],
    ) -> Result<()> {
        if buffers.len() != launch.kernel.bindings.len() {
            return Err(Error::Gpu {
                op,
                reason: format!(
                    "kernel {} takes {} buffers, {} given",
                    launch.kernel.entry,
                    launch.kernel.bindings.len(),
                    buffers.len()
                ),
            });
        }
        let needs = launch.kernel.source.needs;
        let have = self.0.features;
        for (needed, has, feature) in [
            (needs.f16, have.f16, "SHADER_F16"),
            (needs.subgroups, have.subgroups, "SUBGROUP"),
            (
                needs.cooperative_matrix,
                have.cooperative_matrix,
                "EXPERIMENTAL_COOPERATIVE_MATRIX",
            ),
        ] {
            if needed && !has {
                return Err(Error::MissingFeature {
                    op,
                    feature,
                    adapter: self.0.info.name.clone(),
                });
            }
        }
        self.check()?;
        // Compare what is bound (rounded up to whole words), so an odd f16 count cannot push
        // a binding one word past the limit.
        let limit = self.max_binding_bytes();
        for &(_, bytes) in buffers {
            if bytes.max(4).div_ceil(4) * 4 > limit {
                return Err(Error::BindingTooLarge { op, bytes, limit });
            }
        }
        let max_wg = self.0.limits.max_compute_workgroups_per_dimension;
        if launch.workgroups.iter().any(|&w| w > max_wg) {
            return Err(Error::Gpu {
                op,
                reason: format!(
                    "{:?} workgroups exceed the adapter's {max_wg} per dimension",
                    launch.workgroups
                ),
            });
        }
        if launch.workgroups.contains(&0) {
            return Ok(());
        }
        let params: &[u8] = bytemuck::cast_slice(&launch.params);
        assert!(
            params.len() as u64 <= PARAM_SLOT,
            "kernel {} has a parameter block over {PARAM_SLOT} bytes",
            launch.kernel.entry
        );

        let mut rt = self.runtime();
        if rt.ring_bytes.len() as u64 + rt.slot > UNIFORM_RING
            || rt.profiler.as_ref().is_some_and(Profiler::full)
        {
            rt.flush(&self.0.queue);
        }
        let (pipeline, layout) = rt.pipeline(self, op, launch)?;
        let offset = rt.ring_bytes.len() as u64;
        let slot = rt.slot as usize;
        rt.ring_bytes.extend_from_slice(params);
        rt.ring_bytes.resize(offset as usize + slot, 0);

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rt.ring,
                offset,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (&binding, &(s, bytes)) in launch.kernel.bindings.iter().zip(buffers) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: s.buffer(),
                    offset: 0,
                    size: wgpu::BufferSize::new(bytes.max(4).div_ceil(4) * 4),
                }),
            });
        }
        let group = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(op),
            layout: &layout,
            entries: &entries,
        });
        let [x, y, z] = launch.workgroups;
        {
            let rt = &mut *rt;
            let enc = rt
                .encoder
                .get_or_insert_with(|| new_encoder(&self.0.device));
            let timestamp_writes = rt.profiler.as_mut().map(|p| p.next(op, launch));
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(op),
                timestamp_writes,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
        rt.dispatches_total += 1;
        rt.batch_dispatches += 1;
        if rt.batch_dispatches >= SUBMIT_EVERY {
            rt.flush(&self.0.queue);
        }
        Ok(())
    }
}

fn new_encoder(device: &wgpu::Device) -> wgpu::CommandEncoder {
    device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("batch"),
    })
}

impl Runtime {
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| new_encoder(device))
    }

    /// Submit the open batch (with the parameter ring written first); while profiling, also
    /// resolve its timestamps and wait for them.
    pub(crate) fn flush(&mut self, queue: &wgpu::Queue) {
        if let Some(mut enc) = self.encoder.take() {
            if !self.ring_bytes.is_empty() {
                queue.write_buffer(&self.ring, 0, &self.ring_bytes);
                self.ring_bytes.clear();
            }
            if let Some(p) = &self.profiler {
                p.resolve(&mut enc);
            }
            queue.submit([enc.finish()]);
            self.submits_total += 1;
            self.batch_dispatches = 0;
            if let Some(p) = &mut self.profiler {
                p.collect();
            }
        }
    }

    fn module(
        &mut self,
        dev: &Device,
        op: &'static str,
        src: &'static Source,
    ) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.get(src.name) {
            return Ok(m.clone());
        }
        let device = &dev.0.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(src.name),
            source: wgpu::ShaderSource::Wgsl(src.wgsl.into()),
        };
        let module = if dev.0.shader_checks {
            device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel is tested with bounds checks on, over edge shapes, and
            // its launcher sizes the grid so that no invocation indexes out of range.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                op,
                reason: format!("shader {} does not compile: {e}", src.name),
            });
        }
        self.modules.insert(src.name, module.clone());
        Ok(module)
    }

    fn pipeline(
        &mut self,
        dev: &Device,
        op: &'static str,
        launch: &Launch,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let k = launch.kernel;
        let key: PipelineKey = (
            k.source.name,
            k.entry,
            launch
                .constants
                .iter()
                .map(|&(n, v)| (n, v.to_bits()))
                .collect(),
        );
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(dev, op, k.source)?;
        let device = &dev.0.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry),
            layout: None,
            module: &module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &launch.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                op,
                reason: format!(
                    "pipeline {}::{} does not build: {e}",
                    k.source.name, k.entry
                ),
            });
        }
        let layout = pipeline.get_bind_group_layout(0);
        self.pipelines
            .insert(key, (pipeline.clone(), layout.clone()));
        Ok((pipeline, layout))
    }
}
