"""Errors of the backends layer.

All derive from :class:`model_boss.errors.ModelBossError`::

    BackendError
    ├── BackendStartError         start() failed: bad binary or model, the process exited
    │   └── BackendStartTimeout   (also TimeoutError) not ready within the start-up timeout
    ├── BackendCrashed            the process exited while it should have been running
    ├── BackendNotRunning         a request reached a backend that is not ready
    ├── UnsupportedOperation      (also NotImplementedError) this kind cannot do that request
    └── UpstreamError             the upstream answered with an HTTP error or broke off
        └── AnswerTooLarge        its answer is larger than the client reads (max_answer_mb)

Messages of process failures end with the last lines the process logged, so that the cause
(llama-server's own error text, a Python traceback) is in the error itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from model_boss.errors import ModelBossError

__all__ = [
    "AnswerTooLarge",
    "BackendCrashed",
    "BackendError",
    "BackendNotRunning",
    "BackendStartError",
    "BackendStartTimeout",
    "UnsupportedOperation",
    "UpstreamError",
]


def _with_log(message: str, log_tail: Sequence[str]) -> str:
    if not log_tail:
        return message
    return message + "\n--- last log lines ---\n" + "\n".join(log_tail)


class BackendError(ModelBossError):
    """Base of every backend error."""


class BackendStartError(BackendError):
    """The backend could not be started; ``log_tail`` holds the process's last lines."""

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        super().__init__(_with_log(message, log_tail))
        self.log_tail: tuple[str, ...] = tuple(log_tail)


class BackendStartTimeout(BackendStartError, TimeoutError):
    """The backend did not become ready within its start-up timeout (it was stopped)."""


class BackendCrashed(BackendError):
    """The backend's process exited unexpectedly."""

    def __init__(self, message: str, returncode: int | None, log_tail: Sequence[str]) -> None:
        super().__init__(_with_log(message, log_tail))
        self.returncode = returncode
        self.log_tail: tuple[str, ...] = tuple(log_tail)


class BackendNotRunning(BackendError):
    """A request was sent to a backend that is not (or no longer) ready."""


class UnsupportedOperation(BackendError, NotImplementedError):
    """The backend kind does not support this request (e.g. images on llama-server)."""


class UpstreamError(BackendError):
    """The upstream server answered with an error status, or the connection failed.

    ``status`` is the HTTP status, or None when no response arrived; ``body`` is the
    upstream's answer (secrets removed), for the API layer to pass on.
    """

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message if not body else f"{message}: {body[:2000]}")
        self.status = status
        self.body = body


class AnswerTooLarge(UpstreamError):
    """The upstream's answer (or one event of its stream) is larger than the limit: it was
    not read whole, and the request fails (502)."""
