"""Reading JSON files with every failure as one ``DataError`` line naming the file."""

from __future__ import annotations

import json
import os
from typing import Any

from densevision.errors import DataError


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing, unreadable, malformed or too deeply nested file raises ``DataError``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON (nested too deeply)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
