"""Errors that carry a stable code, so the API, the CLI and the job store report them the same way."""

from __future__ import annotations


class WorldgenError(Exception):
    """Base class: `code` is machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: object = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InvalidRequest(WorldgenError):
    """The caller asked for something we cannot do (bad size, empty prompt, ...)."""

    code = "invalid_request"


class ModelMissing(WorldgenError):
    """A model file is not on disk and may not be downloaded."""

    code = "model_missing"


class Cancelled(WorldgenError):
    """The job was cancelled between two steps."""

    code = "canceled"


class UnsupportedHardware(WorldgenError):
    """The requested precision or mode needs hardware this machine does not have."""

    code = "unsupported_hardware"
