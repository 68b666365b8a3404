"""`anxin data download` against a local HTTP server serving archives in GitHub's layouts.

The fixture trees under fixtures/download/ copy the real repositories' layouts in miniature;
each test packs them the way codeload.github.com does (one top folder `<repo>-<ref>/`, a pax
global header) and serves them with Range support, so resuming is exercised for real.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from anxin.data import corpora, download
from anxin.data.corpora import CORPORA
from anxin.data.download import download_corpus
from anxin.data.registry import canonical_entry
from anxin.errors import DownloadError, OfflineError

FIXTURES = Path(__file__).parent / "fixtures" / "download"
TREES = {"smilechat": "smile", "cpsycound": "cpsycoun", "emollm": "emollm"}
SMILE_ARCHIVE = "/qiuhuachuan/smile/tar.gz/refs/heads/main"
CPSYCOUN_ARCHIVE = "/CAS-SIAT-XinHai/CPsyCoun/tar.gz/refs/heads/main"
EMOLLM_RAW = "/SmartFlowAI/EmoLLM/main/datasets/"


def pack(tree: Path | None, top: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz of `tree` (and `extra` files) under `top/`, as GitHub lays out its archives."""
    buffer = io.BytesIO()
    header = {"comment": "0" * 40}  # GitHub puts the commit id in a pax global header
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers=header
    ) as tar:
        if tree is not None:
            tar.add(tree, arcname=top)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def served_files() -> dict[str, bytes]:
    emollm = FIXTURES / "emollm" / "datasets"
    files = {
        SMILE_ARCHIVE: pack(FIXTURES / "smile", "smile-main"),
        CPSYCOUN_ARCHIVE: pack(FIXTURES / "cpsycoun", "CPsyCoun-main"),
    }
    files.update({EMOLLM_RAW + p.name: p.read_bytes() for p in emollm.iterdir()})
    return files


class Server:
    """What the handler serves, and what it was asked."""

    def __init__(self) -> None:
        self.files = served_files()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.cut_once: dict[str, int] = {}  # path -> bytes sent before dropping the connection
        self.ignore_range = False
        self.url = ""

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    def asked(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]


class Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state = self.server_state
        state.requests.append((self.path, dict(self.headers)))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = self._range_start(state)
        if start is not None and start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start is not None else 200)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        start = start or 0
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", state.etag(self.path))
        self.end_headers()
        cut = state.cut_once.pop(self.path, None)
        self.wfile.write(body[start:cut] if cut is not None else body[start:])
        if cut is not None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection dies mid-body

    def _range_start(self, state: Server) -> int | None:
        asked = self.headers.get("Range")
        if not asked or state.ignore_range:
            return None
        if_range = self.headers.get("If-Range")
        if if_range and if_range != state.etag(self.path):
            return None  # the file changed: send it whole
        return int(asked.removeprefix("bytes=").split("-")[0])


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(download.BASE_ENV, raising=False)
    state = Server()
    handler = type("BoundHandler", (Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="anxin data download")
    download.add_arguments(parser)
    return download.main(parser.parse_args(list(argv)))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the whole flow ------------------------------------------------------------------------

EXPECTED = {  # corpus -> (dialogues kept, ids)
    "smilechat": (3, ["0", "1", "2"]),
    "cpsycound": (2, ["case_0", "case_1"]),
    "emollm": (3, ["data-1", "data-2", "data_pro-1"]),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_download_converts_registers_and_credits(name, server, tmp_path, capsys):
    out = tmp_path / "corpora"
    assert run_cli(name, "--out", str(out), "--base-url", server.url) == 0

    corpus = CORPORA[name]
    stdout = capsys.readouterr().out
    assert corpus.licence in stdout and corpus.attribution in stdout
    # The licence comes first, before any download starts.
    assert stdout.index(corpus.attribution) < stdout.index("downloading")

    records = read_jsonl(out / f"{name}.jsonl")
    count, ids = EXPECTED[name]
    assert len(records) == count
    assert [r["id"] for r in records] == ids
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[-1] == "assistant" and "user" in roles
        assert record["source"].startswith(f"{name}:{corpus.folder}/")
    assert f"wrote {count} dialogues" in stdout

    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert info[name] == canonical_entry(f"{name}.jsonl")
    licence = (out / f"{name}.LICENSE.txt").read_text(encoding="utf-8")
    assert corpus.licence_url in licence and corpus.generation in licence

    manifest = json.loads((out / "downloads" / "manifest.json").read_text(encoding="utf-8"))
    for file_name, entry in manifest.items():
        served = server.files[entry["url"].removeprefix(server.url)]
        assert entry["sha256"] == hashlib.sha256(served).hexdigest()
        assert entry["size"] == len(served)
        assert entry["sha256"] in licence and (out / "downloads" / file_name).exists()
    assert not list((out / ".partial").iterdir())  # nothing left half-done


def test_smilechat_repairs_and_skips_like_the_reader(server, tmp_path, capsys):
    summary = download_corpus("smilechat", tmp_path, base_url=server.url, log=print)
    records = {r["id"]: r for r in read_jsonl(summary.jsonl)}
    # 2.json has two client turns in a row: joined into one user turn.
    assert [m["role"] for m in records["2"]["messages"]] == ["user", "assistant"]
    # 10.json has an unknown role tag: skipped, reported by its path in the repository.
    assert "10" not in records
    assert summary.report.kept == 3 and sum(summary.report.skipped.values()) == 1
    assert [p.split(":")[0] for p in summary.problems] == ["data/10.json"]
    stdout = capsys.readouterr().out
    assert "data/10.json:" in stdout and "therapist" in stdout
    assert "你好" not in stdout  # never the conversation text


def test_emollm_takes_only_its_general_sets(server, tmp_path):
    download_corpus("emollm", tmp_path, base_url=server.url, log=lambda _: None)
    fetched = {path for path, _ in server.requests}
    assert fetched == {EMOLLM_RAW + "data.json", EMOLLM_RAW + "data_pro.json"}


def test_base_url_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_ENV, server.url)
    summary = download_corpus("cpsycound", tmp_path, log=lambda _: None)
    assert summary.report.kept == 2
    assert server.asked(CPSYCOUN_ARCHIVE)


# --- resuming and verifying ----------------------------------------------------------------


def test_interrupted_download_resumes_with_range(server, tmp_path, capsys):
    size = len(server.files[SMILE_ARCHIVE])
    server.cut_once[SMILE_ARCHIVE] = size // 2
    out = tmp_path / "corpora"

    assert run_cli("smilechat", "--out", str(out), "--base-url", server.url) == 1
    error = capsys.readouterr().err
    assert "again to resume" in error and len(error.strip().splitlines()) == 1
    part = out / ".partial" / "smilechat-main.tar.gz.part"
    assert part.stat().st_size == size // 2
    assert not (out / "smilechat.jsonl").exists()
    assert not (out / "downloads" / "smilechat-main.tar.gz").exists()

    assert run_cli("smilechat", "--out", str(out), "--base-url", server.url) == 0
    second = server.asked(SMILE_ARCHIVE)[-1]
    assert second["Range"] == f"bytes={size // 2}-"
    assert second["If-Range"] == server.etag(SMILE_ARCHIVE)
    archive = out / "downloads" / "smilechat-main.tar.gz"
    assert archive.read_bytes() == server.files[SMILE_ARCHIVE]
    assert len(read_jsonl(out / "smilechat.jsonl")) == 3
    assert not part.exists()


def _stale_part(out: Path, url: str, etag: str) -> Path:
    partial = out / ".partial"
    partial.mkdir(parents=True)
    (partial / "smilechat-main.tar.gz.part.json").write_text(json.dumps({"url": url, "etag": etag}))
    part = partial / "smilechat-main.tar.gz.part"
    part.write_bytes(b"not the start of this archive")
    return part


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    url = server.url + SMILE_ARCHIVE
    _stale_part(tmp_path, url, server.etag(SMILE_ARCHIVE))
    summary = download_corpus(
        "smilechat", tmp_path, base_url=server.url, progress=True, log=lambda _: None
    )
    assert server.asked(SMILE_ARCHIVE)[0]["Range"].startswith("bytes=")
    assert summary.downloads[0].path.read_bytes() == server.files[SMILE_ARCHIVE]


def test_changed_file_restarts_instead_of_splicing(server, tmp_path):
    url = server.url + SMILE_ARCHIVE
    _stale_part(tmp_path, url, etag='"an-older-version"')
    summary = download_corpus("smilechat", tmp_path, base_url=server.url, log=lambda _: None)
    assert summary.downloads[0].path.read_bytes() == server.files[SMILE_ARCHIVE]


def test_complete_part_is_finished_without_refetching_bytes(server, tmp_path):
    """A crash after the last byte but before the rename: the server answers 416."""
    url = server.url + SMILE_ARCHIVE
    part = _stale_part(tmp_path, url, server.etag(SMILE_ARCHIVE))
    part.write_bytes(server.files[SMILE_ARCHIVE])
    summary = download_corpus("smilechat", tmp_path, base_url=server.url, log=lambda _: None)
    assert summary.report.kept == 3
    assert summary.downloads[0].path.read_bytes() == server.files[SMILE_ARCHIVE]
    assert len(server.asked(SMILE_ARCHIVE)) == 1  # the 416 only: no byte sent twice


def test_verified_download_is_reused_and_a_damaged_one_fetched_again(server, tmp_path, capsys):
    args = ("cpsycound", "--out", str(tmp_path), "--base-url", server.url)
    assert run_cli(*args) == 0
    assert run_cli(*args) == 0
    assert len(server.asked(CPSYCOUN_ARCHIVE)) == 1
    assert "using the verified download" in capsys.readouterr().out

    archive = tmp_path / "downloads" / "cpsycound-main.tar.gz"
    damaged = bytearray(archive.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size, other content
    archive.write_bytes(bytes(damaged))
    assert run_cli(*args) == 0
    assert len(server.asked(CPSYCOUN_ARCHIVE)) == 2
    assert archive.read_bytes() == server.files[CPSYCOUN_ARCHIVE]


def test_expect_sha256(server, tmp_path, capsys):
    good = hashlib.sha256(server.files[SMILE_ARCHIVE]).hexdigest()
    base = ("smilechat", "--out", str(tmp_path), "--base-url", server.url)
    assert run_cli(*base, "--expect-sha256", "0" * 64) == 1
    assert "does not match --expect-sha256" in capsys.readouterr().err
    assert not (tmp_path / "downloads" / "smilechat-main.tar.gz").exists()
    assert not (tmp_path / ".partial" / "smilechat-main.tar.gz.part").exists()
    assert not (tmp_path / "smilechat.jsonl").exists()
    assert run_cli(*base, "--expect-sha256", good.upper()) == 0


# --- offline -------------------------------------------------------------------------------


def test_offline_fails_at_once_with_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(download.BASE_ENV, raising=False)
    base = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    assert run_cli("cpsycound", "--out", str(tmp_path), "--base-url", base) == 1
    assert time.monotonic() - started < 2
    captured = capsys.readouterr()
    assert CORPORA["cpsycound"].attribution in captured.out  # shown even though nothing came
    error = captured.err.strip()
    assert len(error.splitlines()) == 1
    assert base + CPSYCOUN_ARCHIVE in error
    assert "unreachable" in error and "--base-url" in error and "--from-archive" in error
    assert not (tmp_path / "cpsycound.jsonl").exists()


def test_silent_server_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(OfflineError, match="timed out"):
            download_corpus("smilechat", tmp_path, base_url=base, timeout=0.3, log=lambda _: None)
        assert time.monotonic() - started < 3


def test_from_archive_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_ENV, f"http://127.0.0.1:{closed_port()}")
    archive = tmp_path / "smile-main.tar.gz"
    archive.write_bytes(pack(FIXTURES / "smile", "smile-main"))
    out = tmp_path / "corpora"
    assert run_cli("smilechat", "--out", str(out), "--from-archive", str(archive)) == 0
    assert len(read_jsonl(out / "smilechat.jsonl")) == 3
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in (
        out / "smilechat.LICENSE.txt"
    ).read_text(encoding="utf-8")


# --- nothing half-written, nothing outside the folder --------------------------------------


def test_failed_conversion_keeps_the_earlier_output(server, tmp_path, monkeypatch):
    download_corpus("smilechat", tmp_path, base_url=server.url, log=lambda _: None)
    before = {
        p: p.read_bytes() for p in (tmp_path / "smilechat.jsonl", tmp_path / "dataset_info.json")
    }

    def breaks_midway(folder, on_error=None):
        yield {
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        }
        yield {
            "bad": object(),
            "messages": [  # cannot be written as JSON
                {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d"},
            ],
        }

    monkeypatch.setitem(download.READERS, "smilechat", breaks_midway)
    with pytest.raises(TypeError):
        download_corpus("smilechat", tmp_path, base_url=server.url, log=lambda _: None)
    assert {p: p.read_bytes() for p in before} == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".smilechat.jsonl")]
    assert leftovers == []
    assert not list((tmp_path / ".partial").iterdir())


def test_no_valid_dialogue_writes_nothing(server, tmp_path, capsys):
    bad = json.dumps([{"role": "therapist", "content": "x"}]).encode()
    server.files[SMILE_ARCHIVE] = pack(None, "smile-main", {"README.md": b"#", "data/0.json": bad})
    assert run_cli("smilechat", "--out", str(tmp_path), "--base-url", server.url) == 1
    error = capsys.readouterr().err
    assert "no valid dialogue" in error and "data/0.json:" in error
    assert not (tmp_path / "smilechat.jsonl").exists()
    assert not (tmp_path / "dataset_info.json").exists()


def test_broken_dataset_info_fails_before_downloading(server, tmp_path, capsys):
    (tmp_path / "dataset_info.json").write_text("{oops", encoding="utf-8")
    assert run_cli("smilechat", "--out", str(tmp_path), "--base-url", server.url) == 1
    assert "dataset_info.json:1: json:" in capsys.readouterr().err
    assert server.requests == []


def test_archive_without_the_corpus_folder(server, tmp_path, capsys):
    server.files[SMILE_ARCHIVE] = pack(FIXTURES / "cpsycoun", "smile-main")
    assert run_cli("smilechat", "--out", str(tmp_path), "--base-url", server.url) == 1
    error = capsys.readouterr().err
    assert "no files matching data/*.json" in error and "qiuhuachuan/smile" in error


def test_extraction_keeps_to_the_corpus_folder(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    good = b'[{"role": "client", "content": "x"}]'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in (
            "smile-main/data/1.json",
            "smile-main/data/../../escape.json",
            "smile-main/data/sub/2.json",
            "smile-main/other/3.json",
        ):
            info = tarfile.TarInfo(name)
            info.size = len(good)
            tar.addfile(info, io.BytesIO(good))
        link = tarfile.TarInfo("smile-main/data/4.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive.write_bytes(buffer.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    found = download.extract_corpus(archive, CORPORA["smilechat"], dest)
    assert [p.name for p in found] == ["1.json"]
    assert sorted(p.name for p in dest.iterdir()) == ["1.json"]
    assert not (tmp_path / "escape.json").exists()


def test_git_lfs_pointer_is_refused(server, tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    server.files[EMOLLM_RAW + "data_pro.json"] = pointer
    with pytest.raises(DownloadError, match="Git LFS pointer"):
        download_corpus("emollm", tmp_path, base_url=server.url, log=lambda _: None)
    assert not (tmp_path / "emollm.jsonl").exists()


def test_not_a_tarball(server, tmp_path):
    server.files[SMILE_ARCHIVE] = b"<html>rate limited</html>"
    with pytest.raises(DownloadError, match="not a readable tar.gz.*--refresh"):
        download_corpus("smilechat", tmp_path, base_url=server.url, log=lambda _: None)


def test_missing_file_names_url_and_ref(server, tmp_path):
    with pytest.raises(DownloadError, match=r"refs/heads/nope: HTTP 404.*--ref"):
        download_corpus("smilechat", tmp_path, base_url=server.url, ref="nope", log=print)


# --- the command's face --------------------------------------------------------------------


def test_help_teaches_with_examples():
    parser = argparse.ArgumentParser(prog="anxin data download")
    download.add_arguments(parser)
    text = parser.format_help()
    assert "examples:" in text and "--from-archive" in text and download.BASE_ENV in text
    assert parser.parse_args(["emollm"]).out == download.DEFAULT_OUT


def test_urls_follow_github_layouts():
    smile = CORPORA["smilechat"]
    assert corpora.archive_url(smile, "main", None) == (
        "https://codeload.github.com/qiuhuachuan/smile/tar.gz/refs/heads/main"
    )
    sha = "a" * 40
    assert (
        corpora.archive_url(smile, sha, "http://m/") == f"http://m/qiuhuachuan/smile/tar.gz/{sha}"
    )
    assert corpora.raw_url(CORPORA["emollm"], "main", "data.json", None) == (
        "https://raw.githubusercontent.com/SmartFlowAI/EmoLLM/main/datasets/data.json"
    )
