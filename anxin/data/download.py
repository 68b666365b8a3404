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
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from anxin.atomic import write_jsonl, write_text
from anxin.data.corpora import CORPORA, Corpus, archive_url, download_name, licence_notice, raw_url
from anxin.data.fetch import BASE_ENV, DEFAULT_TIMEOUT_S, Fetcher, Log, Verified
from anxin.data.readers import READERS, REPAIR_BY_DEFAULT
from anxin.data.record import CheckReport, check_records, location
from anxin.data.registry import canonical_entry, load_dataset_info, register_dataset
from anxin.errors import DataError, DownloadError
from anxin.paths import sha256_file

DEFAULT_OUT = Path("data/corpora")
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
MAX_PROBLEMS_SHOWN = 5


@dataclass
class Summary:
    corpus: str
    jsonl: Path
    dataset_info: Path
    licence_file: Path
    downloads: list[Verified]
    report: CheckReport  # read, kept, duplicates, skipped by reason, repairs
    problems: list[str]  # the first few skipped records, named by their path in the repository


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
    digest = sha256_file(archive)
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
