"""``gated-tsn train``: one stage of Algorithm 1 with Keras ``fit()``.

Its options are generated from the fields of
:class:`~keras_gated_tsn.training.stages.StageConfig` (flag, help and type are
in each field's metadata), so an option and the config field it sets cannot
drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

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
Writes OUT (the best epoch's model), OUT_log.csv (per epoch: losses, accuracies,
learning rate, mean fusion weights) and TensorBoard logs in OUT_logs/.
Before training it says what it found (videos, classes), the device, precision
and global batch; with output redirected to a file, one line per epoch."""
EPILOG = """\
the paper's recipe on a prepared UCF101 split:
  gated-tsn train --stage rgb   --data ucf101/ --out rgb.keras --backbone-weights imagenet
  gated-tsn train --stage flow  --data ucf101/ --out flow.keras --backbone-weights imagenet
  gated-tsn train --stage gate  --data ucf101/ --out gate.keras --rgb rgb.keras --flow flow.keras \\
      --gate-init imagenet
  gated-tsn train --stage joint --data ucf101/ --out gated.keras --gate gate.keras

a killed run goes on from where it was when started again with the same command
(the training state is in OUT.ckpt/, removed when the stage ends; --restart
discards it). Several GPUs of one machine: --strategy mirrored; several
machines: --strategy multi-worker with TF_CONFIG set on each (see README)."""


from keras_gated_tsn.cli.common import int_at_least, non_negative_float, positive_float, ratio


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
        if kwargs.get("type") is int:  # counts are checked by argparse: a usage error, not a traceback
            kwargs["type"] = int_at_least(0 if field.name in ("patience", "lr_patience", "seed") else 1)
        elif kwargs.get("type") is float:
            kwargs["type"] = ratio if field.name in ("dropout", "gate_dropout") else (
                non_negative_float if field.name in ("weight_decay", "gating_loss_weight") else positive_float)
        target.add_argument(meta["flag"], *meta.get("aliases", ()), dest=field.name, default=field.default,
                            help=meta["help"], **kwargs)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the stage and prints what it wrote; bad input raises (exit 2), a
    diverged run exits 1 naming the step."""
    from keras_gated_tsn.training.checkpoints import TrainingDiverged
    from keras_gated_tsn.training.stages import StageConfig, run_stage

    config = StageConfig(**{field.name: getattr(args, field.name) for field in _stage_fields()})
    try:
        result = run_stage(config)
    except TrainingDiverged as error:
        print(f"gated-tsn train: stopped: {error}", file=sys.stderr)
        return 1
    epochs = len(result.history.get("loss", []))
    best = (f"best {result.monitor} {result.best:.4f} at epoch {result.best_epoch}"
            if result.best is not None else f"no finite {result.monitor}")
    print(f"trained stage {config.stage}: {epochs} epochs" + (" (resumed)" if result.resumed_from else "")
          + f", {best}")
    for what, path in result.files.items():
        print(f"  {what}: {path}")
    return 0
