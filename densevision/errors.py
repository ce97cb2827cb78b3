"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class DenseVisionError(Exception):
    """An error caused by the user's input (files, flags, checkpoints), not by a bug."""


class DataError(DenseVisionError):
    """A data set or results file is malformed; the message names the file and the offending id."""


class CheckpointError(DenseVisionError):
    """A checkpoint cannot be loaded safely or does not match the model."""
