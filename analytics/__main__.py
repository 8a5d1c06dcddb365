"""python -m analytics: the detection service (same as `fansipan detect`)."""
import sys

from fansipan.cli import main

sys.exit(main(["detect", *sys.argv[1:]]))
