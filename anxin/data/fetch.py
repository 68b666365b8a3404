"""Verified, resumable downloads over HTTP (urllib only): the part of `anxin data download`
that talks to the network.

Bytes land in `.partial/<name>.part`; an interrupted download resumes with an HTTP Range request
(and If-Range, so a file that changed meanwhile starts over); only a complete file whose sha256
matches is renamed into place, and a manifest records every verified download so the next run
reuses it instead of fetching again.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from anxin.atomic import write_json
from anxin.errors import DownloadError, OfflineError
from anxin.paths import sha256_file

BASE_ENV = "ANXIN_DOWNLOAD_BASE"
DEFAULT_TIMEOUT_S = 15.0
CHUNK_BYTES = 1 << 16

Log = Callable[[str], None]


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
    digest = sha256_file(part)
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
        if target.stat().st_size != entry.get("size") or sha256_file(target) != entry["sha256"]:
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
