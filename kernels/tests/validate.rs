//! Every WGSL source parses, validates and translates to SPIR-V with naga, entry point by
//! entry point (override constants at their defaults), on the CPU alone. This catches shader
//! errors, and naga's SPIR-V writer panics (see GPU-NOTES), without a GPU.

#[test]
fn every_source_validates_and_writes_spirv() {
    for src in kernels::all_sources() {
        let module = naga::front::wgsl::parse_str(src.wgsl)
            .unwrap_or_else(|e| panic!("{}: {}", src.name, e.emit_to_string(src.wgsl)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", src.name, e.emit_to_string(src.wgsl)));
        assert!(
            !module.entry_points.is_empty(),
            "{}: no entry point",
            src.name
        );
        for ep in &module.entry_points {
            let stage = (naga::ShaderStage::Compute, ep.name.as_str());
            let (m, i) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some(stage),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{}::{}: overrides: {e}", src.name, ep.name));
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.name.clone(),
            };
            let spv = std::panic::catch_unwind(|| {
                naga::back::spv::write_vec(
                    &m,
                    &i,
                    &naga::back::spv::Options::default(),
                    Some(&pipeline),
                )
            });
            match spv {
                Ok(Ok(words)) => assert!(!words.is_empty()),
                Ok(Err(e)) => panic!("{}::{}: SPIR-V writer error: {e}", src.name, ep.name),
                Err(_) => panic!("{}::{}: naga's SPIR-V writer panicked", src.name, ep.name),
            }
        }
    }
}
