"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class DenseVisionError(Exception):
    """An error caused by the user's input (files, flags, checkpoints), not by a bug."""


class DataError(DenseVisionError):
    """A data set or results file is malformed; the message names the file and the offending id."""


class CheckpointError(DenseVisionError):
    """A checkpoint cannot be loaded safely or does not match the model."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint needs full unpickling, which runs code from the file; loading it needs explicit trust.

    ``path`` and ``reason`` let a caller name its own way of granting trust (the CLI: ``--trust-checkpoint``).
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{self.untrusted_text}; load it only if you trust its source, with trust_checkpoint=True")

    @property
    def untrusted_text(self) -> str:
        """The first part of the message: the file and why it needs full unpickling."""
        return f"{self.path}: this checkpoint holds non-tensor objects and needs full unpickling ({self.reason})"
