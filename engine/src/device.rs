//! The GPU device: adapter choice, the features and limits we use, and the shared state
//! (buffer pool, pipeline cache, pending command batch) that every tensor points back to.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pool::{Pool, PoolStats};
use crate::runtime::Runtime;
use kernels::matmul::Fragment;

/// Environment variable: a case-insensitive substring of the adapter name to use.
pub const ADAPTER_ENV: &str = "TRAINER_ADAPTER";
/// Environment variable: set to `1` to compile shaders with wgpu's runtime bounds checks.
pub const SHADER_CHECKS_ENV: &str = "TRAINER_SHADER_CHECKS";
/// Environment variable: a cap in bytes on the largest kernel binding (below the adapter's),
/// to try what a smaller GPU would refuse or split.
pub const MAX_BINDING_ENV: &str = "TRAINER_MAX_BINDING_BYTES";

/// Environment variable: which cooperative-matrix matmul kernel f16 products run on (see
/// [`CoopMatmul`]), to compare them in a real run.
pub const COOP_MATMUL_ENV: &str = "TRAINER_COOP_MATMUL";
/// Environment variable: set to `1` to refuse an adapter on which the kernels have no
/// cooperative matrices (scripts/test.sh's run on a lavapipe that has them, so that their
/// tests cannot pass by falling back to the SIMT kernels).
pub const REQUIRE_COOP_ENV: &str = "TRAINER_REQUIRE_COOP";

/// The cooperative-matrix matmul kernels (`kernels/wgsl/matmul_coop.wgsl`), one of which
/// runs every f16 x f16 product whose sizes fit them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoopMatmul {
    /// Fragments loaded straight from global memory (the design GPU-NOTES measured).
    #[default]
    Direct,
    /// Slabs staged through workgroup memory.
    Staged,
    /// Staged, with the next slab fetched into registers during the current one's products.
    Prefetch,
}

impl CoopMatmul {
    const NAMES: [(&'static str, CoopMatmul); 3] = [
        ("direct", CoopMatmul::Direct),
        ("staged", CoopMatmul::Staged),
        ("prefetch", CoopMatmul::Prefetch),
    ];

    /// `direct`, `staged` or `prefetch`.
    pub fn parse(s: &str) -> Result<CoopMatmul> {
        let s = s.trim();
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, k)| k)
            .ok_or_else(|| Error::BadEnv {
                var: COOP_MATMUL_ENV,
                value: s.to_string(),
                reason: "expected direct, staged or prefetch".into(),
            })
    }
}

/// The largest binding the engine uses on any adapter: 2 GiB less 4 bytes, so that every
/// element index and byte count a kernel computes fits in 32 bits (wgpu caps Vulkan and DX12
/// at i32::MAX already; Metal reports more).
pub const BINDING_CEILING: u64 = (1 << 31) - 4;

/// How to open a device. `Default` reads nothing; [`DeviceOptions::from_env`] reads
/// `WGPU_BACKEND`, `TRAINER_ADAPTER`, `TRAINER_SHADER_CHECKS`, `TRAINER_MAX_BINDING_BYTES`,
/// `TRAINER_COOP_MATMUL` and `TRAINER_REQUIRE_COOP`.
#[derive(Debug, Clone, Default)]
pub struct DeviceOptions {
    /// Restrict to these backends (`None`: all compiled in).
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring the adapter name must contain.
    pub adapter_filter: Option<String>,
    /// Keep wgpu's shader bounds checks (slow, for tests); off by default for speed.
    pub shader_checks: bool,
    /// Lower the largest kernel binding to this many bytes (tests of the limit checks and of
    /// the split vocabulary matrices, without multi-GiB tensors).
    pub max_binding_bytes: Option<u64>,
    /// The cooperative-matrix kernel for f16 products (`None`: [`CoopMatmul::Direct`]), as
    /// given (checked when the device opens).
    pub coop_matmul: Option<String>,
    /// Fail to open an adapter on which the kernels have no cooperative matrices.
    pub require_coop: bool,
}

impl DeviceOptions {
    pub fn from_env() -> Self {
        let flag = |name: &str| {
            std::env::var(name)
                .map(|v| !matches!(v.as_str(), "" | "0" | "false" | "off"))
                .unwrap_or(false)
        };
        Self {
            backends: wgpu::Backends::from_env(),
            adapter_filter: std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty()),
            shader_checks: flag(SHADER_CHECKS_ENV),
            max_binding_bytes: std::env::var(MAX_BINDING_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            coop_matmul: std::env::var(COOP_MATMUL_ENV)
                .ok()
                .filter(|s| !s.is_empty()),
            require_coop: flag(REQUIRE_COOP_ENV),
        }
    }
}

/// The first failure the driver reported on its own: the device lost, or an error outside
/// any error scope. Once set, every later operation fails with it (results are unreliable).
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    Lost(String),
    OutOfMemory(String),
    Other(String),
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

/// Work counters of a device since it was opened: compute dispatches recorded and command
/// buffers submitted (one per sync point: a download, a full uniform ring, `Device::sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub dispatches: u64,
    pub submits: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, earlier: Counters) -> Counters {
        Counters {
            dispatches: self.dispatches - earlier.dispatches,
            submits: self.submits - earlier.submits,
        }
    }
}

pub(crate) struct DeviceInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) features: Features,
    pub(crate) limits: wgpu::Limits,
    pub(crate) shader_checks: bool,
    pub(crate) max_binding: u64,
    pub(crate) coop_matmul: CoopMatmul,
    pub(crate) coop_fragment: Option<Fragment>,
    pub(crate) coop_offered: Vec<String>,
    pub(crate) fault: Arc<Mutex<Option<Fault>>>,
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
        Self::open(adapter, &opts)
    }

    fn open(adapter: wgpu::Adapter, opts: &DeviceOptions) -> Result<Self> {
        let coop_matmul = match &opts.coop_matmul {
            Some(s) => CoopMatmul::parse(s)?,
            None => CoopMatmul::default(),
        };
        let info = adapter.get_info();
        let mut offered = adapter.features();
        // Our cooperative-matrix kernels take f16 inputs and accumulate in f32, on 16x16x16
        // fragments, or 8x8x8 ones where those are all the adapter offers.
        let coop_props = adapter.cooperative_matrix_properties();
        let offers = |side: u32| {
            coop_props.iter().any(|p| {
                (p.m_size, p.n_size, p.k_size) == (side, side, side)
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            })
        };
        let coop_offered: Vec<String> = coop_props
            .iter()
            .map(|p| {
                let ty = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
                let (m, n, k) = (p.m_size, p.n_size, p.k_size);
                format!("{m}x{n}x{k} {} -> {}", ty(p.ab_type), ty(p.cr_type))
            })
            .collect();
        let offered_fragment = [Fragment::X16, Fragment::X8]
            .into_iter()
            .find(|f| offers(f.side()));
        if offered_fragment.is_none() {
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
        // Errors outside a scope (in a submission, say) and a lost device arrive on wgpu's
        // threads; they are kept and returned by the next operation instead of being lost.
        let fault: Arc<Mutex<Option<Fault>>> = Arc::default();
        let sink = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
            let f = match &e {
                wgpu::Error::OutOfMemory { .. } => Fault::OutOfMemory(e.to_string()),
                _ => Fault::Other(e.to_string()),
            };
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(f);
        }));
        let sink = fault.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let f = Fault::Lost(format!("{reason:?}: {msg}"));
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            // A lost device outranks an error it caused.
            if !matches!(*slot, Some(Fault::Lost(_))) {
                *slot = Some(f);
            }
        });
        let features = Features {
            f16: required.contains(wgpu::Features::SHADER_F16),
            subgroups: required.contains(wgpu::Features::SUBGROUP),
            cooperative_matrix: required.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            timestamps: required.contains(wgpu::Features::TIMESTAMP_QUERY),
        };
        // The coop kernels find their subgroup with subgroup builtins, and run on Vulkan only
        // (where they are tested, on lavapipe's 8x8x8 fragments; wgpu 30 offers Metal's 8x8
        // ones for f32 inputs only, GPU-NOTES).
        let coop_fragment = offered_fragment.filter(|_| {
            features.cooperative_matrix
                && features.subgroups
                && info.backend == wgpu::Backend::Vulkan
        });
        if opts.require_coop && coop_fragment.is_none() {
            return Err(Error::MissingFeature {
                op: "opening the device with TRAINER_REQUIRE_COOP",
                feature: "EXPERIMENTAL_COOPERATIVE_MATRIX (f16 x f16 -> f32, on Vulkan)",
                adapter: info.name.clone(),
            });
        }
        let runtime = Runtime::new(&device, &limits);
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(opts.max_binding_bytes.unwrap_or(u64::MAX))
            .min(BINDING_CEILING)
            / 4
            * 4;
        Ok(Device(Arc::new(DeviceInner {
            device,
            queue,
            info,
            features,
            limits,
            shader_checks: opts.shader_checks,
            max_binding,
            coop_matmul,
            coop_fragment,
            coop_offered,
            fault,
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
    /// Largest buffer one kernel binding may cover, in bytes (a multiple of 4): the adapter's
    /// limit, at most [`BINDING_CEILING`], lowered by [`DeviceOptions::max_binding_bytes`].
    pub fn max_binding_bytes(&self) -> u64 {
        self.0.max_binding
    }
    /// The cooperative-matrix kernel f16 products run on where they fit.
    pub fn coop_matmul(&self) -> CoopMatmul {
        self.0.coop_matmul
    }
    /// Whether f16 products are the default here (`--precision auto`): cooperative matrices
    /// on a GPU. A CPU adapter's (lavapipe's, emulated, no slower than its f32 kernel at
    /// 256^3: BENCHMARKS.md) run when asked for, but the default there stays f32, the
    /// precision of the references the CPU checks against.
    pub fn prefers_f16(&self) -> bool {
        self.coop_fragment().is_some() && self.device_type() != wgpu::DeviceType::Cpu
    }
    /// The cooperative-matrix fragments the kernels use (`None` where they use none: no
    /// cooperative matrices of a shape they take, no subgroups, or not Vulkan).
    pub fn coop_fragment(&self) -> Option<Fragment> {
        self.0.coop_fragment
    }
    /// Every cooperative-matrix configuration the adapter offers through wgpu, as
    /// "MxNxK a -> c" (e.g. "16x16x16 f16 -> f32"), whether the kernels use it or not.
    pub fn coop_offered(&self) -> &[String] {
        &self.0.coop_offered
    }
    /// The failure the driver reported on its own since the device was opened (a lost
    /// device, an error in a submission), as an error; `Ok` while there is none.
    pub fn check(&self) -> Result<()> {
        let fault = self.0.fault.lock().unwrap_or_else(|e| e.into_inner());
        match fault.as_ref() {
            None => Ok(()),
            Some(Fault::Lost(reason)) => Err(Error::DeviceLost {
                reason: reason.clone(),
            }),
            Some(Fault::OutOfMemory(reason)) => Err(Error::OutOfMemory {
                bytes: 0,
                in_use: self.pool_stats().in_use,
                reason: reason.clone(),
            }),
            Some(Fault::Other(reason)) => Err(Error::Gpu {
                op: "device",
                reason: format!(
                    "the driver reported an error, results since are unreliable: {reason}"
                ),
            }),
        }
    }
    /// Make the device lost, as a driver reset would (for tests of what follows).
    #[doc(hidden)]
    pub fn simulate_loss(&self) {
        self.0.device.destroy();
        let _ = self.0.device.poll(wgpu::PollType::Poll);
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
    /// Dispatches recorded and command buffers submitted since the device was opened
    /// (differences of two readings count the work between them; see [`Counters`]).
    pub fn counters(&self) -> Counters {
        let rt = self.runtime();
        Counters {
            dispatches: rt.dispatches_total,
            submits: rt.submits_total,
        }
    }
    pub(crate) fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    pub(crate) fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        self.0.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }
}
