"""A small NumPy re-implementation of Caffe's forward pass, for tests only.

It reads a deploy prototxt (protobuf text format) and runs Convolution, BN
(TSN's scale/shift BN), ReLU, Pooling (Caffe's exact round-up output size,
window clipping and AVE divisor), Concat and Dropout, channels last. It is
written from Caffe's documented semantics, independently of the Keras
builder, so comparing the two checks the builder against the authors'
network description.
"""

from __future__ import annotations

import math
import re

import numpy as np

_TOKEN = re.compile(r'"[^"]*"|[{}:]|[^\s{}:"]+')


def parse_prototxt(text: str) -> dict:
    """Parses protobuf text format into nested dicts of lists."""
    text = re.sub(r"#[^\n]*", "", text)
    tokens = _TOKEN.findall(text)
    position = 0

    def parse_block():
        nonlocal position
        block: dict = {}
        while position < len(tokens) and tokens[position] != "}":
            key = tokens[position]
            position += 1
            if tokens[position] == ":":
                position += 1
                value = tokens[position]
                position += 1
                if value.startswith('"'):
                    value = value[1:-1]
                elif re.fullmatch(r"-?\d+", value):
                    value = int(value)
                elif re.fullmatch(r"-?[\d.eE+-]+", value):
                    value = float(value)
                block.setdefault(key, []).append(value)
            else:
                assert tokens[position] == "{", tokens[position]
                position += 1
                child = parse_block()
                assert tokens[position] == "}"
                position += 1
                block.setdefault(key, []).append(child)
        return block

    return parse_block()


def _one(block: dict, key: str, default=None):
    return block.get(key, [default])[0]


def _conv(x, kernel, bias, stride, pad):
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))
    windows = windows[::stride, ::stride]  # (oh, ow, cin, kh, kw)
    return np.einsum("hwcij,ijco->hwo", windows, kernel, optimize=True) + bias


def _pool(x, mode, kernel, stride, pad):
    height, width, _ = x.shape

    def out_size(size):
        out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
        if pad > 0 and (out - 1) * stride >= size + pad:
            out -= 1
        return out

    oh, ow = out_size(height), out_size(width)
    y = np.zeros((oh, ow, x.shape[2]), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * stride - pad, j * stride - pad
            h1, w1 = min(h0 + kernel, height + pad), min(w0 + kernel, width + pad)
            pool_size = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, height), min(w1, width)
            window = x[h0c:h1c, w0c:w1c]
            if mode == "MAX":
                y[i, j] = window.max(axis=(0, 1))
            else:
                y[i, j] = window.sum(axis=(0, 1)) / pool_size
    return y


def caffe_forward(prototxt: str, image: np.ndarray, params: dict, stop_at: str) -> dict:
    """Runs a deploy net on one image ``(H, W, C)`` up to layer ``stop_at``.

    ``params[caffe_layer_name]`` holds ``(kernel_hwio, bias)`` for convolutions
    and ``(scale, shift, mean, variance)`` for BN. Returns all blobs by name.
    """
    net = parse_prototxt(prototxt)
    blobs = {"data": image.astype(np.float64)}
    for layer in net["layer"]:
        name, kind = _one(layer, "name"), _one(layer, "type")
        bottoms, top = layer.get("bottom", []), _one(layer, "top")
        x = blobs[bottoms[0]] if bottoms else None
        if kind == "Convolution":
            p = layer["convolution_param"][0]
            kernel, bias = params[name]
            blobs[top] = _conv(x, kernel, bias, _one(p, "stride", 1), _one(p, "pad", 0))
        elif kind == "BN":
            scale, shift, mean, variance = params[name]
            blobs[top] = scale * (x - mean) / np.sqrt(variance + 1e-5) + shift
        elif kind == "ReLU":
            blobs[top] = np.maximum(x, 0)
        elif kind == "Pooling":
            p = layer["pooling_param"][0]
            blobs[top] = _pool(
                x, _one(p, "pool"), _one(p, "kernel_size"), _one(p, "stride", 1), _one(p, "pad", 0)
            )
        elif kind == "Concat":
            blobs[top] = np.concatenate([blobs[b] for b in bottoms], axis=-1)
        elif kind == "Dropout":
            blobs[top] = x
        else:
            raise NotImplementedError(kind)
        if name == stop_at:
            break
    return blobs
