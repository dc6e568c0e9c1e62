"""A PyTorch twin of a Keras functional stream, built by walking its graph.

Used by ``benchmarks/train_step.py`` to time the same network in PyTorch: the
twin has one torch module per Keras layer with weights, the same shapes, the
same operations in the same order, and each layer's ``trainable`` flag (so
TSN's partial BN freezes the same BN layers, which then run with their global
statistics). Weights are not copied unless asked (:func:`copy_weights`, used by
:func:`check_twin` to prove the twin computes what the Keras model computes).

Layers are written as a PyTorch user would write them, where that is exact:

* ``ZeroPadding2D`` + ``"valid"`` ``Conv2D`` → ``Conv2d(padding=p)`` (symmetric pad);
* ``ZeroPadding2D(1)`` + ``AveragePooling2D(3, 1)`` → ``AvgPool2d(3, 1, 1,
  count_include_pad=True)`` (Caffe's AVE pooling divides by 9 everywhere);
* ``ZeroPadding2D(((0, 1), (0, 1)))`` + ``MaxPooling2D(3, 2)`` on a ReLU output
  → ``MaxPool2d(3, 2, ceil_mode=True)`` (Caffe's round-up pooling; equal
  because the input is non-negative), when the output shapes agree;
* ``MaxPooling2D(padding="same")`` → ``MaxPool2d`` with symmetric padding or
  ``ceil_mode`` when TF's padding is (0, 1), else an explicit -inf pad.

Anything else falls back to an explicit ``F.pad``; an unknown layer raises
``NotImplementedError`` naming it. Tensors are NCHW from the segment fold on
(the input is the Keras clip ``(B, K, H, W, C)``, uint8 or float, folded and
permuted in the twin, so the twin does the same preprocessing work).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _is_relu(layer) -> bool:
    name = type(layer).__name__
    if name == "ReLU":
        return not layer.max_value and not layer.negative_slope and not layer.threshold
    if name == "Activation":
        return getattr(layer.activation, "__name__", "") == "relu"
    if name in ("Conv2D", "Dense"):
        return getattr(layer.activation, "__name__", "") == "relu"
    return False


def _activation(layer):
    name = getattr(layer.activation, "__name__", "linear")
    if name == "linear":
        return None
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise NotImplementedError(f"activation {name!r} of layer {layer.name!r}")


class _Lambda(nn.Module):
    def __init__(self, fn, label: str):
        super().__init__()
        self.fn, self.label = fn, label

    def forward(self, *xs):
        return self.fn(*xs)

    def extra_repr(self):
        return self.label


class _Preprocess(nn.Module):
    """ModalityPreprocessing: raw pixels → float; RGB flipped to BGR minus the mean, flow minus 128."""

    def __init__(self, modality: str, bgr_mean):
        super().__init__()
        self.modality = modality
        self.register_buffer("mean", torch.tensor(bgr_mean, dtype=torch.float32), persistent=False)

    def forward(self, x):
        x = x.float()
        if self.modality == "rgb":
            return x.flip(-1) - self.mean
        return x - 128.0


class _Fold(nn.Module):
    """SegmentFold, then channels first: (B, K, H, W, C) → (B·K, C, H, W) in ``memory_format``."""

    def __init__(self):
        super().__init__()
        self.memory_format = torch.contiguous_format

    def forward(self, x):
        x = x.reshape((-1,) + tuple(x.shape[2:]))
        if x.dim() == 4:
            x = x.permute(0, 3, 1, 2)
        return x.contiguous(memory_format=self.memory_format)


class _Consensus(nn.Module):
    def forward(self, scores, clip):
        return scores.reshape((clip.shape[0], -1) + tuple(scores.shape[1:])).mean(1)


class _FrozenBN(nn.BatchNorm2d):
    """A BN layer whose Keras twin is not trainable: always global statistics."""

    def train(self, mode: bool = True):
        return super().train(False)


class TorchTwin(nn.Module):
    """The torch network of a Keras functional model (see the module docstring).

    Args:
        keras_model: a functional Keras model with one input and one output
            (a TSN stream); its layers' ``trainable`` flags are copied.
        fuse_padding: write padding into the following conv/pool as PyTorch
            code would (default); False keeps every ``ZeroPadding2D`` as an
            explicit ``F.pad``.

    Raises:
        NotImplementedError: naming a layer the translator does not know.
    """

    def __init__(self, keras_model, fuse_padding: bool = True):
        super().__init__()
        if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
            raise NotImplementedError("the twin handles models with one input and one output")
        self.layers_ = nn.ModuleDict()
        self.program: List[tuple] = []
        self._input_id = id(keras_model.inputs[0])
        self._output_id = id(keras_model.outputs[0])
        self.keras_layers: Dict[str, object] = {}

        nodes = []
        for depth in sorted(keras_model._nodes_by_depth, reverse=True):
            nodes.extend(n for n in keras_model._nodes_by_depth[depth] if n.operation and not n.is_input)
        producer = {id(t): n.operation for n in nodes for t in n.output_tensors}
        consumers: Dict[int, list] = {}
        for n in nodes:
            for t in n.input_tensors:
                consumers.setdefault(id(t), []).append(n)
        # A ZeroPadding2D whose only consumer can take its padding (conv, pool) disappears.
        absorbed = {}  # id(consumer node) -> (torch module, id of the padding's input)
        skipped = set()  # id(padding node)
        for n in nodes if fuse_padding else ():
            if type(n.operation).__name__ != "ZeroPadding2D":
                continue
            users = consumers.get(id(n.output_tensors[0]), [])
            if len(users) != 1:
                continue
            module = self._absorb_padding(n, users[0], producer)
            if module is not None:
                absorbed[id(users[0])] = (module, id(n.input_tensors[0]))
                skipped.add(id(n))

        for n in nodes:
            if id(n) in skipped:
                continue
            layer = n.operation
            ins = [id(t) for t in n.input_tensors]
            outs = [id(t) for t in n.output_tensors]
            if id(n) in absorbed:
                module, ins[0] = absorbed[id(n)]
            else:
                module = self._translate(layer, n)
            name = layer.name.replace(".", "_")
            self.layers_[name] = module
            self.keras_layers[name] = layer
            self.program.append((name, ins, outs))

    # -------------------------------------------------------------- translation
    def _absorb_padding(self, pad_node, consumer, producer):
        """A torch module for ``consumer`` with ``pad_node``'s padding folded in, or None."""
        (top, bottom), (left, right) = pad_node.operation.padding
        layer = consumer.operation
        kind = type(layer).__name__
        in_shape = consumer.input_tensors[0].shape  # padded input
        out_shape = consumer.output_tensors[0].shape
        module = None
        symmetric = top == bottom == left == right
        if kind == "Conv2D" and layer.padding == "valid" and symmetric:
            module = self._conv(layer, padding=top)
        elif kind == "AveragePooling2D" and layer.padding == "valid" and symmetric:
            k, s = _pair(layer.pool_size), _pair(layer.strides)
            if top <= k[0] // 2:
                module = nn.AvgPool2d(k, s, padding=top, count_include_pad=True)
        elif kind == "MaxPooling2D" and layer.padding == "valid":
            k, s = _pair(layer.pool_size), _pair(layer.strides)
            source = producer.get(id(pad_node.input_tensors[0]))
            if symmetric and top <= k[0] // 2 and source is not None and _is_relu(source):
                module = nn.MaxPool2d(k, s, padding=top)
            elif (top, left) == (0, 0) and (bottom, right) == (1, 1) and source is not None and _is_relu(source):
                h, w = in_shape[1] - 1, in_shape[2] - 1
                if (_ceil_size(h, k[0], s[0]), _ceil_size(w, k[1], s[1])) == tuple(out_shape[1:3]):
                    module = nn.MaxPool2d(k, s, ceil_mode=True)
        return module

    def _conv(self, layer, padding):
        kh, kw, cin_per_group, cout = layer.kernel.shape
        conv = nn.Conv2d(
            cin_per_group * layer.groups, cout, (kh, kw), stride=_pair(layer.strides), padding=padding,
            dilation=_pair(layer.dilation_rate), groups=layer.groups, bias=layer.use_bias,
        )
        act = _activation(layer)
        return conv if act is None else nn.Sequential(conv, act)

    def _translate(self, layer, node):
        kind = type(layer).__name__
        if kind == "ModalityPreprocessing":
            return _Preprocess(layer.modality, layer.bgr_mean)
        if kind == "SegmentFold":
            return _Fold()
        if kind == "SegmentConsensus":
            return _Consensus()
        if kind == "Conv2D":
            if layer.padding == "valid":
                return self._conv(layer, 0)
            k = _pair(layer.kernel_size)
            if all(_pair(layer.strides)[i] == 1 and k[i] % 2 == 1 for i in range(2)):
                return self._conv(layer, (k[0] // 2, k[1] // 2))
            raise NotImplementedError(f"Conv2D {layer.name!r} with 'same' padding and stride > 1")
        if kind in ("BatchNormalization", "FusedBatchNormalization", "FrozenBatchNormalization"):
            trains_statistics = kind != "FrozenBatchNormalization" and layer.trainable
            cls = nn.BatchNorm2d if trains_statistics else _FrozenBN
            if len(node.input_tensors[0].shape) != 4:
                raise NotImplementedError(f"BN {layer.name!r} on a non-4-D tensor")
            return cls(layer.gamma.shape[0], eps=layer.epsilon, momentum=1.0 - layer.momentum,
                       affine=layer.scale and layer.center)
        if kind in ("ReLU", "Activation"):
            if not _is_relu(layer):
                raise NotImplementedError(f"activation layer {layer.name!r}")
            return nn.ReLU(inplace=True)
        if kind == "ZeroPadding2D":
            (t, b), (l, r) = layer.padding
            return _Lambda(lambda x: F.pad(x, (l, r, t, b)), f"pad={(t, b, l, r)}")
        if kind == "MaxPooling2D":
            return self._max_pool(layer, node)
        if kind == "AveragePooling2D":
            if layer.padding != "valid":
                raise NotImplementedError(f"AveragePooling2D {layer.name!r} with 'same' padding")
            return nn.AvgPool2d(_pair(layer.pool_size), _pair(layer.strides))
        if kind == "Concatenate":
            axis = layer.axis % len(node.output_tensors[0].shape)
            dim = {3: 1, 1: 2, 2: 3}[axis] if len(node.output_tensors[0].shape) == 4 else axis
            return _Lambda(lambda *xs: torch.cat(xs, dim), f"dim={dim}")
        if kind == "GlobalAveragePooling2D":
            return _Lambda(lambda x: x.mean((2, 3)), "global average")
        if kind == "Flatten":
            return _Lambda(lambda x: x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1), "HWC order")
        if kind == "Dropout":
            return nn.Dropout(layer.rate)
        if kind == "Dense":
            linear = nn.Linear(layer.kernel.shape[0], layer.units, bias=layer.use_bias)
            act = _activation(layer)
            return linear if act is None else nn.Sequential(linear, act)
        if kind == "LocalResponseNormalization":
            return nn.LocalResponseNorm(layer.local_size, layer.alpha, layer.beta, layer.k)
        if kind == "Identity":
            return nn.Identity()
        raise NotImplementedError(f"no PyTorch translation for layer {layer.name!r} ({kind})")

    def _max_pool(self, layer, node):
        k, s = _pair(layer.pool_size), _pair(layer.strides)
        if layer.padding == "valid":
            return nn.MaxPool2d(k, s)
        h, w = node.input_tensors[0].shape[1:3]
        pads = []
        for size, kk, ss in ((h, k[0], s[0]), (w, k[1], s[1])):
            out = math.ceil(size / ss)
            total = max((out - 1) * ss + kk - size, 0)
            pads.append((total // 2, total - total // 2))
        if all(a == b for a, b in pads) and pads[0][0] <= k[0] // 2 and pads[1][0] <= k[1] // 2:
            return nn.MaxPool2d(k, s, padding=(pads[0][0], pads[1][0]))
        if pads == [(0, 1), (0, 1)] and (_ceil_size(h, k[0], s[0]), _ceil_size(w, k[1], s[1])) == tuple(
            node.output_tensors[0].shape[1:3]
        ):
            return nn.MaxPool2d(k, s, ceil_mode=True)
        (t, b), (l, r) = pads
        pool = nn.MaxPool2d(k, s)
        return _Lambda(lambda x: pool(F.pad(x, (l, r, t, b), value=-math.inf)), f"-inf pad={(t, b, l, r)}")

    # ------------------------------------------------------------------ running
    def set_memory_format(self, memory_format) -> "TorchTwin":
        """``torch.channels_last`` or ``torch.contiguous_format`` for the folded input and the weights."""
        for module in self.modules():
            if isinstance(module, _Fold):
                module.memory_format = memory_format
        return self.to(memory_format=memory_format)

    def forward(self, clip):
        values = {self._input_id: clip}
        for name, ins, outs in self.program:
            y = self.layers_[name](*[values[i] for i in ins])
            values[outs[0]] = y
        return values[self._output_id]

    def freeze_like_keras(self) -> "TorchTwin":
        """``requires_grad`` of every parameter from its Keras layer's ``trainable``."""
        for name, module in self.layers_.items():
            for p in module.parameters():
                p.requires_grad_(bool(self.keras_layers[name].trainable))
        return self

    def param_groups(self, lr: float, weight_decay: float, bias_lr_multiplier: float):
        """Caffe's solver as SGD groups: kernels decayed, biases at ``bias_lr_multiplier``·lr, BN neither."""
        kernels, biases, other = [], [], []
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                kernels.append(module.weight)
                if module.bias is not None:
                    biases.append(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                other.extend(p for p in (module.weight, module.bias) if p is not None)
        keep = lambda ps: [p for p in ps if p.requires_grad]  # noqa: E731
        return [
            {"params": keep(kernels), "lr": lr, "weight_decay": weight_decay},
            {"params": keep(biases), "lr": lr * bias_lr_multiplier, "weight_decay": 0.0},
            {"params": keep(other), "lr": lr, "weight_decay": 0.0},
        ]


def _ceil_size(size: int, kernel: int, stride: int) -> int:
    """PyTorch's ``ceil_mode`` output size (no padding)."""
    out = math.ceil((size - kernel) / stride) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return out


def count_keras(model) -> tuple:
    """(all weights, trainable weights) of a Keras model, in scalars."""
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return total, trainable


def count_torch(twin: nn.Module) -> tuple:
    """(parameters + BN running statistics, trainable parameters) of the twin."""
    params = sum(p.numel() for p in twin.parameters())
    stats = sum(b.numel() for n, b in twin.named_buffers() if n.endswith(("running_mean", "running_var")))
    return params + stats, sum(p.numel() for p in twin.parameters() if p.requires_grad)


@torch.no_grad()
def copy_weights(keras_model, twin: TorchTwin) -> None:
    """Keras weights into the twin: kernels HWIO → OIHW, dense (in, out) → (out, in), BN as is."""
    for name, module in twin.layers_.items():
        layer = twin.keras_layers[name]
        target = module[0] if isinstance(module, nn.Sequential) else module
        values = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(target, nn.Conv2d):
            target.weight.copy_(torch.from_numpy(values[0].transpose(3, 2, 0, 1).copy()))
            if target.bias is not None:
                target.bias.copy_(torch.from_numpy(values[1]))
        elif isinstance(target, nn.Linear):
            target.weight.copy_(torch.from_numpy(values[0].T.copy()))
            if target.bias is not None:
                target.bias.copy_(torch.from_numpy(values[1]))
        elif isinstance(target, nn.BatchNorm2d):
            gamma, beta, mean, var = values
            target.weight.copy_(torch.from_numpy(gamma))
            target.bias.copy_(torch.from_numpy(beta))
            target.running_mean.copy_(torch.from_numpy(mean))
            target.running_var.copy_(torch.from_numpy(var))


def check_twin(keras_model, twin: TorchTwin, clip: Optional[np.ndarray] = None, rtol: float = 1e-4) -> float:
    """Asserts the twin is the Keras network: same weight counts (all and
    trainable) and, with ``clip`` given, the same inference output after
    :func:`copy_weights` (max abs difference over the output range below
    ``rtol``). Returns that relative difference (0.0 without ``clip``)."""
    k_total, k_trainable = count_keras(keras_model)
    t_total, t_trainable = count_torch(twin)
    assert (k_total, k_trainable) == (t_total, t_trainable), (
        f"weight counts differ: keras {k_total:,} ({k_trainable:,} trainable), "
        f"torch {t_total:,} ({t_trainable:,} trainable)"
    )
    if clip is None:
        return 0.0
    copy_weights(keras_model, twin)
    expected = np.asarray(keras_model(clip, training=False))
    twin.eval()
    with torch.no_grad():
        got = twin(torch.from_numpy(clip)).numpy()
    twin.train()
    scale = max(float(np.abs(expected).max()), 1e-12)
    diff = float(np.abs(got - expected).max()) / scale
    assert diff < rtol, f"the twin's output differs from the Keras model's: max relative difference {diff:.3g}"
    return diff
