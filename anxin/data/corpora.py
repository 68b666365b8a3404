"""The public Chinese counselling corpora anxin can download: where each lives, its licence,
and how it was made (shown before anything is fetched). `anxin.data.download` uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ARCHIVE_BASE = "https://codeload.github.com"
RAW_BASE = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Corpus:
    name: str  # the CLI name and the dataset_info.json key
    title: str
    repo: str  # owner/name on GitHub
    ref: str  # branch fetched unless --ref says otherwise
    folder: str  # the corpus folder inside the repository
    members: tuple[str, ...]  # file-name patterns kept from that folder (literal names for "files")
    source: Literal["archive", "files"]  # the repository tar.gz, or each member from raw
    format: str  # the reader in anxin.data.readers.READERS
    licence: str
    licence_url: str
    attribution: str
    citation: str
    generation: str  # how the dialogues were made: users should know they are synthetic

    def __post_init__(self) -> None:
        if self.source == "files" and any(set(m) & set("*?[") for m in self.members):
            raise ValueError(f"{self.name}: members fetched one by one must be literal names")

    @property
    def home(self) -> str:
        return f"https://github.com/{self.repo}"


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus
    for corpus in (
        Corpus(
            name="smilechat",
            title="SMILECHAT (SMILE: Single-turn to Multi-turn Inclusive Language Expansion)",
            repo="qiuhuachuan/smile",
            ref="main",
            folder="data",
            members=("*.json",),
            source="archive",
            format="smilechat",
            licence="CC0 1.0 (public domain dedication)",
            licence_url="https://creativecommons.org/publicdomain/zero/1.0/",
            attribution=(
                "SMILECHAT by Huachuan Qiu, Hongliang He, Shuai Zhang, Anqi Li and Zhenzhong Lan, "
                "https://github.com/qiuhuachuan/smile. CC0 requires nothing; the authors ask "
                "users of the data to cite the paper."
            ),
            citation=(
                "Qiu et al. 2023. SMILE: Single-turn to Multi-turn Inclusive Language Expansion "
                "via ChatGPT for Mental Health Support. arXiv:2305.00450."
            ),
            generation=(
                "Each dialogue opens with a real question and answer from PsyQA "
                "(xinli001.com, via thu-coai/PsyQA, which has its own terms of use); ChatGPT "
                "wrote all later turns. They are not transcripts of counselling."
            ),
        ),
        Corpus(
            name="cpsycound",
            title="CPsyCounD (CPsyCoun: report-based multi-turn counselling dialogues)",
            repo="CAS-SIAT-XinHai/CPsyCoun",
            ref="main",
            folder="CPsyCounD/Data",
            members=("case_*.txt",),
            source="archive",
            format="cpsycound",
            licence="CC BY 4.0",
            licence_url="https://creativecommons.org/licenses/by/4.0/",
            attribution=(
                "CPsyCounD by Chenhao Zhang, Renhao Li, Minghuan Tan, Min Yang, Jingwei Zhu, "
                "Di Yang, Jiahao Zhao, Guancheng Ye, Chengming Li and Xiping Hu (CAS-SIAT-XinHai), "
                "https://github.com/CAS-SIAT-XinHai/CPsyCoun, licensed CC BY 4.0. The licence "
                "requires this attribution, a link to it and a note of changes wherever you share "
                "the data or a model trained on it. Changes: anxin converted the dialogues to "
                "messages JSONL."
            ),
            citation=(
                "Zhang et al. 2024. CPsyCoun: A Report-based Multi-turn Dialogue Reconstruction "
                "and Evaluation Framework for Chinese Psychological Counseling. Findings of ACL "
                "2024. arXiv:2405.16433."
            ),
            generation=(
                "An LLM reconstructed each dialogue from a written counselling report (the "
                "Memo2Demo method); they are not transcripts of real sessions."
            ),
        ),
        Corpus(
            name="emollm",
            title="EmoLLM general multi-turn counselling dialogues",
            repo="SmartFlowAI/EmoLLM",
            ref="main",
            folder="datasets",
            members=("data.json", "data_pro.json"),
            source="files",
            format="emollm",
            licence="MIT",
            licence_url="https://opensource.org/license/mit",
            attribution=(
                "EmoLLM datasets, Copyright (c) 2024 SmartFlowAI, "
                "https://github.com/SmartFlowAI/EmoLLM, MIT License: keep this copyright and "
                "permission notice with every copy of the data."
            ),
            citation="SmartFlowAI. 2024. EmoLLM. https://github.com/SmartFlowAI/EmoLLM.",
            generation=(
                "Generated by large language models (ChatGPT, GLM, ERNIE, Qwen, iFlytek Spark) "
                "from prompts describing counselling scenarios: wholly synthetic. Only EmoLLM's "
                "own general sets (data.json, data_pro.json) are taken; its role-play sets and "
                "its repackaged copies of SMILECHAT and CPsyCounD are left out (download those "
                "corpora directly)."
            ),
        ),
    )
}


# --- what the user reads first -------------------------------------------------------------


def licence_notice(corpus: Corpus) -> str:
    """The text shown before downloading and saved as <name>.LICENSE.txt."""
    return "\n".join(
        [
            f"{corpus.title}",
            f"  source:      {corpus.home} ({corpus.folder}/)",
            f"  licence:     {corpus.licence} <{corpus.licence_url}>",
            f"  attribution: {corpus.attribution}",
            f"  cite:        {corpus.citation}",
            f"  how made:    {corpus.generation}",
        ]
    )


# --- URLs ----------------------------------------------------------------------------------


def archive_url(corpus: Corpus, ref: str, base: str | None) -> str:
    # A full commit sha is addressed directly; anything else is taken as a branch name.
    path = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else f"refs/heads/{ref}"
    return f"{(base or ARCHIVE_BASE).rstrip('/')}/{corpus.repo}/tar.gz/{path}"


def raw_url(corpus: Corpus, ref: str, member: str, base: str | None) -> str:
    return f"{(base or RAW_BASE).rstrip('/')}/{corpus.repo}/{ref}/{corpus.folder}/{member}"


def download_name(corpus: Corpus, ref: str, member: str | None = None) -> str:
    stem = f"{corpus.name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', ref)}"
    return f"{stem}.tar.gz" if member is None else f"{stem}-{member}"
