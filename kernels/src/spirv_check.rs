//! Test support: every entry point of a WGSL source through naga's SPIR-V writer, for given
//! override constants, with and without the bounds-check policies a checked device uses
//! (GPU-NOTES: naga's writer can panic where validation passed).

use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};

use crate::Source;

pub(crate) fn assert_writes_spirv(src: &Source, constants: &[(&str, f64)]) {
    let checked = BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::ReadZeroSkipWrite,
        ..Default::default()
    };
    let module = naga::front::wgsl::parse_str(src.wgsl).expect("parses");
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .expect("validates");
    let pipeline_constants = constants.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    for ep in &module.entry_points {
        let stage = (naga::ShaderStage::Compute, ep.name.as_str());
        let (m, i) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some(stage),
            &pipeline_constants,
        )
        .expect("overrides");
        for policies in [BoundsCheckPolicies::default(), checked] {
            let options = naga::back::spv::Options {
                bounds_check_policies: policies,
                ..Default::default()
            };
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.name.clone(),
            };
            let spv = std::panic::catch_unwind(|| {
                naga::back::spv::write_vec(&m, &i, &options, Some(&pipeline))
            });
            assert!(
                matches!(spv, Ok(Ok(ref w)) if !w.is_empty()),
                "{}::{} {constants:?} {policies:?}: SPIR-V writer failed",
                src.name,
                ep.name
            );
        }
    }
}
