"""The data path: video decoding, optical flow, extraction, list files, tf.data pipelines."""
