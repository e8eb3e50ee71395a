//! The GPU device: adapter choice, the features and limits we use, and the shared state
//! (buffer pool, pipeline cache, pending command batch) that every tensor points back to.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pool::{Pool, PoolStats};
use crate::runtime::Runtime;

/// Environment variable: a case-insensitive substring of the adapter name to use.
pub const ADAPTER_ENV: &str = "TRAINER_ADAPTER";
/// Environment variable: set to `1` to compile shaders with wgpu's runtime bounds checks.
pub const SHADER_CHECKS_ENV: &str = "TRAINER_SHADER_CHECKS";

/// How to open a device. `Default` reads nothing; [`DeviceOptions::from_env`] reads
/// `WGPU_BACKEND`, `TRAINER_ADAPTER` and `TRAINER_SHADER_CHECKS`.
#[derive(Debug, Clone, Default)]
pub struct DeviceOptions {
    /// Restrict to these backends (`None`: all compiled in).
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring the adapter name must contain.
    pub adapter_filter: Option<String>,
    /// Keep wgpu's shader bounds checks (slow, for tests); off by default for speed.
    pub shader_checks: bool,
}

impl DeviceOptions {
    pub fn from_env() -> Self {
        let checks = std::env::var(SHADER_CHECKS_ENV)
            .map(|v| !matches!(v.as_str(), "" | "0" | "false" | "off"))
            .unwrap_or(false);
        Self {
            backends: wgpu::Backends::from_env(),
            adapter_filter: std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty()),
            shader_checks: checks,
        }
    }
}

/// Adapter capabilities the kernels care about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub f16: bool,
    pub subgroups: bool,
    pub cooperative_matrix: bool,
    pub timestamps: bool,
}

/// A handle on one GPU (cheap to clone).
#[derive(Clone)]
pub struct Device(pub(crate) Arc<DeviceInner>);

pub(crate) struct DeviceInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) features: Features,
    pub(crate) limits: wgpu::Limits,
    pub(crate) shader_checks: bool,
    pub(crate) pool: Mutex<Pool>,
    pub(crate) runtime: Mutex<Runtime>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Device({} [{:?}])",
            self.0.info.name, self.0.info.backend
        )
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

impl Device {
    /// Open the best adapter as the environment says (see [`DeviceOptions::from_env`]).
    pub fn new() -> Result<Self> {
        Self::with_options(DeviceOptions::from_env())
    }

    /// Open the best adapter: a discrete GPU, then integrated, then virtual, then CPU
    /// (such as Mesa's lavapipe), among those that pass the options' filters.
    pub fn with_options(opts: DeviceOptions) -> Result<Self> {
        let backends = opts.backends.unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        let filter = opts.adapter_filter.as_ref().map(|f| f.to_lowercase());
        let best = adapters
            .into_iter()
            .filter(|a| match &filter {
                Some(f) => a.get_info().name.to_lowercase().contains(f),
                None => true,
            })
            .max_by_key(|a| {
                let i = a.get_info();
                // Prefer Vulkan/Metal/DX12 over GL at equal device type.
                (type_rank(i.device_type), i.backend != wgpu::Backend::Gl)
            });
        let Some(adapter) = best else {
            return Err(Error::NoAdapter {
                filter: match &opts.adapter_filter {
                    Some(f) => format!(" whose name contains {f:?} ({ADAPTER_ENV})"),
                    None => String::new(),
                },
                seen: if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join("; ")
                },
            });
        };
        Self::open(adapter, opts.shader_checks)
    }

    fn open(adapter: wgpu::Adapter, shader_checks: bool) -> Result<Self> {
        let info = adapter.get_info();
        let mut offered = adapter.features();
        // Our cooperative-matrix kernels use 16x16x16 tiles, f16 inputs, f32 accumulation.
        let has_coop_shape = adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        });
        if !has_coop_shape {
            offered.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
            | wgpu::Features::TIMESTAMP_QUERY;
        let required = offered & wanted;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("engine"),
            required_features: required,
            required_limits: limits.clone(),
            // SAFETY: cooperative matrices are the only experimental feature we request, and
            // only when the adapter reports it; kernels using it are selected by this flag.
            experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        let features = Features {
            f16: required.contains(wgpu::Features::SHADER_F16),
            subgroups: required.contains(wgpu::Features::SUBGROUP),
            cooperative_matrix: required.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            timestamps: required.contains(wgpu::Features::TIMESTAMP_QUERY),
        };
        let runtime = Runtime::new(&device, &limits);
        Ok(Device(Arc::new(DeviceInner {
            device,
            queue,
            info,
            features,
            limits,
            shader_checks,
            pool: Mutex::new(Pool::default()),
            runtime: Mutex::new(runtime),
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.info.name
    }
    pub fn backend(&self) -> wgpu::Backend {
        self.0.info.backend
    }
    pub fn device_type(&self) -> wgpu::DeviceType {
        self.0.info.device_type
    }
    pub fn features(&self) -> Features {
        self.0.features
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }
    /// Whether shaders are compiled with runtime bounds checks.
    pub fn shader_checks(&self) -> bool {
        self.0.shader_checks
    }
    /// Largest buffer one kernel binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.0
            .limits
            .max_storage_buffer_binding_size
            .min(self.0.limits.max_buffer_size)
    }
    /// Bytes held by the buffer pool, in use and at peak.
    pub fn pool_stats(&self) -> PoolStats {
        self.0
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats()
    }
    /// Reset the peak counter of the pool to the bytes now in use.
    pub fn reset_peak(&self) {
        self.0
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset_peak()
    }
    /// Free the pool's cached (unused) buffers.
    pub fn trim_pool(&self) {
        self.0.pool.lock().unwrap_or_else(|e| e.into_inner()).trim()
    }
    /// Number of dispatches recorded since the device was opened.
    pub fn dispatch_count(&self) -> u64 {
        self.runtime().dispatches_total
    }
    pub(crate) fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    pub(crate) fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        self.0.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }
}
