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
HELP = "train one stage of Algorithm 1 (rgb, flow, gate, joint) or another system (conv-fusion, gcf, multitask)"
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
and global batch; with output redirected to a file, one line per epoch.

The other systems of the papers train with the same fit(), schedule, logs and
resumption:

  conv-fusion  convolutional two-stream fusion (Feichtenhofer et al. 2016): two
             trained streams (--rgb, --flow) fused at a conv layer in space and
             time, T = 5 snippets tau in [1, 10] frames apart, layers before the
             fusion frozen; batch 96, lr 1e-3 (Sec. 3.5); monitors the fused
             (averaged towers') accuracy
  gcf        GCF-Net (Hsiao et al. 2020): C = 10 clips of T = 16 frames at 112 px
             through a 3D backbone, inter-clip fusion and gated clip-wise
             attention, loss CE + lambda |att|_1; the paper's fine-tuning SGD
             (lr 0.01, momentum 0.9, dampening 0.9, weight decay 1e-3, batch
             128, no clipping)
  multitask  the two-stream ConvNets' multi-task stream (Simonyan & Zisserman
             2014, Sec. 4): one stream, one head per dataset (--data and each
             --also-data), each head's loss on its own dataset's videos only;
             batches drawn from the datasets in proportion to their sizes"""
EPILOG = """\
the paper's recipe on a prepared UCF101 split:
  gated-tsn train --stage rgb   --data ucf101/ --out rgb.keras --backbone-weights imagenet
  gated-tsn train --stage flow  --data ucf101/ --out flow.keras --backbone-weights imagenet
  gated-tsn train --stage gate  --data ucf101/ --out gate.keras --rgb rgb.keras --flow flow.keras \\
      --gate-init imagenet
  gated-tsn train --stage joint --data ucf101/ --out gated.keras --gate gate.keras

the other systems:
  gated-tsn train --stage conv-fusion --data ucf101/ --out fusion.keras --rgb rgb.keras --flow flow.keras
  gated-tsn train --stage gcf --data ucf101/ --out gcf.keras --backbone mobilenet3d_v2 --freeze-backbone \\
      --init-from kinetics_gcf.keras
  gated-tsn train --stage multitask --data ucf101/ --also-data hmdb51/ --out multitask.keras \\
      --backbone cnn_m_2048_no_norm2 --segments 1 --new-length 10
  gated-tsn evaluate --data ucf101/ --list ucf101/test.txt --model fusion.keras --out fusion.npz

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
        if kwargs.get("nargs") == 2:
            kwargs["metavar"] = ("TAU_MIN", "TAU_MAX")
        elif kwargs.get("action") == "append":
            kwargs["metavar"] = "DIR"
        elif "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = meta["flag"].lstrip("-").upper().replace("-", "_")
        if kwargs.get("type") is int:  # counts are checked by argparse: a usage error, not a traceback
            kwargs["type"] = int_at_least(0 if field.name in ("patience", "lr_patience", "seed") else 1)
        elif kwargs.get("type") is float:
            kwargs["type"] = ratio if field.name in ("dropout", "gate_dropout") else (
                non_negative_float if field.name in ("weight_decay", "gating_loss_weight", "sparsity_weight",
                                                     "clip_gradients") else positive_float)
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
