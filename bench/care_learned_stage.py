"""The care layer's learned stage, compared on the FROZEN held-out parts (issue 14, part 4).

    flock /work/notes/bench.lock python -m bench.care_learned_stage --out bench/results/care

Every model is trained on the development data only (`anxin.safety.training.training_samples`:
the written file, the SMILECHAT dev part, PsySUICIDE's dev part); the frozen held-out parts
(data/safety_real/smilechat_heldout.jsonl, PsySUICIDE's heldout_idx.txt) are only scored:

- (a) today's character n-gram logistic regression, retrained on real + written data: the
  message alone (`TrainingConfig(evidence_weight=0, earlier_weight=0, asked_weight=0)`);
- (a+) the same regression reading also the conversation (the last user turns, the assistant's
  turn before), without the rules' reading (`evidence_weight=0`);
- (a++) reading the message, the conversation and what the rules made of it: what ships
  (`anxin.safety.classifier.CONFIG`; why: its evidence_weight comment);
- (b) a small character transformer encoder trained from scratch (1 layer, d 64, 4 heads, the
  message's first 64 characters and the end of the turns before it; 4 epochs, AdamW, one CPU
  thread), since fine-tuning SmolLM2-135M cannot answer within 60 ms on 2 cores
  (`--smollm2-latency` measures one forward pass);
- (c) (a++) and (b) averaged (equal weights unless --oof gives out-of-fold scores to choose one).

It writes, under --out: `comparison.json` (PR-AUC and recall at a false-positive rate of 0.05
per model and part, per-message CPU time of each model) and `pr_curves.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from anxin.safety import training
from anxin.safety.classifier import CLASSES, TrainingConfig
from anxin.safety.measure import pr_auc, precision_recall, recall_at_fpr
from anxin.safety.sets import read_examples

ROOT = Path(__file__).resolve().parents[1]

HELDOUT = {
    "smilechat_heldout": (ROOT / "data/safety_real/smilechat_heldout.jsonl", None),
    "psysuicide_heldout": (ROOT / "data/psysuicide/valid.json", "heldout"),
}
MESSAGE_ONLY = TrainingConfig(evidence_weight=0, earlier_weight=0, asked_weight=0)
NO_RULES = TrainingConfig(evidence_weight=0.0)
MAXLEN = 96


# --- (b): a small character transformer --------------------------------------------------------


def sequence(evidence) -> str:
    """The message first (its first 64 characters), then the end of the turns before it."""
    return (
        "\x02"
        + evidence.text[:64]
        + "\x03"
        + evidence.earlier_text[-20:]
        + "\x04"
        + (evidence.asked or "")[-10:]
    )


class Encoder:
    def __init__(self, vocabulary: dict[str, int], torch):
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, size, d=64, heads=4, layers=1, ff=128, dropout=0.1):
                super().__init__()
                self.embed = nn.Embedding(size, d, padding_idx=0)
                self.position = nn.Embedding(MAXLEN, d)
                layer = nn.TransformerEncoderLayer(
                    d, heads, ff, dropout, batch_first=True, norm_first=True
                )
                self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
                self.norm = nn.LayerNorm(d)
                self.out = nn.Linear(d, len(CLASSES))

            def forward(self, ids):
                mask = ids == 0
                x = self.embed(ids) + self.position.weight[: ids.shape[1]]
                x = self.norm(self.layers(x, src_key_padding_mask=mask))
                keep = (~mask).unsqueeze(-1).float()
                return self.out((x * keep).sum(1) / keep.sum(1).clamp(min=1))

        self.torch, self.vocabulary = torch, vocabulary
        self.net = Net(len(vocabulary) + 2)

    def ids(self, texts: list[str]):
        rows = [[self.vocabulary.get(c, 1) for c in t[:MAXLEN]] for t in texts]
        return self.torch.tensor([r + [0] * (MAXLEN - len(r)) for r in rows])

    def crisis_probability(self, texts: list[str]) -> np.ndarray:
        self.net.eval()
        with self.torch.no_grad():
            return 1 - self.torch.softmax(self.net(self.ids(texts)), -1)[:, 0].numpy()


def fit_encoder(samples, epochs: int = 4, seed: int = 0, rate: float = 2e-3) -> Encoder:
    import torch

    torch.manual_seed(seed)
    texts = [sequence(s.evidence) for s in samples]
    counts: dict[str, int] = {}
    for text in texts:
        for char in text:
            counts[char] = counts.get(char, 0) + 1
    vocabulary = {c: i + 2 for i, c in enumerate(sorted(c for c, n in counts.items() if n >= 2))}
    encoder = Encoder(vocabulary, torch)
    inputs, targets = encoder.ids(texts), torch.tensor([s.target for s in samples])
    optimizer = torch.optim.AdamW(encoder.net.parameters(), lr=rate, weight_decay=0.01)
    steps = epochs * math.ceil(len(texts) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, rate, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    encoder.net.train()
    for _ in range(epochs):
        permutation = torch.randperm(len(texts), generator=order)
        for start in range(0, len(texts), 32):
            batch = permutation[start : start + 32]
            loss = torch.nn.functional.cross_entropy(encoder.net(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return encoder


# --- scoring and the figures -------------------------------------------------------------------


def heldout_samples() -> dict[str, list]:
    parts = {}
    for name, (path, part) in HELDOUT.items():
        parts[name] = [
            training.Sample(training.evidence_of(e), training.target_class(e), name, str(e.line))
            for e in read_examples(path, part)
        ]
    return parts


def figures(labels: np.ndarray, scores: np.ndarray) -> dict:
    return {
        "pr_auc": round(pr_auc(labels, scores), 4),
        "recall_at_fpr_0.05": round(recall_at_fpr(labels, scores), 4),
    }


def timed(score_one, items) -> tuple[np.ndarray, dict]:
    scores, seconds = [], []
    for item in items:
        started = time.process_time()
        scores.append(score_one(item))
        seconds.append(time.process_time() - started)
    ms = 1000 * np.asarray(seconds)
    timing = {
        "ms_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_p99": round(float(np.percentile(ms, 99)), 3),
    }
    return np.asarray(scores), timing


def combination_weight(oof_lr: np.ndarray, oof_encoder: np.ndarray, samples) -> float:
    """The share of (b) in the average that gives the best PR-AUC out of fold on the dev data."""
    chosen = [i for i, s in enumerate(samples) if s.source != "written"]
    labels = np.array([samples[i].target != 0 for i in chosen])
    shares = np.arange(0.0, 1.01, 0.1)
    areas = [pr_auc(labels, (1 - w) * oof_lr[chosen] + w * oof_encoder[chosen]) for w in shares]
    return round(float(shares[int(np.argmax(areas))]), 2)


def draw(path: Path, curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 5))
    for axis, (part, models) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for name, (labels, scores) in models.items():
            precision, recall, _ = precision_recall(labels, scores)
            axis.plot(recall, precision, label=f"{name} (PR-AUC {pr_auc(labels, scores):.3f})")
        axis.set(xlabel="recall (crisis)", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01))
        axis.set_title(f"{part} (frozen, never trained or tuned on)", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def smollm2_latency(texts: list[str]) -> dict:
    """CPU time of one forward pass of SmolLM2-135M over each message (2 threads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anxin.models import resolve_model

    folder = resolve_model("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    torch.set_num_threads(2)
    wall = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids[:, :256]
            started = time.perf_counter()
            model(ids)
            wall.append(1000 * (time.perf_counter() - started))
    return {
        "ms_p50": round(float(np.percentile(wall, 50)), 1),
        "ms_p99": round(float(np.percentile(wall, 99)), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "care")
    parser.add_argument("--oof", type=Path, help="pickled out-of-fold scores (lr, encoder)")
    parser.add_argument("--smollm2-latency", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = training.training_samples()
    held = heldout_samples()
    models = {
        "(a) message n-grams": training.fit(samples, MESSAGE_ONLY),
        "(a+) + conversation": training.fit(samples, NO_RULES),
        "(a++) + rules' reading (ships)": training.fit(samples),
    }
    encoder = fit_encoder(samples)
    share = 0.5
    if args.oof:
        oof_lr, oof_encoder = pickle.loads(args.oof.read_bytes())
        share = combination_weight(oof_lr, oof_encoder, samples)
    report = {"combination_share_of_b": share, "parts": {}}
    curves = {}
    for part, items in held.items():
        labels = np.array([s.target != 0 for s in items])
        scores, timing = {}, {}
        for name, model in models.items():
            scores[name], timing[name] = timed(
                lambda s, m=model: m.predict(s.evidence).probability, items
            )
        scores["(b) character transformer"], timing["(b) character transformer"] = timed(
            lambda s: float(encoder.crisis_probability([sequence(s.evidence)])[0]), items
        )
        scores["(c) (a++) and (b) averaged"] = (1 - share) * scores[
            "(a++) + rules' reading (ships)"
        ] + share * scores["(b) character transformer"]
        report["parts"][part] = {
            "n": len(items),
            "crisis": int(labels.sum()),
            "models": {name: figures(labels, s) for name, s in scores.items()},
            "cpu_per_message": timing,
        }
        curves[part] = {name: (labels, s) for name, s in scores.items()}
    if args.smollm2_latency:
        texts = [s.evidence.text for s in held["smilechat_heldout"][:50]]
        report["smollm2_135m_forward"] = smollm2_latency(texts)
    (args.out / "comparison.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    draw(args.out / "pr_curves.png", curves)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
