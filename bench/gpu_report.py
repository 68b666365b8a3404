"""bench/gpu_check.py's verdicts against issue 18's targets, and its markdown table."""

from __future__ import annotations

TRAINING_STAGES = ("train_seed", "train_lora_all", "train_batch4_grouped", "train_qlora")
QLORA_LIMIT_BYTES = 12e9
MFU_TARGET = 0.40
DECODE_SLOWDOWN_LIMIT = 1.5


def _ok(stages: dict, name: str) -> dict | None:
    stage = stages.get(name) or {}
    return stage if stage.get("status") == "ok" else None


def targets(stages: dict, tiny: bool) -> dict:
    """Each target: the figure, whether it is met, or None with why it cannot be judged."""
    if tiny:
        why = "tiny run: the targets are for the 8B shape on an H100-class GPU"
        return {name: {"value": None, "met": None, "why": why} for name in _TARGETS}
    return {name: judge(stages) for name, judge in _TARGETS.items()}


def _seed_mfu(stages: dict) -> dict:
    seed = _ok(stages, "train_seed")
    if seed is None or seed.get("mfu") is None:
        return {"value": None, "met": None, "why": "the seed run has no MFU figure"}
    return {"value": seed["mfu"], "met": seed["mfu"] >= MFU_TARGET}


def _qlora_memory(stages: dict) -> dict:
    qlora = _ok(stages, "train_qlora")
    if qlora is None or qlora.get("peak_gpu_memory_gib") is None:
        reason = (stages.get("train_qlora") or {}).get("reason", "the QLoRA run did not finish")
        return {"value": None, "met": None, "why": reason}
    gib = qlora["peak_gpu_memory_gib"]
    return {"value": gib, "met": gib * 2**30 < QLORA_LIMIT_BYTES, "unit": "GiB"}


def _decode_ratio(stages: dict) -> dict:
    """Best decode of the installed stack over the Engine's (≤ 1.5 meets the target)."""
    engine = _ok(stages, "engine")
    if engine is None or not engine.get("decode_tok_s"):
        return {"value": None, "met": None, "why": "the Engine stage has no decode figure"}
    compiled = (_ok(stages, "decode_compiled") or {}).get("static_cache_decode_tok_s")
    best = max(
        x
        for x in (engine.get("plain_generate_decode_tok_s"), compiled, engine["decode_tok_s"])
        if x
    )
    ratio = best / engine["decode_tok_s"]
    return {"value": round(ratio, 3), "met": ratio <= DECODE_SLOWDOWN_LIMIT, "best_tok_s": best}


_TARGETS = {
    "seed_lora_mfu_at_least_40_percent": _seed_mfu,
    "qlora_peak_memory_under_12_gb": _qlora_memory,
    "engine_decode_within_1_5x_of_best": _decode_ratio,
}


# --- markdown ---------------------------------------------------------------------------------


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def training_rows(stages: dict) -> list[str]:
    rows = [
        "| run | status | s/step (median) | tokens/s | model TFLOP/s | MFU | peak GPU GiB (reserved) "
        "| eval s | checkpoint save s | final save s | setup s | train loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in TRAINING_STAGES:
        s = stages.get(name)
        if s is None:
            continue
        status = (
            s["status"]
            if s["status"] == "ok"
            else f"{s['status']}: {s.get('reason') or s.get('error', '')}"[:90]
        )
        memory = f"{_cell(s.get('peak_gpu_memory_gib'))} ({_cell(s.get('peak_gpu_reserved_gib'))})"
        rows.append(
            f"| {name.removeprefix('train_')} | {status} | {_cell(s.get('steady_step_s_median'), 3)} "
            f"| {_cell(s.get('tokens_per_s'), 0)} | {_cell(s.get('model_tflops_per_s'), 1)} "
            f"| {_percent(s.get('mfu'))} | {memory} | {_cell(s.get('eval_s'))} "
            f"| {_cell(s.get('checkpoint_save_s'))} | {_cell(s.get('final_save_s'))} "
            f"| {_cell(s.get('setup_s'), 1)} | {_cell(s.get('train_loss'), 4)} |"
        )
    return rows


def generation_rows(stages: dict) -> list[str]:
    engine = _ok(stages, "engine") or {}
    compiled = _ok(stages, "decode_compiled") or {}
    merged = _ok(stages, "merge") or {}
    items = [
        ("merge (anxin.merge, CPU float32 → bf16) s", merged.get("merge_s")),
        ("merged model load into the Engine s", engine.get("model_load_s")),
        ("Engine single-stream decode tok/s", engine.get("decode_tok_s")),
        ("Engine TTFT, 1 turn s", (engine.get("single_stream") or {}).get("ttft_s")),
        (
            f"Engine TTFT, 10 turns, cold s ({engine.get('prompt_tokens_10_turn')} prompt tokens)",
            engine.get("ttft_10_turn_cold_s"),
        ),
        ("Engine TTFT, 10 turns, warm (prefix cache) s", engine.get("ttft_10_turn_warm_s")),
        (
            f"Engine chat_batch ×{engine.get('chat_batch_size')} tok/s",
            engine.get("chat_batch_tok_s"),
        ),
        ("plain model.generate decode tok/s", engine.get("plain_generate_decode_tok_s")),
        (
            "static-cache generate decode tok/s (compiled on CUDA)",
            compiled.get("static_cache_decode_tok_s"),
        ),
        ("decode roofline (weights ÷ copy bandwidth) tok/s", engine.get("roofline_decode_tok_s")),
    ]
    return ["| generation | value |", "|---|---:|"] + [f"| {k} | {_cell(v)} |" for k, v in items]


def markdown(report: dict) -> str:
    stages, checks = report["stages"], report["checks"]
    peak = _ok(stages, "peak") or {}
    base = _ok(stages, "base_model") or {}
    data = _ok(stages, "data") or {}
    lines = [
        f"# gpu_check ({report['mode']}), {report['started_at']}",
        "",
        f"- Device: {checks.get('gpu') or checks.get('device')}; {', '.join(f'{k} {v}' for k, v in checks.get('versions', {}).items())}.",
        f"- {peak.get('dtype')} matmul peak {_cell(peak.get('tflops'), 4)} TFLOP/s; copy bandwidth {_cell(peak.get('copy_gb_s'), 0)} GB/s (measured in this run).",
        f"- Model: {base.get('shape')} random stand-in, {base.get('parameters'):,} parameters, built in {_cell(base.get('build_s'))} s, saved in {_cell(base.get('save_s'))} s ({_cell(base.get('disk_gib'))} GiB)."
        if base
        else "- Model: not built.",
        f"- Data: {data.get('train_dialogues')} training dialogues, {data.get('tokens')} tokens (mean {data.get('length_mean')}, max {data.get('length_max')}), {data.get('trained_tokens')} trained."
        if data
        else "- Data: not prepared.",
        f"- Steps per run: {report['settings']['steps']} (the first and any profiled step left out of the steady figures).",
        "",
        *training_rows(stages),
        "",
        *generation_rows(stages),
        "",
        "Targets: " + "; ".join(f"{k} {_verdict(v)}" for k, v in report.get("targets", {}).items()),
    ]
    skipped = [
        f"- {name}: {s['status']}: {s.get('reason') or s.get('error')}"
        for name, s in stages.items()
        if s["status"] != "ok"
    ]
    if skipped:
        lines += ["", "Not run or failed:", *skipped]
    return "\n".join(lines) + "\n"


def _verdict(target: dict) -> str:
    if target.get("met") is None:
        return f"– ({target.get('why')})"
    return f"{target['value']} {'✅' if target['met'] else '❌'}"
