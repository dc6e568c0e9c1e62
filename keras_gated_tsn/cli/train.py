"""``gated-tsn train``: one stage of Algorithm 1 with Keras ``fit()``.

Its options are generated from the fields of
:class:`~keras_gated_tsn.training.stages.StageConfig` (flag, help and type are
in each field's metadata), so an option and the config field it sets cannot
drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses

NAME = "train"
HELP = "train one stage of Algorithm 1 (rgb, flow, gate, joint) with Keras fit()"
DESCRIPTION = """\
Train one stage of the gated TSN (paper Algorithm 1, Sec. IV-A). The defaults
are the paper's recipe (and the authors' Caffe solver where the paper is silent),
except where it needs a file you provide: the paper starts the streams and the
gating ConvNet from ImageNet, here --backbone-weights imagenet and --gate-init
imagenet (a converted file, see weights/README.md); without them the streams start
from scratch and the gate from the RGB stream.

  rgb, flow  stage 1: a TSN stream (K=3 segments, partial BN, dropout 0.8/0.7,
             batch 32, lr 1e-3 RGB / 5e-3 flow as TSN); a flow stream starts
             from an RGB model with --init-from (cross-modality conv1) or from
             ImageNet with --backbone-weights imagenet
  gate       stage 2: streams frozen (inference mode), gating ConvNet trained for
             the fusion weights only (lambda = 0), batch 4 x 32 accumulated
  joint      stage 3: fusion weights and the gating classifier together,
             loss CE(fused) + lambda * CE(gating), lambda = 1, batch 4 x 32

SGD as Caffe: momentum 0.9, L2 weight decay 5e-4 on kernels added to the
gradient, biases at 2x the learning rate, the global gradient norm clipped at
40 (on the sum of the accumulated batches, as Caffe), lr divided by 10 on
plateau, early stopping on validation accuracy. Validation is DATA/val.txt
(see `gated-tsn split --help`: the authors validated on the test list).
Writes OUT (best epoch), OUT_best.keras during training and OUT_log.csv."""
EPILOG = """\
the paper's recipe on a prepared UCF101 split:
  gated-tsn train --stage rgb   --data ucf101/ --out rgb.keras --backbone-weights imagenet
  gated-tsn train --stage flow  --data ucf101/ --out flow.keras --backbone-weights imagenet
  gated-tsn train --stage gate  --data ucf101/ --out gate.keras --rgb rgb.keras --flow flow.keras \\
      --gate-init imagenet
  gated-tsn train --stage joint --data ucf101/ --out gated.keras --resume gate.keras"""


def _stage_fields():
    from keras_gated_tsn.training.stages import StageConfig

    return [field for field in dataclasses.fields(StageConfig) if field.metadata.get("flag")]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``train`` on an ``argparse`` subparsers object, one option per
    :class:`~keras_gated_tsn.training.stages.StageConfig` field."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups = {"general": parser}
    for field in _stage_fields():
        meta = field.metadata
        target = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        kwargs = dict(meta["argparse"])
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = meta["flag"].lstrip("-").upper().replace("-", "_")
        target.add_argument(meta["flag"], dest=field.name, default=field.default, help=meta["help"], **kwargs)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the stage and prints what it wrote; bad input raises (exit 2)."""
    from keras_gated_tsn.training.stages import StageConfig, run_stage

    config = StageConfig(**{field.name: getattr(args, field.name) for field in _stage_fields()})
    _, history = run_stage(config)
    epochs = len(history.history.get("loss", []))
    print(f"trained stage {config.stage} for {epochs} epochs; model written to {config.out}")
    return 0
