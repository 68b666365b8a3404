"""The real `anxin train` under torchrun with two CPU processes (gloo): one run, two ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import make_toy_dataset, read_log, tiny_overrides


def test_torchrun_two_processes_agree_and_only_rank0_writes(tiny_model_dir, tmp_path):
    data = make_toy_dataset(tmp_path / "data")
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, data, out, plot_loss=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--standalone", "-m", "anxin", "train", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]

    run = json.loads((out / "run.json").read_text())
    assert run["ddp"]["world_size"] == 2
    assert run["ddp"]["ranks_agree"] is True
    assert run["machine"]["world_size"] == 2

    log = read_log(out)
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]  # written once, by rank 0
    # Two processes each take 2 × 2 conversations per step: 8 of the 19 per step.
    first = next(e for e in log if "loss" in e)
    assert first["epoch"] == pytest.approx(8 / 19, abs=0.06)
    assert child.stderr.count("anxin: done:") == 1
    assert child.stdout.strip() == str(out)
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "training_loss.png").is_file()
    assert not list(out.glob(".*tmp*"))
