"""Build the paper's networks in a few lines and look at what they compute.

    python examples/build_models.py [--input-size 224] [--classes 101]

Builds the RGB and flow TSN streams over BN-Inception, the gated TSN on top of
them (conv fusion of inception_4e, ReLU gate), runs one random clip through
the gated model and prints its outputs and parameter counts. Runs on a CPU in
well under a minute; no weights are downloaded.
"""

import argparse

import numpy as np

from keras_gated_tsn.models import TSN, GatedTSN


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--segments", type=int, default=3)
    args = parser.parse_args()
    size, k = args.input_size, args.segments

    rgb = TSN("bn_inception", "rgb", args.classes, k, size)
    flow = TSN("bn_inception", "flow", args.classes, k, size, new_length=5)
    flow.init_from(rgb)  # cross-modality: conv1 averaged over colour, replicated to 10 channels
    gated = GatedTSN(rgb, flow, fusion_layer="inception_4e_output", feature_fusion="conv")

    rng = np.random.default_rng(0)
    clips = {
        "rgb": rng.integers(0, 256, (1, k, size, size, 3), dtype=np.uint8),
        "flow": rng.integers(0, 256, (1, k, size, size, 10), dtype=np.uint8),
    }
    outputs = gated.predict(clips, verbose=0)
    print(f"input: rgb {clips['rgb'].shape}, flow {clips['flow'].shape} (uint8, raw pixels)")
    for name, value in outputs.items():
        print(f"  {name:18s} {value.shape}")
    w_rgb, w_flow = outputs["fusion_weights"][0]
    print(f"fusion weights of this clip: w_rgb={w_rgb:.3f}, w_flow={w_flow:.3f}")
    config = gated.get_config()
    print(f"the gated model says what it is: backbone {config['rgb_stream']['backbone']}, fusion layer "
          f"{config['fusion_layer']}, {config['feature_fusion']} fusion, {config['gate_activation']} gate")
    print(f"parameters: rgb stream {count(rgb.weights):,}, flow stream {count(flow.weights):,}, "
          f"gated model {count(gated.weights):,} of which trainable {count(gated.trainable_weights):,}")


if __name__ == "__main__":
    main()
