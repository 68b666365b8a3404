"""What every tab of the board shares: its folder, the job runner, the words, the tokenizers.

The board works in one folder (where `anxin board` was started): relative paths in forms are
relative to it and jobs run in it. The repository's own `configs/` and `data/` (the presets and
the bundled sample) are found beside the package, as `anxin demo` finds its config.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anxin.board.jobs import JobRunner
from anxin.board.labels import Labels
from anxin.paths import anxin_home

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DATA = REPO_ROOT / "data"


def board_home() -> Path:
    """Where the board keeps job state, logs and the YAML of each run: $ANXIN_HOME/board."""
    return anxin_home() / "board"


@dataclass
class Context:
    workdir: Path
    labels: Labels
    runner: JobRunner
    language_state: Any = None  # the page's gr.State holding "zh" or "en"
    _tokenizers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, workdir: Path, language: str) -> Context:
        home = board_home()
        return cls(Path(workdir).resolve(), Labels(language), JobRunner(home, workdir))

    @property
    def home(self) -> Path:
        return board_home()

    def path(self, text: str) -> Path:
        """A path typed in a form, relative to the board's folder."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.workdir / path

    def model_ref(self, text: str) -> str:
        """A model reference: a folder or file relative to the board, else a name or hub id."""
        return str(self.path(text)) if text and self.path(text).exists() else text

    def tokenizer(self, model: str, template: str):
        """The model's tokenizer with the chosen chat template applied (kept for reuse)."""
        from anxin.models import load_tokenizer
        from anxin.template import apply_template

        key = (model, template)
        with self._lock:
            if key not in self._tokenizers:
                tokenizer = load_tokenizer(self.model_ref(model))
                apply_template(tokenizer, template)
                self._tokenizers[key] = tokenizer
            return self._tokenizers[key]
