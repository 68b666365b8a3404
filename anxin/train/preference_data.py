"""Preference data for stage dpo and kto: records in, token ids out, rendered by anxin's template.

TRL's trainers take pre-tokenised examples: ``prompt_ids`` and, for DPO, ``chosen_ids`` and
``rejected_ids``; for KTO, ``completion_ids`` and ``label``. They are made with the same
`render_conversation` that renders SFT data: the prompt is every token before the answer (the
persona and history included, ending with the assistant header) and an answer is exactly the
tokens SFT would train on for it, through the end-of-turn token. So the template, the masking
and the stop token are the same as in SFT, and the same as at chat time.

Long examples lose their oldest whole exchanges first, never the system prompt or the last user
turn; if the last exchange alone is still too long, the answers are cut from the end. Rendering
takes well under a second per thousand pairs, so nothing is cached.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from anxin.data.preference import is_kto_example, is_pair, preference_fingerprint
from anxin.data.readers import KTO_TAG
from anxin.data.registry import load_datasets
from anxin.data.split import select_samples, split_validation
from anxin.errors import ConfigError, TemplateError
from anxin.template import IGNORE_INDEX, render_conversation, with_system


@dataclass
class Preferences:
    """The chosen training and validation records of a preference stage (persona added)."""

    train: list[dict]
    validation: list[dict]

    def fingerprints(self) -> dict[str, str]:
        return {
            "train": preference_fingerprint(self.train),
            "validation": preference_fingerprint(self.validation),
        }


def load_preferences(data_args, stage: str, default_system: str | None, seed: int):
    """Read the datasets for `stage`, keep max_samples, split off validation, add the persona.

    Stage dpo needs pairs (`"ranking": true` datasets); stage kto takes KTO examples (a
    `kto_tag` column) or pairs, whose two answers become one good and one bad example.
    """
    records = _read(data_args.dataset, data_args, stage, seed)
    records = select_samples(records, data_args.max_samples, seed)
    if data_args.eval_dataset:
        validation = _read(data_args.eval_dataset, data_args, stage, seed)
        validation = select_samples(validation, data_args.max_samples, seed)
        train = records
    else:
        train, validation = split_validation(records, data_args.val_size, seed)
    return Preferences(
        train=[_with_persona(r, default_system) for r in train],
        validation=[_with_persona(r, default_system) for r in validation],
    )


def _read(names: str, data_args, stage: str, seed: int) -> list[dict]:
    records = load_datasets(names, data_args.dataset_dir, seed=seed)
    wrong = next((r for r in records if not _fits_stage(r, stage)), None)
    if wrong is not None:
        needs = {
            "dpo": 'preference pairs: a dataset registered with "ranking": true',
            "kto": 'answers tagged good or bad (a "kto_tag" column) or "ranking": true pairs',
        }
        raise ConfigError(
            f"dataset {names}: stage {stage} needs {needs[stage]}; "
            f"{wrong.get('id', 'a record')} is not one"
        )
    return records


def _fits_stage(record: dict, stage: str) -> bool:
    return is_pair(record) or (stage == "kto" and is_kto_example(record))


def _with_persona(record: dict, default_system: str | None) -> dict:
    kept = {key: record[key] for key in ("chosen", "rejected", KTO_TAG) if key in record}
    return {"messages": with_system(record["messages"], default_system), **kept}


# --- rendering ------------------------------------------------------------------------------


@dataclass
class PreferenceStats:
    examples: int
    skipped_too_long: int  # the prompt alone filled cutoff_len
    dropped_pairs: int  # oldest exchanges dropped to fit cutoff_len
    truncated: int  # answers cut at cutoff_len
    tokens: int  # every token a training pass reads (chosen and rejected both hold the prompt)
    trained_tokens: int  # answer tokens
    from_cache: bool = False  # the same card as SFT's TokenizeStats


def answer_tokens(tokenizer, messages: list[dict], answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of `answer` given `messages`, as SFT renders and labels them."""
    rendered = render_conversation(tokenizer, [*messages, {"role": "assistant", "content": answer}])
    labels = rendered.labels
    end = len(labels)
    while end and labels[end - 1] == IGNORE_INDEX:  # template glue after the end-of-turn token
        end -= 1
    start = end
    while start and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    if start == end:
        raise TemplateError("the chat template rendered no tokens for an answer")
    return rendered.input_ids[:start], rendered.input_ids[start:end]


def fit_answers(tokenizer, messages: list[dict], answers: list[str], cutoff_len: int):
    """The prompt and each answer's ids within cutoff_len, or None when the prompt alone fills it.

    Returns (prompt ids, [answer ids...], dropped exchanges, truncated).
    """
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    dropped = 0
    while True:
        rendered = [answer_tokens(tokenizer, system + turns, answer) for answer in answers]
        prompt = rendered[0][0]
        if any(other != prompt for other, _ in rendered):
            raise TemplateError("the prompt renders differently before different answers")
        longest = max(len(ids) for _, ids in rendered)
        if len(prompt) + longest <= cutoff_len or len(turns) <= 1:
            break
        turns, dropped = turns[2:], dropped + 1
    room = cutoff_len - len(prompt)
    if room < 1:
        return None
    return prompt, [ids[:room] for _, ids in rendered], dropped, longest > room


def tokenize_pairs(records: list[dict], tokenizer, cutoff_len: int):
    """DPO examples ({prompt_ids, chosen_ids, rejected_ids}) and what happened to them."""
    rows, stats = [], _new_stats()
    for record in records:
        fitted = fit_answers(
            tokenizer, record["messages"], [record["chosen"], record["rejected"]], cutoff_len
        )
        if _count(stats, fitted):
            prompt, (chosen, rejected), _, _ = fitted
            rows.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
            stats.tokens += 2 * len(prompt) + len(chosen) + len(rejected)
            stats.trained_tokens += len(chosen) + len(rejected)
    return rows, stats


def unpaired(records: list[dict], seed: int) -> list[dict]:
    """KTO examples: tagged ones as they are, a pair as its good and its bad answer; shuffled
    by seed, because KTO trains in this order (each batch's KL term pairs neighbours)."""
    examples = []
    for record in records:
        if is_pair(record):
            prompt = record["messages"]
            for answer, good in ((record["chosen"], True), (record["rejected"], False)):
                examples.append({"prompt": prompt, "answer": answer, "label": good})
        else:
            prompt, last = record["messages"][:-1], record["messages"][-1]["content"]
            examples.append({"prompt": prompt, "answer": last, "label": record[KTO_TAG]})
    random.Random(seed).shuffle(examples)
    return examples


def tokenize_kto(records: list[dict], tokenizer, cutoff_len: int, seed: int):
    """KTO examples ({prompt_ids, completion_ids, label}) and what happened to them."""
    rows, stats = [], _new_stats()
    for example in unpaired(records, seed):
        fitted = fit_answers(tokenizer, example["prompt"], [example["answer"]], cutoff_len)
        if _count(stats, fitted):
            prompt, (completion,), _, _ = fitted
            rows.append(
                {"prompt_ids": prompt, "completion_ids": completion, "label": example["label"]}
            )
            stats.tokens += len(prompt) + len(completion)
            stats.trained_tokens += len(completion)
    return rows, stats


def _new_stats() -> PreferenceStats:
    return PreferenceStats(0, 0, 0, 0, 0, 0)


def _count(stats: PreferenceStats, fitted) -> bool:
    if fitted is None:
        stats.skipped_too_long += 1
        return False
    stats.examples += 1
    stats.dropped_pairs += fitted[2]
    stats.truncated += int(fitted[3])
    return True
