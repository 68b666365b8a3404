"""Download a public Chinese counselling corpus, verify it, convert it and register it.

Each corpus lives in a GitHub repository. By default the repository's tar.gz archive
is fetched from codeload.github.com: one file, resumable with HTTP Range, and checked against
the sha256 recorded in a manifest. Only the corpus folder is then read, converted to canonical
`messages` JSONL and registered in a LLaMA-Factory-style dataset_info.json. EmoLLM is the
exception: its repository is large and the two files we take are a small part of it, so they
come one by one from raw.githubusercontent.com. The licence and attribution are printed before
anything is fetched and written next to the data.

Layout of --out:
    <name>.jsonl, <name>.LICENSE.txt, dataset_info.json   the results
    downloads/<file>, downloads/manifest.json              verified downloads, reused next time
    .partial/<file>.part (+ .part.json)                    unfinished downloads, resumed next time
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from anxin.atomic import write_json, write_jsonl, write_text
from anxin.data.readers import READERS, REPAIR_BY_DEFAULT
from anxin.data.record import CheckReport, DataError, check_records, location
from anxin.data.registry import canonical_entry, load_dataset_info, register_dataset
from anxin.errors import DownloadError, OfflineError

ARCHIVE_BASE = "https://codeload.github.com"
RAW_BASE = "https://raw.githubusercontent.com"
BASE_ENV = "ANXIN_DOWNLOAD_BASE"
DEFAULT_OUT = Path("data/corpora")
DEFAULT_TIMEOUT_S = 15.0
CHUNK_BYTES = 1 << 16
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
MAX_PROBLEMS_SHOWN = 5

Log = Callable[[str], None]


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


@dataclass
class Summary:
    corpus: str
    jsonl: Path
    dataset_info: Path
    licence_file: Path
    downloads: list[Verified]
    report: CheckReport  # read, kept, duplicates, skipped by reason, repairs
    problems: list[str]  # the first few skipped records, named by their path in the repository


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


# --- resumable download --------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unreachable(url: str, reason: object) -> OfflineError:
    return OfflineError(
        f"cannot reach {url} ({reason}): the network or GitHub is unreachable. "
        f"Pass --base-url URL (or set {BASE_ENV}) to use a mirror with the same layout, "
        "or --from-archive FILE with the repository's tar.gz downloaded elsewhere."
    )


class _NothingAfterOffset(Exception):
    """HTTP 416: the server has no bytes after the offset asked for."""

    def __init__(self, total: int | None) -> None:
        self.total = total


def _open(url: str, offset: int, etag: str | None, timeout: float) -> http.client.HTTPResponse:
    """Send the GET, asking for the bytes after `offset` when resuming."""
    request = urllib.request.Request(url, headers={"User-Agent": "anxin-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if etag:  # a changed file (a branch moved on) must restart, not be spliced
            request.add_header("If-Range", etag)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            raise _NothingAfterOffset(
                _total_from_content_range(error.headers.get("Content-Range"))
            ) from None
        hint = "; check the repository and --ref" if error.code == 404 else ""
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}{hint}") from None
    except urllib.error.URLError as error:
        raise _unreachable(url, error.reason) from None
    except (TimeoutError, ConnectionError, socket.gaierror) as error:
        raise _unreachable(url, error) from None


def _resume_offset(part: Path, meta: Path, url: str) -> tuple[int, str | None]:
    """How many bytes of `url` the part file already holds, and the ETag they came with."""
    if not part.exists():
        return 0, None
    try:
        saved = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if saved.get("url") != url:  # a part from another source is worthless
        part.unlink()
        return 0, None
    return part.stat().st_size, saved.get("etag")


def _progress_bar(total: int | None, initial: int, label: str, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=label, leave=False)


def fetch(
    url: str,
    target: Path,
    *,
    partial_dir: Path,
    expect_sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool = False,
) -> tuple[int, str]:
    """Download `url` to `target`, resuming an earlier attempt; returns (size, sha256).

    Bytes land in `partial_dir/<name>.part`; only a complete, verified file is renamed onto
    `target`, so `target` is either absent or whole. An interrupted attempt leaves the part
    file for the next call to continue with an HTTP Range request.
    """
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / f"{target.name}.part"
    meta = partial_dir / f"{target.name}.part.json"
    offset, etag = _resume_offset(part, meta, url)
    try:
        response = _open(url, offset, etag, timeout)
    except _NothingAfterOffset as empty:
        if empty.total == offset:  # the last attempt got every byte but was not renamed
            return _finish(part, meta, target, url, offset, expect_sha256)
        part.unlink()  # longer than the file: not ours, start again
        offset, response = 0, _open(url, 0, None, timeout)
    with response:
        offset = _accepted_offset(response, offset)
        write_json(meta, {"url": url, "etag": response.headers.get("ETag")})
        length = response.headers.get("Content-Length")
        expected_total = offset + int(length) if length is not None else None
        _stream(response, part, offset, expected_total, url, progress)
    return _finish(part, meta, target, url, expected_total, expect_sha256)


def _total_from_content_range(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


def _accepted_offset(response: http.client.HTTPResponse, asked: int) -> int:
    """Where the body starts: `asked` for a 206, 0 when the server ignored the Range."""
    if asked and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == asked:
            return asked
    return 0


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    expected_total: int | None,
    url: str,
    progress: bool,
) -> None:
    bar = _progress_bar(expected_total, offset, part.name.removesuffix(".part"), progress)
    received = offset
    try:
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            while block := response.read(CHUNK_BYTES):
                f.write(block)
                received += len(block)
                if bar is not None:
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(
            f"{url}: interrupted after {received} bytes ({error}); run the same command "
            "again to resume"
        ) from None
    finally:
        if bar is not None:
            bar.close()


def _finish(
    part: Path,
    meta: Path,
    target: Path,
    url: str,
    expected_total: int | None,
    expect_sha256: str | None,
) -> tuple[int, str]:
    size = part.stat().st_size
    if expected_total is not None and size < expected_total:
        raise DownloadError(
            f"{url}: connection closed after {size} of {expected_total} bytes; run the same "
            "command again to resume"
        )
    digest = sha256_of(part)
    if expect_sha256 and digest != expect_sha256.lower():
        part.unlink()
        meta.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: sha256 {digest} does not match --expect-sha256 {expect_sha256}; the "
            "download was discarded"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)
    meta.unlink(missing_ok=True)
    return size, digest


# --- the manifest of verified downloads ----------------------------------------------------


class Verified(NamedTuple):
    path: Path
    sha256: str


def _manifest_path(out: Path) -> Path:
    return out / "downloads" / "manifest.json"


def _load_manifest(out: Path) -> dict:
    try:
        return json.loads(_manifest_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class Fetcher:
    """Where and how one command run fetches files into out/downloads."""

    out: Path
    base: str | None = None  # replaces codeload/raw.githubusercontent.com
    timeout: float = DEFAULT_TIMEOUT_S
    refresh: bool = False  # ignore verified copies
    progress: bool = False
    log: Log = print

    def obtain(self, url: str, name: str, expect_sha256: str | None = None) -> Verified:
        """A verified local copy of `url`, fetched only when there is none yet."""
        target = self.out / "downloads" / name
        if not self.refresh:
            known = self._verified_copy(target, url, expect_sha256)
            if known:
                self.log(f"using the verified download {target}")
                return Verified(target, known)
        self.log(f"downloading {url}")
        size, digest = fetch(
            url,
            target,
            partial_dir=self.out / ".partial",
            expect_sha256=expect_sha256,
            timeout=self.timeout,
            progress=self.progress,
        )
        self._record(target, url, size, digest)
        self.log(f"  {size} bytes, sha256 {digest}")
        return Verified(target, digest)

    def _verified_copy(self, target: Path, url: str, expect_sha256: str | None) -> str | None:
        """The sha256 of `target` when it is a finished download of `url` that still matches."""
        entry = _load_manifest(self.out).get(target.name)
        if not entry or entry.get("url") != url or not target.exists():
            return None
        if expect_sha256 and entry.get("sha256") != expect_sha256.lower():
            return None
        if target.stat().st_size != entry.get("size") or sha256_of(target) != entry["sha256"]:
            return None
        return entry["sha256"]

    def _record(self, target: Path, url: str, size: int, digest: str) -> None:
        manifest = _load_manifest(self.out)
        manifest[target.name] = {
            "url": url,
            "size": size,
            "sha256": digest,
            "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(_manifest_path(self.out), manifest)


# --- from archive to corpus files ----------------------------------------------------------


def _wanted(corpus: Corpus, member_name: str) -> str | None:
    """The file name to keep for an archive member inside the corpus folder, else None."""
    # Archives hold one top folder (`smile-main/`); GitHub names it after the repo and ref.
    _, _, inside = member_name.partition("/")
    prefix = corpus.folder.strip("/") + "/"
    if not inside.startswith(prefix):
        return None
    name = inside[len(prefix) :]
    # Direct children only: no sub-folders, no `..`, so nothing is written outside `dest`.
    if not name or "/" in name or name in {".", ".."}:
        return None
    return name if any(fnmatch.fnmatchcase(name, p) for p in corpus.members) else None


def extract_corpus(archive: Path, corpus: Corpus, dest: Path) -> list[Path]:
    """Copy the corpus files out of a repository tar.gz into `dest`; returns them in order."""
    found: list[Path] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = _wanted(corpus, member.name) if member.isfile() else None
                if name is None:
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, open(dest / name, "wb") as target:
                    shutil.copyfileobj(source, target)
                found.append(dest / name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        reason = " ".join(str(error).split())
        raise DownloadError(
            f"{archive}: not a readable tar.gz archive ({reason}); pass --refresh to download "
            "it again"
        ) from None
    if not found:
        patterns = ", ".join(f"{corpus.folder}/{m}" for m in corpus.members)
        raise DownloadError(
            f"{archive}: no files matching {patterns}; is this the {corpus.repo} archive?"
        )
    return sorted(found)


def _reject_lfs_pointers(paths: Iterable[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            if f.read(len(LFS_POINTER)) == LFS_POINTER:
                raise DownloadError(
                    f"{path}: a Git LFS pointer, not the data; fetch the file with git lfs and "
                    "pass the repository archive with --from-archive"
                )


# --- conversion ----------------------------------------------------------------------------


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, target)


def convert(corpus: Corpus, folder: Path, target: Path) -> CheckReport:
    """Read the corpus files in `folder`, check them, and write canonical JSONL to `target`.

    Invalid records are skipped and counted; the corpus's known quirks are repaired as
    `anxin data` does for its format. Nothing is written when no record survives or when
    anything fails midway, so `target` keeps its earlier content.
    """
    report = CheckReport(skip_invalid=True)
    records = READERS[corpus.format](folder, on_error=report.add_problem)
    try:
        kept, report = check_records(
            records, skip_invalid=True, repair=corpus.format in REPAIR_BY_DEFAULT, report=report
        )
    except DataError as error:  # a problem with the folder itself, not one record
        raise DownloadError(_in_repo(error, folder, corpus)) from None
    for record in kept:
        # The reader names the temporary file; name the file in the repository instead.
        file, _ = location(record)
        if file:
            record["source"] = f"{corpus.name}:{corpus.folder}/{Path(file).name}"
    if not kept:
        first = report.problems[0] if report.problems else "no records"
        raise DownloadError(
            f"{corpus.name}: no valid dialogue (first problem: {_in_repo(first, folder, corpus)})"
        )
    write_jsonl(target, kept)
    return report


def _in_repo(problem: object, folder: Path, corpus: Corpus) -> str:
    """A reader's FILE:LINE: field: problem with the file named as in the repository."""
    return str(problem).replace(f"{folder}{os.sep}", f"{corpus.folder}/")


# --- the whole flow ------------------------------------------------------------------------


def _local_archive(archive: Path, expect_sha256: str | None, log: Log) -> Verified:
    if not archive.is_file():
        raise DownloadError(f"{archive}: no such archive")
    digest = sha256_of(archive)
    if expect_sha256 and digest != expect_sha256.lower():
        raise DownloadError(
            f"{archive}: sha256 {digest} does not match --expect-sha256 {expect_sha256}"
        )
    log(f"reading {archive} (sha256 {digest})")
    return Verified(archive, digest)


def _gather(
    corpus: Corpus,
    ref: str,
    fetcher: Fetcher,
    workdir: Path,
    from_archive: Path | None,
    expect_sha256: str | None,
) -> list[Verified]:
    """Put the corpus files into `workdir`; returns the verified downloads they came from."""
    if from_archive is not None or corpus.source == "archive":
        if from_archive is not None:
            archive = _local_archive(from_archive, expect_sha256, fetcher.log)
        else:
            url = archive_url(corpus, ref, fetcher.base)
            archive = fetcher.obtain(url, download_name(corpus, ref), expect_sha256)
        extract_corpus(archive.path, corpus, workdir)
        return [archive]
    if expect_sha256:
        raise DownloadError(
            f"{corpus.name} is fetched as {len(corpus.members)} separate files; --expect-sha256 "
            "checks one archive (use it with --from-archive)"
        )
    downloads = []
    for member in corpus.members:
        url = raw_url(corpus, ref, member, fetcher.base)
        downloads.append(fetcher.obtain(url, download_name(corpus, ref, member)))
        # The readers name records after their file, so give it its name in the repository.
        _link_or_copy(downloads[-1].path, workdir / member)
    return downloads


def download_corpus(
    name: str,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    base_url: str | None = None,
    from_archive: str | os.PathLike | None = None,
    ref: str | None = None,
    expect_sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    refresh: bool = False,
    progress: bool | None = None,
    log: Log = print,
) -> Summary:
    """Fetch, verify, convert and register one corpus; the Python face of the command.

    `base_url` (else $ANXIN_DOWNLOAD_BASE) replaces both codeload.github.com and
    raw.githubusercontent.com, keeping their path layouts. `progress=None` shows a bar
    only on a terminal.
    """
    corpus = CORPORA.get(name)
    if corpus is None:
        raise DownloadError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    out, ref = Path(out), ref or corpus.ref
    fetcher = Fetcher(
        out=out,
        base=base_url or os.environ.get(BASE_ENV) or None,
        timeout=timeout,
        refresh=refresh,
        progress=sys.stderr.isatty() if progress is None else progress,
        log=log,
    )
    log(licence_notice(corpus))  # before any byte is fetched, as the licences ask
    load_dataset_info(out)  # a broken dataset_info.json fails now, not after the download
    archive = Path(from_archive) if from_archive is not None else None
    jsonl = out / f"{corpus.name}.jsonl"
    (out / ".partial").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{corpus.name}-", dir=out / ".partial") as tmp:
        workdir = Path(tmp)
        downloads = _gather(corpus, ref, fetcher, workdir, archive, expect_sha256)
        _reject_lfs_pointers(sorted(workdir.iterdir()))
        report = convert(corpus, workdir, jsonl)
        problems = [_in_repo(p, workdir, corpus) for p in report.problems[:MAX_PROBLEMS_SHOWN]]
    summary = Summary(
        corpus=corpus.name,
        jsonl=jsonl,
        dataset_info=out / "dataset_info.json",
        licence_file=out / f"{corpus.name}.LICENSE.txt",
        downloads=downloads,
        report=report,
        problems=problems,
    )
    _publish(corpus, ref, summary)
    log(f"wrote {report.kept} dialogues to {jsonl}")
    log(report.summary())
    for problem in problems:
        log(f"  e.g. {problem}")
    log(f"registered '{corpus.name}' in {summary.dataset_info}; licence in {summary.licence_file}")
    return summary


def _publish(corpus: Corpus, ref: str, summary: Summary) -> None:
    """Register the converted file and write its licence and provenance next to it."""
    register_dataset(summary.jsonl.parent, corpus.name, canonical_entry(summary.jsonl.name))
    provenance = "\n".join(f"  {d.path.name}  sha256 {d.sha256}" for d in summary.downloads)
    write_text(
        summary.licence_file,
        f"{licence_notice(corpus)}\n\nConverted by anxin from {corpus.home} at ref {ref} on "
        f"{datetime.now(UTC).date().isoformat()}, from:\n{provenance}\n",
    )


# --- command line --------------------------------------------------------------------------

EPILOG = """\
examples:
  anxin data download smilechat
  anxin data download cpsycound --out data/corpora
  anxin data download emollm --ref main
  anxin data download smilechat --from-archive ~/Downloads/smile-main.tar.gz
  ANXIN_DOWNLOAD_BASE=http://mirror.local anxin data download cpsycound

The licence, attribution and how each corpus was made are printed before downloading and saved
as <out>/<name>.LICENSE.txt. An interrupted download resumes when the same command runs again;
finished downloads are checked against downloads/manifest.json and reused.
With --base-url, archives are fetched from BASE/<owner>/<repo>/tar.gz/refs/heads/<ref> and
single files from BASE/<owner>/<repo>/<ref>/<path>, the layouts of codeload.github.com and
raw.githubusercontent.com.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = parser.description or __doc__
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("corpus", choices=sorted(CORPORA), help="which corpus to fetch")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help=f"mirror replacing codeload/raw.githubusercontent.com (default: ${BASE_ENV})",
    )
    parser.add_argument(
        "--from-archive",
        type=Path,
        metavar="FILE",
        help="use a repository tar.gz already on disk instead of the network",
    )
    parser.add_argument("--ref", help="branch or full commit sha (default: the corpus's branch)")
    parser.add_argument(
        "--expect-sha256", metavar="HEX", help="refuse an archive with another hash"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for a connection or data (default: {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="download again even if a verified copy exists"
    )


def main(args: argparse.Namespace) -> int:
    try:
        download_corpus(
            args.corpus,
            args.out,
            base_url=args.base_url,
            from_archive=args.from_archive,
            ref=args.ref,
            expect_sha256=args.expect_sha256,
            timeout=args.timeout,
            refresh=args.refresh,
        )
    except (DownloadError, DataError) as error:
        print(f"anxin data download: error: {error}", file=sys.stderr)
        return 1
    return 0
