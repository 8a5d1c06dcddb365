"""python -m ingest: the MQTT collector (same as `fansipan collect`)."""
import sys

from fansipan.cli import main

sys.exit(main(["collect", *sys.argv[1:]]))
