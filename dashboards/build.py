"""Render every board to ``dashboards/json/<uid>.json``: ``python -m dashboards.build [--check]``.

The JSON files are what Grafana provisions (dashboards/provisioning/dashboards/
fansipan.yaml) and what ``dashboards.push`` uploads; they are committed so a
reviewer sees what changes on the screen.  ``--check`` renders in memory and
exits 1 naming every file that differs from a fresh render (CI and the tests
use it: the committed JSON must never drift from the code).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from .boards import availability, commune, datacenter, province, sensors
from .queries import register_variants

JSON_DIR = Path(__file__).resolve().parent / "json"

# Menu order: the overview first, then from the commune level up to the data center.
BOARDS = (province, commune, sensors, datacenter, availability)


def _number_panels(model: dashboard.Dashboard) -> None:
    """Give every panel (rows included) a stable id: Grafana needs them unique per board, and ids
    that follow the code keep links such as ``viewPanel=3`` meaning the same panel after a re-render."""
    for i, p in enumerate(model.panels or [], start=1):
        p.id_val = i


def render(module) -> dict:
    """One board as the plain JSON object Grafana reads."""
    model = module.build().build()
    _number_panels(model)
    return json.loads(json.dumps(model, cls=JSONEncoder))


def render_all() -> dict[str, dict]:
    """uid -> board JSON, for every board."""
    register_variants()
    out = {}
    for module in BOARDS:
        board = render(module)
        if board["uid"] in out:
            raise ValueError(f"two boards share the uid {board['uid']!r}")
        out[board["uid"]] = board
    return out


def dumps(board: dict) -> str:
    # Sorted keys and real UTF-8 (not \\u escapes): diffs of the committed files stay small and readable.
    return json.dumps(board, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Files under ``directory`` that are missing, differ from a fresh render, or belong to no board."""
    boards = render_all()
    wanted = {f"{uid}.json": dumps(b) for uid, b in boards.items()}
    problems = []
    for name, text in sorted(wanted.items()):
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from a fresh render")
    for path in sorted(directory.glob("*.json")):
        if path.name not in wanted:
            problems.append(f"{path}: no board renders it (delete it, or add its board to BOARDS)")
    return problems


def write(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, board in render_all().items():
        path = directory / f"{uid}.json"
        path.write_text(dumps(board), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the JSON files are stale")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help=f"directory of the JSON files (default {JSON_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: python -m dashboards.build", file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
