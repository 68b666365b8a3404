"""A run killed with SIGKILL resumes from its newest complete checkpoint and ends where an
uninterrupted run ends: same steps, same losses after the checkpoint, same adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import make_toy_dataset, read_log, tiny_overrides

from anxin.train import load_train_config, train
from anxin.train.checkpoints import COMPLETE_MARK

# Run in a child process: train, and SIGKILL ourselves once step 3 is logged, i.e. after the
# first checkpoint (step 2) and before the second (step 4).
KILLED_RUN = """
import os, signal, sys
from transformers import TrainerCallback
from anxin.train import load_train_config, train

class KillAtStep3(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == 3 and "loss" in logs:
            os.kill(os.getpid(), signal.SIGKILL)

train(load_train_config(None, sys.argv[1:]), callbacks=[KillAtStep3()])
"""


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_resume_after_sigkill_continues_the_same_run(tiny_model_dir, tmp_path):
    data = make_toy_dataset(tmp_path / "data")
    extra = {"max_steps": 6, "lora_dropout": 0.1}  # dropout: the RNG state must resume too

    reference = tmp_path / "reference"
    train(load_train_config(None, tiny_overrides(tiny_model_dir, data, reference, **extra)))

    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, data, out, **extra)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *overrides],
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert (out / "checkpoint-2" / COMPLETE_MARK).is_file()
    assert max(e["step"] for e in read_log(out)) == 3  # logged past the checkpoint
    # A crash in the middle of writing checkpoint-4 would leave a folder without the mark.
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "adapter_config.json").write_text("{}")

    result = train(load_train_config(None, [*overrides, "resume_from_checkpoint=true"]))

    assert result.global_step == 6
    assert result.resumed_from == str(out / "checkpoint-2")
    assert (out / "checkpoint-4" / COMPLETE_MARK).is_file()  # rewritten, complete this time
    log, expected = read_log(out), read_log(reference)
    steps = [e["step"] for e in log if "loss" in e]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 3 of the killed run was dropped, not doubled
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses == pytest.approx([e["loss"] for e in expected if "loss" in e], abs=1e-5)
    for name, tensor in adapter_tensors(reference).items():
        assert adapter_tensors(out)[name].allclose(tensor, atol=1e-6), name
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from"].endswith("checkpoint-2")


def test_resume_from_an_incomplete_checkpoint_path_is_refused(tiny_model_dir, tmp_path):
    from anxin.config import ConfigError

    data = make_toy_dataset(tmp_path / "data")
    out = tmp_path / "run"
    for step, complete in ((2, True), (4, False)):
        folder = out / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        if complete:
            (folder / COMPLETE_MARK).write_text("{}")
    overrides = tiny_overrides(
        tiny_model_dir, data, out, resume_from_checkpoint=out / "checkpoint-4"
    )
    with pytest.raises(ConfigError, match="incomplete"):
        train(load_train_config(None, overrides))
