"""What a command of the ``densevision`` CLI is: the static table of ``densevision.cli`` is made of these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    """A command run by ``densevision.cli.<module>.<run>`` with flags from ``<add>``."""

    name: str
    module: str
    help: str
    add: str = "add_arguments"
    run: str = "run"


@dataclass(frozen=True)
class Registered:
    """A command whose module adds its own parser (and subcommands) with ``register(subparsers)``."""

    name: str
    module: str
    help: str


@dataclass(frozen=True)
class Group:
    """A task with verbs: ``densevision <name> <verb>``."""

    name: str
    help: str
    description: str
    verbs: tuple[Verb, ...]
