"""The interfaces over the Engine: terminal chat, the OpenAI-compatible API, the web page.

They share one set of generation options (`add_engine_arguments`) and one way to build the
Engine from them (`engine_from_args`), local or in front of an upstream server, so `anxin chat`,
`anxin serve` and `anxin web` accept the same flags and get the same care layer. Heavy imports
(torch, transformers, httpx) happen inside the functions, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import TYPE_CHECKING

from anxin.errors import ConfigError
from anxin.generation import SETTING_HELP, GenerationSettings, setting_defaults

if TYPE_CHECKING:
    from anxin.engine import Engine


def add_engine_arguments(parser: argparse.ArgumentParser, upstream: bool = True) -> None:
    """The model, persona and sampling flags every interface accepts."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        help="a name (smollm2), an HF folder, a .gguf file or a hub id (default: smollm2)",
    )
    model.add_argument("--adapter", help="a LoRA adapter folder saved by `anxin train`")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default: auto)")
    model.add_argument(
        "--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)"
    )
    model.add_argument(
        "--template",
        help="chat template: default (the tokenizer's own), chatml or llama3",
    )
    model.add_argument(
        "--backend",
        choices=("transformers", "llamacpp"),
        default="transformers",
        help="local generator (default: transformers; llamacpp needs a .gguf model)",
    )
    model.add_argument(
        "--quantize",
        choices=("int8",),
        help="transformers backend on a CPU: int8 weights for the matmuls; about 1.5x faster to "
        "generate on CPUs with AVX-512, SLOWER on AVX2-only CPUs (a warning says so); "
        "default: none",
    )
    model.add_argument(
        "--allow-template-mismatch",
        action="store_true",
        help="chat even if the template differs from the one the model was trained with",
    )
    model.add_argument(
        "--system", help="the persona (system prompt); default: the one saved with the model"
    )
    if upstream:
        add_upstream_arguments(parser)
    add_safety_arguments(parser)
    add_sampling_arguments(parser.add_argument_group("sampling (a request may override them)"))
    model.add_argument(
        "--language",
        choices=("zh", "en"),
        default="zh",
        help="language of the disclaimer and hotline panel (default: zh)",
    )


def add_sampling_arguments(group) -> None:
    """One flag per GenerationSettings field, with its default and help from one place."""
    for name, default in setting_defaults().items():
        kind = int if name in ("max_new_tokens", "top_k", "seed") else float
        shown = f" (default: {default})" if default is not None else ""
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            help=SETTING_HELP[name] + shown,
        )


def add_safety_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "care layer",
        "an optional guard model (Llama Guard 3, Qwen3Guard) on an OpenAI-compatible server: "
        "it can only raise the care layer's level, never lower it",
    )
    group.add_argument(
        "--safety-judge", metavar="URL", help="its base URL, e.g. http://gpu:8001/v1"
    )
    group.add_argument(
        "--safety-judge-model", metavar="NAME", help="the model to ask (default: its first model)"
    )
    group.add_argument(
        "--safety-judge-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="past this, the local decision stands alone and the audit log says so (default: 2)",
    )
    group.add_argument(
        "--safety-audit-log",
        metavar="FILE",
        help="append one line per flagged message: levels, categories, rule names, never words",
    )


def detector_from_args(args: argparse.Namespace):
    """The care layer the flags ask for: the local detector, with a guard model if given."""
    import os

    from anxin.safety import CrisisDetector
    from anxin.safety.judge import SafetyJudge

    judge = None
    if getattr(args, "safety_judge", None):
        judge = SafetyJudge(
            args.safety_judge,
            model=args.safety_judge_model,
            timeout=args.safety_judge_timeout,
            api_key=os.environ.get("ANXIN_SAFETY_JUDGE_KEY"),
        )
    return CrisisDetector(audit_log=getattr(args, "safety_audit_log", None), judge=judge)


def add_upstream_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "upstream",
        "let another OpenAI-compatible server generate (vLLM, SGLang, llama.cpp, Ollama)",
    )
    group.add_argument(
        "--upstream", metavar="URL", help="its base URL, e.g. http://gpu-box:8000/v1"
    )
    group.add_argument(
        "--upstream-model", help="the model name to ask it for (default: its first model)"
    )
    group.add_argument(
        "--upstream-key",
        help="Bearer key for the upstream (default: $ANXIN_UPSTREAM_KEY)",
    )
    group.add_argument(
        "--upstream-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the upstream's next bytes before answering 504 (default: 60)",
    )
    group.add_argument(
        "--tokenizer",
        help="a tokenizer folder to count prompt tokens exactly (default: an estimate)",
    )
    group.add_argument(
        "--context-length",
        type=int,
        help="the upstream model's context window in tokens (default: asked, else 4096)",
    )


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(**{name: getattr(args, name) for name in setting_defaults()})


def engine_from_args(args: argparse.Namespace) -> Engine:
    """A local Engine, or one whose generation happens on `--upstream`."""
    import os

    from anxin.engine import Engine

    settings = settings_from_args(args)
    detector = detector_from_args(args)
    if getattr(args, "upstream", None):
        from anxin.backends.upstream import UpstreamBackend

        backend = UpstreamBackend.connect(
            args.upstream,
            model=args.upstream_model,
            api_key=args.upstream_key or os.environ.get("ANXIN_UPSTREAM_KEY"),
            timeout=args.upstream_timeout,
            tokenizer=args.tokenizer,
            context_length=args.context_length,
            template=args.template,
            allow_template_mismatch=args.allow_template_mismatch,
        )
        persona = {"system_prompt": args.system} if args.system else {}
        return Engine(backend, settings=settings, detector=detector, **persona)
    return Engine.from_pretrained(
        args.model,
        args.adapter,
        device=args.device,
        dtype=args.dtype,
        template=args.template,
        system_prompt=args.system,
        allow_template_mismatch=args.allow_template_mismatch,
        backend=args.backend,
        quantize=args.quantize,
        settings=settings,
        detector=detector,
    )


def model_label(args: argparse.Namespace, engine: Engine | None = None) -> str:
    """A short name for the served model: the upstream's model, else the adapter's or model's
    folder name."""
    from pathlib import Path

    if getattr(args, "upstream", None):
        discovered = getattr(getattr(engine, "backend", None), "model", None)
        return discovered or args.upstream_model or "anxin-upstream"
    ref = args.adapter or args.model or "smollm2"
    return Path(str(ref).rstrip("/")).name or "anxin"


def http_url(host: str, port: int, path: str = "") -> str:
    """An http URL for a host and port; IPv6 addresses go in brackets ([::1]:8000)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}{path}"


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must look like USER:PASSWORD")
    return user, password


def page_login(host: str, auth: str | None, opens: str) -> tuple[str, str] | None:
    """The login a browser page asks for: --auth, else $ANXIN_WEB_AUTH. Binding beyond this
    machine without one is refused, because `opens` (what the page can do) would be anyone's."""
    login = parse_auth(auth or os.environ.get("ANXIN_WEB_AUTH"))
    if login is None and not is_loopback(host):
        raise ConfigError(
            f"binding {host} opens {opens} to other machines; set --auth USER:PASSWORD "
            "(or $ANXIN_WEB_AUTH), or keep --host 127.0.0.1"
        )
    return login


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
