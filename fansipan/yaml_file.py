"""Operator-written YAML files (notification rules, probe config): read them, and say what is wrong and where.

Every message starts with the file (``origin``), then the key path, then the problem, all problems at once.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


def read(path: str | Path, what: str, error: type[Exception]):
    """The parsed YAML of ``path``; ``error`` naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def problems(exc: ValidationError, origin: str) -> list[str]:
    """One line a validation error: ``<origin>: <key path>: <message>``."""
    return [f"{origin}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]


def refuse(found: list[str], what: str, error: type[Exception]) -> Exception:
    """The error to raise for ``found`` problems in the ``what``."""
    return error(f"{len(found)} problem(s) in the {what}:\n  " + "\n  ".join(found))
