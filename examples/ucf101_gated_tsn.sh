#!/usr/bin/env bash
# The gated TSN on UCF101 split 1, as in the paper (Sec. IV-A), with the package's commands.
#
#   bash examples/ucf101_gated_tsn.sh UCF-101/ ucfTrainTestlist/ work/
#
# UCF-101/ is the dataset as distributed (one folder per class of .avi files),
# ucfTrainTestlist/ the official split files. Extraction with TV-L1 takes about a
# second per frame pair per CPU core: run it on many cores (--workers).
# Without ImageNet weights the streams start from scratch; pass
# BACKBONE_WEIGHTS=path/to/bn_inception.weights.h5 to start from a backbone file.
set -euo pipefail
videos=${1:?UCF-101 folder}; splits=${2:?split files folder}; work=${3:-work}
workers=${WORKERS:-$(nproc)}
weights=()
[ -n "${BACKBONE_WEIGHTS:-}" ] && weights=(--backbone-weights "$BACKBONE_WEIGHTS")

gated-tsn prepare "$videos" "$work/data" --flow tvl1 --workers "$workers"
gated-tsn split "$work/data" --splits "$splits" --split 1 --val-fraction 0.1

# Stage 1: the two streams (batches of 32 videos, 3 segments each).
gated-tsn train --stage rgb  --data "$work/data" --out "$work/rgb.keras" "${weights[@]}"
gated-tsn train --stage flow --data "$work/data" --out "$work/flow.keras" --init-from "$work/rgb.keras"
# Stage 2: the gate with lambda = 0; stage 3: jointly with lambda = 1 (batch 4 x 32 as the authors).
gated-tsn train --stage gate  --data "$work/data" --out "$work/gate.keras" \
    --rgb "$work/rgb.keras" --flow "$work/flow.keras" --batch-size 4 --accumulate 32
gated-tsn train --stage joint --data "$work/data" --out "$work/gated.keras" \
    --resume "$work/gate.keras" --lam 1.0 --batch-size 4 --accumulate 32

# 25 frames x 10 crops per video, then the fusion table of Table III's columns.
gated-tsn evaluate --data "$work/data" --list "$work/data/val.txt"  --model "$work/gated.keras" --out "$work/val.npz"
gated-tsn evaluate --data "$work/data" --list "$work/data/test.txt" --model "$work/gated.keras" --out "$work/test.npz"
gated-tsn fuse "$work/test.npz" --val-scores "$work/val.npz"
