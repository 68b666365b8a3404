"""The errors anxin raises on purpose: each says in one line what went wrong and what to do.

`anxin.cli` catches `AnxinError` and prints its message as one line with exit status 2; any
other exception is a bug and keeps its traceback. Each subclass also derives from the built-in
exception it refines (ValueError, RuntimeError), so callers that catch those still work.

This module is a leaf: it imports nothing from anxin.
"""

from __future__ import annotations


class AnxinError(Exception):
    """An error the user can act on; the message is the whole story."""


class ConfigError(AnxinError, ValueError):
    """A config problem, phrased as one line the user can act on."""


class DataError(AnxinError, ValueError):
    """Bad input data, located as precisely as the source allows: ``FILE:LINE: field: problem``.

    `reason` is a short category used to count skipped records; `line` is None when the problem
    concerns a whole file.
    """

    def __init__(
        self,
        file: object,
        line: int | None,
        field: str,
        problem: str,
        reason: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else "<records>"
        self.line = line
        self.field = field
        self.problem = problem
        self.reason = reason or problem
        super().__init__(self.file, line, field, problem, self.reason)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.problem}"


class OutputError(AnxinError, OSError):
    """A result cannot be written where asked (a folder, a missing or read-only place)."""


class ModelError(AnxinError, RuntimeError):
    """A model could not be found, fetched or loaded; the message says what to do."""


class ExportError(ModelError):
    """The model cannot be exported as asked; the message says why."""


class TemplateError(AnxinError, ValueError):
    """A chat template problem (unknown name, or not the template the model was trained with)."""


class ContextTooLong(AnxinError, ValueError):
    """Even the newest message alone does not fit beside the persona and the reply budget."""


class UpstreamError(AnxinError, RuntimeError):
    """The upstream server failed; `status` is what the API answers (502, or 400/429 passed on)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


class UpstreamTimeout(UpstreamError):
    """The upstream sent nothing for longer than the timeout (the API answers 504)."""

    def __init__(self, message: str):
        super().__init__(message, status=504)


class DownloadError(AnxinError, RuntimeError):
    """A corpus could not be downloaded, verified or converted."""


class OfflineError(DownloadError):
    """The source cannot be reached at all (no network, DNS, refused connection)."""
