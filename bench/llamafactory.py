"""LLaMA-Factory beside anxin, for side-by-side benchmarks: its own venv, environment and settings.

    ensure_llamafactory()   bench/.venv-llamafactory with LLaMA-Factory 0.9.5 on the CPU torch wheel
    lf_environment()        the child's environment: that venv first, offline, no telemetry
    lf_settings(yaml)       the precision and gradient checkpointing a run used

Installing it takes a few minutes once (FINDINGS.md: its PyPI torchvision/torchaudio wheels need
CUDA torch, so they are removed and torchaudio is stubbed: its data/mm_plugin.py imports it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LF_VENV = ROOT / "bench" / ".venv-llamafactory"
LF_VERSION = "0.9.5"
LF_PACKAGE = f"llamafactory=={LF_VERSION}"
# What do_predict with predict_with_generate imports for its BLEU/ROUGE (LLaMA-Factory's own
# requirements-metrics; its wheel declares no extra for them).
LF_METRICS = ("jieba", "nltk", "rouge-chinese")
TORCH_PIN = "torch==2.13.0"  # the CPU wheel; a plain `pip install llamafactory` pulls CUDA torch
LF_CLI = LF_VENV / "bin" / "llamafactory-cli"


def ensure_llamafactory(venv: Path = LF_VENV) -> Path:
    """Create bench/.venv-llamafactory once (a few minutes); return its llamafactory-cli."""
    cli = venv / "bin" / "llamafactory-cli"
    stamp = venv / ".bench-installed"
    installed = f"{LF_PACKAGE} {' '.join(LF_METRICS)} {TORCH_PIN}\n"
    if cli.is_file() and stamp.is_file() and stamp.read_text() == installed:
        return cli
    print(f"installing LLaMA-Factory {LF_VERSION} into {venv} (minutes) ...", file=sys.stderr)
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, TORCH_PIN], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pin:
        pin.write(TORCH_PIN + "\n")
    try:
        subprocess.run([*pip, "-c", pin.name, LF_PACKAGE, *LF_METRICS], check=True)
    finally:
        os.unlink(pin.name)
    # Their PyPI wheels are built for CUDA torch and break `import llamafactory` on CPU torch.
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio"])
    _stub_torchaudio(python)
    stamp.write_text(installed)
    return cli


def _stub_torchaudio(python: Path) -> None:
    """An empty torchaudio: LLaMA-Factory's data/mm_plugin.py imports it even for text data."""
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stub = Path(site) / "torchaudio"
    stub.mkdir(exist_ok=True)
    (stub / "__init__.py").write_text('"""Empty stand-in (audio is never used here)."""\n')


def lf_environment(venv: Path = LF_VENV) -> dict[str, str]:
    """The child's environment: LLaMA-Factory's venv first, offline, no telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true")
    return env


def lf_settings(config_path: Path) -> tuple[str, bool]:
    """Precision and gradient checkpointing a LLaMA-Factory run used (from its YAML: its
    defaults are float32 on CPU and checkpointing on)."""
    config = yaml.safe_load(config_path.read_text())
    precision = "bf16" if config.get("bf16") else "fp16" if config.get("fp16") else "fp32"
    return precision, not config.get("disable_gradient_checkpointing", False)
