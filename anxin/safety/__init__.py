"""The care and safety layer: the decision about a person at risk is made here, not by a model.

- `CrisisDetector().assess(text, context)` → `Assessment(level, categories, language, reasons)`
  with level "none", "concern" or "crisis".
- `crisis_response`, `concern_footer`, `disclaimer`, `safe_replacement`: the fixed words, with
  help lines from `anxin/resources/hotlines.json` (`load_hotlines`, override: ANXIN_HOTLINES).
- `check_reply(text)` and `StreamGuard`: the model's reply is checked before it is shown.

The rules, cues and the shared lexicon are data in `rules/*.yaml` (loaded by `rules`); the
modules here interpret them. Imports point one way: `scan` is a leaf, `rules` reads it, `text`
reads `rules`; the rules' reading (`detector`), the conversation (`context`), the learned stage
(`classifier`) and the guard model (`judge`) are weighed by `care`, which `commands` and
`training` read; the reply guard (`guard`) reads `rules` and `text`.
"""

from anxin.safety.care import CrisisDetector
from anxin.safety.detector import Assessment
from anxin.safety.guard import ReplyVerdict, StreamGuard, check_reply
from anxin.safety.responses import (
    DISCLAIMER,
    HotlineFileError,
    concern_footer,
    crisis_response,
    disclaimer,
    load_hotline_file,
    load_hotlines,
    resolve_locale,
    safe_replacement,
)
from anxin.safety.rules import CRISIS_CATEGORIES, LEVELS
from anxin.safety.text import detect_language, normalize, split_sentences

__all__ = [
    "CRISIS_CATEGORIES",
    "DISCLAIMER",
    "LEVELS",
    "Assessment",
    "CrisisDetector",
    "HotlineFileError",
    "ReplyVerdict",
    "StreamGuard",
    "check_reply",
    "concern_footer",
    "crisis_response",
    "detect_language",
    "disclaimer",
    "load_hotline_file",
    "load_hotlines",
    "normalize",
    "resolve_locale",
    "safe_replacement",
    "split_sentences",
]
