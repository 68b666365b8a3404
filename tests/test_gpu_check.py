"""bench/gpu_check.py: its CPU twin (--tiny) end to end, and its pure helpers by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_measure import (  # noqa: E402
    TokenClock,
    kind_of,
    summarise_profile,
    summarise_timeline,
    training_flops,
)
from bench.gpu_report import targets  # noqa: E402
from bench.gpu_stand_in import (  # noqa: E402
    LLAMA3_8B,
    SMILECHAT_SHAPE,
    from_deciles,
    llama_config,
    parameter_count,
)

# --- the tiny run -----------------------------------------------------------------------------

STAGES_OK_ON_CPU = [
    "peak",
    "base_model",
    "data",
    "train_seed",
    "merge",
    "engine",
    "train_lora_all",
    "train_batch4_grouped",
    "decode_compiled",
]
TRAINING_FIELDS = [
    "step_s", "steady_steps", "steady_step_s_median", "tokens_per_s", "model_tflops_per_s",
    "mfu", "peak_gpu_memory_gib", "peak_gpu_reserved_gib", "eval_s", "checkpoint_save_s",
    "final_save_s", "setup_s", "train_loss", "eval_loss", "trainable_parameters", "precision",
]  # fmt: skip
ENGINE_FIELDS = [
    "model_load_s", "decode_tok_s", "ttft_10_turn_cold_s", "ttft_10_turn_warm_s",
    "first_shown_10_turn_cold_s", "prompt_tokens_10_turn", "chat_batch_size", "chat_batch_tok_s",
    "plain_generate_decode_tok_s", "roofline_decode_tok_s",
]  # fmt: skip
GPU_ONLY = {
    "peak": ["copy_gb_s"],
    "train_seed": ["peak_gpu_memory_gib", "peak_gpu_reserved_gib"],
    "engine": ["roofline_decode_tok_s"],
}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--device", "cpu"]
    command += ["--results-dir", str(out), "--work-dir", str(out / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "gpu_check_tiny.json").read_text()), out, done.stdout


def test_tiny_run_goes_through_every_stage(tiny_report):
    report, _, _ = tiny_report
    stages = report["stages"]
    for name in STAGES_OK_ON_CPU:
        assert stages[name]["status"] == "ok", (name, stages[name])
    assert stages["train_qlora"] == {
        "status": "skipped",
        "reason": "QLoRA needs a CUDA GPU (bitsandbytes)",
    }
    assert report["finished_at"] and report["checks"]["fatal"] == []


def test_tiny_run_reports_every_field(tiny_report):
    report, _, _ = tiny_report
    stages = report["stages"]
    for name in ("train_seed", "train_lora_all", "train_batch4_grouped"):
        assert set(TRAINING_FIELDS) <= set(stages[name]), name
    assert set(ENGINE_FIELDS) <= set(stages["engine"])
    assert {"merge_s", "disk_gib"} <= set(stages["merge"])
    assert {"static_cache_decode_tok_s", "compiled"} <= set(stages["decode_compiled"])
    assert stages["base_model"]["parameters"] == stages["base_model"]["parameters_expected"]
    profile = stages["train_seed"]["profile"]
    assert profile["step"] == 2 and abs(sum(profile["share"].values()) - 1) < 1e-3


def test_every_null_figure_says_why(tiny_report):
    report, _, _ = tiny_report
    for name, stage in report["stages"].items():
        nulls = {key for key, value in stage.items() if value is None}
        assert nulls == set(stage.get("null_reasons", {})), name
    for name, keys in GPU_ONLY.items():
        for key in keys:
            assert report["stages"][name][key] is None
            assert "no CUDA device" in report["stages"][name]["null_reasons"][key]
    for target in report["targets"].values():
        assert target["met"] is None and "tiny run" in target["why"]


def test_tiny_run_writes_a_table_and_timestamped_progress(tiny_report):
    _, out, stdout = tiny_report
    table = (out / "gpu_check_tiny.md").read_text()
    assert "| seed | ok |" in table and "Engine chat_batch ×16 tok/s" in table
    assert "train_qlora: skipped: QLoRA needs a CUDA GPU" in table
    progress = [line for line in stdout.splitlines() if line.startswith("[")]
    assert progress and all("s] " in line for line in progress)


# --- helpers, by hand -------------------------------------------------------------------------


class _Tokenizer:
    bos_token_id, eos_token_id = 3, 6

    def __len__(self):
        return 600


def test_llama3_8b_shape_is_meta_llama_3_8b_instruct():
    assert parameter_count(LLAMA3_8B) == 8_030_261_248  # the model card's figure
    config = llama_config(LLAMA3_8B, _Tokenizer())
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (
        4096,
        32,
        14336,
    )
    assert (config.num_attention_heads, config.num_key_value_heads) == (32, 8)
    assert config.vocab_size == 128256 and config.rope_parameters["rope_theta"] == 500000.0
    assert config.tie_word_embeddings is False


def test_training_flops_count_the_head_only_where_trained():
    toy = {
        "hidden_size": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 8,
        "num_hidden_layers": 1,
        "vocab_size": 10,
    }
    # body per token: q 4·4 + k,v 2·(4·2) + o 4·4 + MLP 3·4·8 = 144 weights; head 10·4 = 40.
    # 3 tokens, 1 of them trained: 4·144·3 + 4·40·1 + attention 12·1·4·3² = 1728 + 160 + 432
    assert training_flops(toy, [3], trained_tokens=1) == 2320


def test_timeline_steps_evaluation_and_save():
    events = [
        ("train_begin", 0, 10.0, 0),
        ("step_end", 1, 13.0, 100),  # warm-up: left out of the steady figures
        ("step_end", 2, 14.0, 200),
        ("log", 2, 14.1, 200),
        ("step_end", 3, 16.0, 300),  # profiled: left out
        ("step_end", 4, 17.5, 450),
        ("log", 4, 17.6, 450),
        ("eval_log", 4, 19.6, 450),
        ("evaluate", 4, 19.7, 450),
        ("save", 4, 20.2, 450),
        ("train_end", 4, 20.3, 450),
    ]
    summary = summarise_timeline(events, skip_steps=(3,))
    assert summary["step_s"] == [3.0, 1.0, 2.0, 1.5]
    assert (summary["steady_steps"], summary["steady_tokens"]) == (2, 250)
    assert summary["steady_s"] == pytest.approx(2.5)
    assert summary["steady_step_s_median"] == pytest.approx(1.25)
    assert summary["eval_s"] == pytest.approx(2.1)  # from the training log line to evaluate
    assert summary["checkpoint_save_s"] == pytest.approx(0.5)


def test_profile_summary_shares_by_kind():
    rows = [
        ("sm90_xmma_gemm_bf16bf16_bf16f32", 600.0),
        ("pytorch_flash::flash_fwd_kernel", 200.0),
        ("fmha_cutlassB_bf16_aligned", 100.0),  # attention, although a cutlass kernel
        ("vectorized_elementwise_kernel", 100.0),
    ]
    summary = summarise_profile(rows, wall_s=0.002, top=2)
    assert summary["busy_s"] == pytest.approx(0.001) and summary["busy_fraction"] == 0.5
    assert summary["share"] == {"matmul": 0.6, "attention": 0.3, "other": 0.1}
    assert [r["name"] for r in summary["top"]] == [rows[0][0], rows[1][0]]
    assert kind_of("aten::addmm") == "matmul" and kind_of("aten::mul") == "other"


def test_decode_rate_counts_tokens_after_the_first():
    clock = TokenClock()
    clock.times = [1.0, 1.5, 2.0, 3.0]
    assert clock.decode_tok_s() == 1.5
    clock.times = [1.0]
    assert clock.decode_tok_s() is None


def test_targets_against_the_issue():
    gib = 2**30
    stages = {
        "train_seed": {"status": "ok", "mfu": 0.45},
        "train_qlora": {"status": "ok", "peak_gpu_memory_gib": 11.5},  # 12.3e9 bytes
        "engine": {"status": "ok", "decode_tok_s": 50.0, "plain_generate_decode_tok_s": 60.0},
        "decode_compiled": {"status": "ok", "static_cache_decode_tok_s": 90.0},
    }
    verdicts = targets(stages, tiny=False)
    assert verdicts["seed_lora_mfu_at_least_40_percent"]["met"] is True
    assert verdicts["qlora_peak_memory_under_12_gb"]["met"] is (11.5 * gib < 12e9)
    assert verdicts["qlora_peak_memory_under_12_gb"]["met"] is False
    assert verdicts["engine_decode_within_1_5x_of_best"] == {
        "value": 1.8,
        "met": False,
        "best_tok_s": 90.0,
    }
    stages["train_qlora"] = {"status": "skipped", "reason": "no bitsandbytes"}
    assert targets(stages, tiny=False)["qlora_peak_memory_under_12_gb"]["why"] == "no bitsandbytes"


# --- the SMILECHAT shape ----------------------------------------------------------------------


def test_smilechat_shape_file():
    shape = json.loads(SMILECHAT_SHAPE.read_text(encoding="utf-8"))
    assert shape["dialogues"] == 4000 and shape["tokens_per_char"] > 0
    assert shape["tokens_per_char_why"]
    for name, deciles in shape["deciles"].items():
        assert len(deciles) == 11 and deciles == sorted(deciles) and deciles[0] > 0, name


def test_sampling_from_deciles():
    deciles = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 200]
    assert from_deciles(deciles, 0.0) == 0
    assert from_deciles(deciles, 0.5) == 50
    assert from_deciles(deciles, 0.05) == 5
    assert from_deciles(deciles, 0.95) == pytest.approx(145)
    assert from_deciles(deciles, 1.0) == 200
