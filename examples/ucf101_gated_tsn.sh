#!/usr/bin/env bash
# The gated TSN on UCF101 split 1 with the paper's recipe (Sec. IV-A, Algorithm 1):
# every setting at its default (the defaults are the recipe), plus the ImageNet
# starting points the paper uses (--backbone-weights, --gate-init), which are files.
#
#   bash examples/ucf101_gated_tsn.sh UCF-101/ ucfTrainTestlist/ work/
#
# UCF-101/ is the dataset as distributed (one folder per class of .avi files),
# ucfTrainTestlist/ the official split files. The streams and the gate start from
# ImageNet: convert TSN's bn_inception_rgb_init.caffemodel once into
# ~/.keras/models/bn_inception_imagenet.weights.h5 (see weights/README.md), or
# point IMAGENET at another backbone weights file. To start from TSN's released
# UCF101 streams instead, set TSN_RGB and TSN_FLOW to their .caffemodel files.
# Extraction with OpenCV's TV-L1 takes about a second per frame pair per CPU core:
# run it on many cores (WORKERS), or set FLOW=tvl1-tf (the same TV-L1 in
# TensorFlow, on the GPU when there is one; WORKERS=1 then). A killed extraction
# goes on where it stopped when this script runs again.
set -euo pipefail
videos=${1:?UCF-101 folder}; splits=${2:?split files folder}; work=${3:-work}
workers=${WORKERS:-$(nproc)}
flow=${FLOW:-tvl1}
imagenet=${IMAGENET:-imagenet}
data="$work/data"

# Frames and flow, then the lists of the three official splits (data/splits/N/,
# split 1 also as data/train.txt, val.txt, test.txt). The authors validated
# (early stopping, lr schedule, the weight search) on the test list; the fusion
# table marks what was tuned on it. For a held-out validation set of your own
# streams use --val-fraction 0.1 instead.
status=0
gated-tsn prepare "$videos" "$data" --flow "$flow" --workers "$workers" --splits "$splits" --val-from-test \
    || status=$?
# 1: some videos could not be extracted (named in data/failed.txt); go on without them.
[ "$status" -le 1 ] || exit "$status"

# Stage 1: the TSN streams (K=3, batch 32, lr 1e-3 RGB / 5e-3 flow, partial BN,
# cross-modality initialisation of the flow stream from the ImageNet RGB weights).
if [ -n "${TSN_RGB:-}" ] && [ -n "${TSN_FLOW:-}" ]; then
    gated-tsn convert-weights "$TSN_RGB" "$work/rgb.keras" --arch bn_inception
    gated-tsn convert-weights "$TSN_FLOW" "$work/flow.keras" --arch bn_inception --modality flow
else
    gated-tsn train --stage rgb  --data "$data" --out "$work/rgb.keras"  --backbone-weights "$imagenet"
    gated-tsn train --stage flow --data "$data" --out "$work/flow.keras" --backbone-weights "$imagenet"
fi
# Stage 2: streams frozen, the gating ConvNet (conv fusion of inception_4e, ReLU
# weights, dropout 0.8, ImageNet start) learns the fusion weights, lambda = 0,
# batch 4 x 32 accumulated, lr 1e-3 -> 1e-4, gradient norm clipped at 40.
gated-tsn train --stage gate  --data "$data" --out "$work/gate.keras" \
    --rgb "$work/rgb.keras" --flow "$work/flow.keras" --gate-init "$imagenet"
# Stage 3: jointly with the gating classifier, lambda = 1.
gated-tsn train --stage joint --data "$data" --out "$work/gated.keras" --gate "$work/gate.keras"

# 25 frames x 10 crops per video, then the fusion table of Table III's columns.
# val.txt is the test list here, so the test scores serve as validation scores
# (the weighted row's tuned_on column then says "test list").
gated-tsn evaluate --data "$data" --list "$data/test.txt" --model "$work/gated.keras" --out "$work/test.npz"
gated-tsn fuse "$work/test.npz" --val-scores "$work/test.npz"
