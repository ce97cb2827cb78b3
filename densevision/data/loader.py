"""A DataLoader whose user-facing errors stay one line when they happen in a worker process.

PyTorch re-raises a worker's exception in the main process with the worker's whole traceback as its message;
here the dataset's ``DenseVisionError`` is caught in the worker, travels as a plain value through the collate
function, and is raised again in the main process with its own one-line message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from torch.utils.data import DataLoader, Dataset, default_collate

from densevision.errors import DenseVisionError


class _Failure(NamedTuple):
    kind: type[DenseVisionError]
    message: str


class _CatchErrors(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except DenseVisionError as exc:
            return _Failure(type(exc), str(exc))


class _Collate:
    def __init__(self, collate_fn: Callable[[Any], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, _Failure):
            return batch
        failure = next((item for item in batch if isinstance(item, _Failure)), None)
        return failure if failure is not None else self.collate_fn(batch)


class OneLineErrorLoader:
    """``DataLoader(dataset, collate_fn=..., **kwargs)`` whose iteration raises the dataset's
    ``DenseVisionError`` (e.g. a ``DataError`` naming the json and the image id) with its one-line message, with
    and without worker processes."""

    def __init__(self, dataset: Dataset, *, collate_fn: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        self.loader = DataLoader(_CatchErrors(dataset), collate_fn=_Collate(collate_fn or default_collate), **kwargs)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if isinstance(batch, _Failure):
                raise batch.kind(batch.message)
            yield batch
