"""The ``gated-tsn`` command: one module per subcommand, one error path for all.

Each subcommand module defines ``NAME``, ``add_parser(subparsers)`` and
``run(args) -> int``; :func:`main` wraps every ``run`` in
:func:`~keras_gated_tsn.cli.common.with_error_path` (bad input: a message and
exit status 2; Ctrl-C: status 130). argparse is used in this package only: the
library modules take plain arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from keras_gated_tsn import __version__
from keras_gated_tsn.cli import convert_weights, demo, evaluate, fuse, plot, predict, prepare, split, train
from keras_gated_tsn.cli.common import with_error_path

#: The subcommands, in the order of the method.
COMMANDS = (prepare, split, train, evaluate, fuse, plot, predict, demo, convert_weights)

DESCRIPTION = """\
Gated two-stream action recognition (Zhu, Zou & Zhu, "Learning Gating ConvNet
for Two-Stream based Methods in Action Recognition").

The method, end to end:
  gated-tsn prepare VIDEOS/ DATA/                 frames + optical flow + list files
  gated-tsn split DATA/ --splits SPLITS/ --split 1 --val-from-test
                                                  train/val/test lists (UCF101, HMDB51)
  gated-tsn train --stage rgb   --data DATA/ --out rgb.keras
  gated-tsn train --stage flow  --data DATA/ --out flow.keras --init-from rgb.keras
  gated-tsn train --stage gate  --data DATA/ --out gate.keras --rgb rgb.keras --flow flow.keras
  gated-tsn train --stage joint --data DATA/ --out gated.keras --gate gate.keras
  gated-tsn evaluate --data DATA/ --list DATA/test.txt --model gated.keras --out test.npz
  gated-tsn fuse test.npz --val-scores val.npz    fixed / weighted / SCI / gated table
  gated-tsn plot weights test.npz --out fig2.png  the paper's figures (weights, top5, tsne, confusion)
  gated-tsn predict clip.avi --model gated.keras  top-5 classes of a raw video

Or all of it on the embedded sample clips: gated-tsn demo
Pretrained Caffe / PyTorch checkpoints: gated-tsn convert-weights SRC DST --arch ...
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``gated-tsn`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="gated-tsn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(func=with_error_path(command.NAME, command.run))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``gated-tsn``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
