//! config.json parsing: both transformers forms, every supported model family's fields, and a
//! clear error naming the file and field for everything else.

use std::path::Path;

use models::{Arch, Config, RopeScaling};

fn parse(json: &str) -> models::Result<Config> {
    Config::from_json(json, Path::new("/models/x/config.json"))
}

const LLAMA32_V4: &str = r#"{
  "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
  "vocab_size": 128256, "tie_word_embeddings": true, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "max_position_embeddings": 131072, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
}"#;

const LLAMA32_V5: &str = r#"{
  "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
  "vocab_size": 128256, "tie_word_embeddings": true,
  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                      "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192},
  "max_position_embeddings": 131072, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
}"#;

const QWEN25_15B: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536,
  "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "vocab_size": 151936,
  "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 131072,
  "max_position_embeddings": 131072, "bos_token_id": 151643, "eos_token_id": 151643,
  "hidden_act": "silu", "torch_dtype": "bfloat16"
}"#;

#[test]
fn llama3_config_in_both_forms() {
    let v4 = parse(LLAMA32_V4).unwrap();
    let v5 = parse(LLAMA32_V5).unwrap();
    assert_eq!(v4.arch, Arch::Llama);
    assert_eq!(
        (v4.num_attention_heads, v4.num_key_value_heads, v4.head_dim),
        (32, 8, 64)
    );
    assert_eq!(v4.eos_token_ids, vec![128001, 128008, 128009]);
    assert!(v4.tie_word_embeddings && !v4.qkv_bias);
    assert_eq!(v4.rope_theta, 500000.0);
    assert!(matches!(v4.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0));
    assert_eq!(v4.inv_freq(), v5.inv_freq());
    assert_eq!(v4.rope_scaling, v5.rope_scaling);
    // Llama 3 scaling: the highest frequencies untouched, the lowest divided by the factor.
    let plain =
        parse(&LLAMA32_V4.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"default\""))
            .unwrap();
    let (scaled, base) = (v4.inv_freq(), plain.inv_freq());
    assert_eq!(scaled[0], base[0]);
    assert!((scaled[31] - base[31] / 32.0).abs() <= 1e-12 * base[31].abs().max(1.0));
    // Llama 3.2 1B has 1.24B parameters (embedding tied).
    assert_eq!(v4.num_parameters(), 1_235_814_400);
}

#[test]
fn qwen2_config() {
    let c = parse(QWEN25_15B).unwrap();
    assert_eq!(c.arch, Arch::Qwen2);
    assert_eq!(c.head_dim, 128);
    assert!(c.qkv_bias && !c.o_bias);
    assert_eq!(c.eos_token_ids, vec![151643]);
    assert_eq!(c.rope_scaling, RopeScaling::None);
    // Qwen2.5-1.5B: 1.54B parameters.
    assert_eq!(c.num_parameters(), 1_543_714_304);
    let inv = c.inv_freq();
    assert_eq!(inv.len(), 64);
    assert_eq!(inv[0], 1.0);
    assert!((inv[1] as f64 - 1e6f64.powf(-2.0 / 128.0)).abs() < 1e-7);
}

#[test]
fn bad_configs_name_file_and_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"model_type": "gpt2"}"#, "model_type \"gpt2\""),
        ("{not json", "not valid JSON"),
        (
            &QWEN25_15B.replace("\"hidden_size\": 1536,", ""),
            "`hidden_size`: missing",
        ),
        (
            &QWEN25_15B.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 5"),
            "`num_key_value_heads`",
        ),
        (
            &QWEN25_15B.replace("\"vocab_size\": 151936", "\"vocab_size\": 0"),
            "`vocab_size`: must be positive",
        ),
        (
            &QWEN25_15B.replace(
                "\"num_hidden_layers\": 28",
                "\"num_hidden_layers\": 999999999",
            ),
            "implausibly large",
        ),
        (
            &QWEN25_15B.replace(
                "\"use_sliding_window\": false",
                "\"use_sliding_window\": true",
            ),
            "sliding-window",
        ),
        (
            &QWEN25_15B.replace("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""),
            "`hidden_act`",
        ),
        (
            &QWEN25_15B.replace("\"rms_norm_eps\": 1e-6", "\"rms_norm_eps\": -1"),
            "`rms_norm_eps`",
        ),
        (
            &QWEN25_15B.replace("\"hidden_size\": 1536", "\"hidden_size\": \"big\""),
            "not valid JSON",
        ),
        (
            &LLAMA32_V4.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""),
            "rope type \"yarn\"",
        ),
        (
            &LLAMA32_V4.replace("\"factor\": 32.0,", ""),
            "needs a positive `factor`",
        ),
    ];
    for (json, want) in cases {
        let err = parse(json).unwrap_err().to_string();
        assert!(err.contains("/models/x/config.json"), "{err}");
        assert!(err.contains(want), "expected {want:?} in: {err}");
    }
}
