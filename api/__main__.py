"""``python -m api`` serves the API; ``python -m api keys create --role admin --name ops`` manages keys."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        from .keys import main as keys_main

        return keys_main(argv[1:])
    if argv not in ([], ["serve"]):
        print("usage: python -m api [serve] | python -m api keys {create,list,revoke} ...", file=sys.stderr)
        return 2
    from fansipan.config import ConfigError

    from .main import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve()
    except ConfigError as exc:
        print(f"fansipan api: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
