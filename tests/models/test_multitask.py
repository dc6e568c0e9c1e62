"""The two-stream ConvNets' multi-task stream (Simonyan & Zisserman 2014, Sec. 4):
one head per dataset, each head's loss on its own dataset's videos only,
trained with fit() on real flow from the sample clips, split here into two
"datasets" of two classes each."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import run_model_saving_test
from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.lists import VideoRecord, read_list_file
from keras_gated_tsn.data.multitask import (
    multitask_dataset,
    multitask_training_batches,
    multitask_validation_batches,
)
from keras_gated_tsn.models import TSN, MultiTaskTSN

SIZE, L = 67, 2
HEADS = {"ucf": 2, "hmdb": 2}


def _datasets(prepared_samples, seed=0):
    records = read_list_file(prepared_samples / "train.txt")
    ucf = [r for r in records if r.label < 2][:4]
    # "hmdb": class 2 as its class 0, and other class-1 videos as its class 1.
    hmdb = [VideoRecord(r.video, r.num_frames, 0) for r in records if r.label == 2][:2] + [
        VideoRecord(r.video, r.num_frames, 1) for r in records if r.label == 1 and r not in ucf][:2]
    options = dict(num_segments=1, new_length=L, input_size=SIZE, batch_size=2, seed=seed, repeat=True)
    frames = prepared_samples / "frames"
    return {"ucf": pipeline.make_dataset(ucf, frames, "flow", **options),
            "hmdb": pipeline.make_dataset(hmdb, frames, "flow", **options)}


def _model():
    keras.utils.set_random_seed(0)
    model = MultiTaskTSN("caffenet", "flow", heads=HEADS, input_size=SIZE, new_length=L, dropout=0.0,
                         class_names={"ucf": ["cartwheel", "SoccerJuggling"], "hmdb": ["wave", "juggling"]})
    # Plain SGD, no weight decay: a head without gradient must not move at all.
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def test_batches_mask_each_head_to_its_dataset(prepared_samples):
    ds = multitask_dataset(_datasets(prepared_samples), seed=3)
    seen = set()
    for x, labels, weights in ds.take(8):
        assert x.shape == (2, 1, SIZE, SIZE, 2 * L) and set(labels) == set(weights) == set(HEADS)
        (head,) = [h for h in HEADS if weights[h].numpy().sum() > 0]  # one dataset per batch
        seen.add(head)
        other = next(h for h in HEADS if h != head)
        assert weights[head].numpy().tolist() == [1.0, 1.0] and weights[other].numpy().tolist() == [0.0, 0.0]
        assert labels[other].numpy().tolist() == [0, 0] and labels[head].numpy().max() < HEADS[head]
    assert seen == set(HEADS)


def test_each_heads_loss_counts_only_its_datasets_videos(prepared_samples):
    model = _model()
    only_ucf = multitask_dataset(_datasets(prepared_samples), weights=[1.0, 0.0], seed=0)
    x, labels, weights = next(iter(only_ucf))
    outputs = model(x, training=False)
    assert set(outputs) == set(HEADS) and outputs["hmdb"].shape == (2, 2)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = float(ce(labels["ucf"], outputs["ucf"]))  # + 0 x the hmdb head's
    logs = model.test_on_batch(x, labels, weights, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    # fit() on ucf batches only: the ucf head and the trunk move, the hmdb head does not.
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.fit(only_ucf, steps_per_epoch=2, epochs=1, verbose=0)
    moved = {w.path for w in model.trainable_weights if not np.array_equal(w.numpy(), before[w.path])}
    assert any("fc-action_ucf" in p for p in moved) and any("conv1" in p for p in moved)
    assert not any("fc-action_hmdb" in p for p in moved), sorted(moved)
    # Both datasets: both heads learn.
    model.fit(multitask_dataset(_datasets(prepared_samples, seed=1), seed=1), steps_per_epoch=4, epochs=1,
              verbose=0)
    assert not np.array_equal(model.get_layer("fc-action_hmdb").kernel.numpy(),
                              before[model.get_layer("fc-action_hmdb").kernel.path])


def test_round_trip_and_bad_heads(prepared_samples, tmp_path):
    model = _model()
    x = next(iter(_datasets(prepared_samples)["ucf"]))[0]
    loaded = run_model_saving_test(model, x, tmp_path, atol=1e-5)
    assert loaded.heads == HEADS and loaded.class_names["hmdb"] == ["wave", "juggling"]
    with pytest.raises(ValueError, match="heads must be a non-empty mapping"):
        MultiTaskTSN("caffenet", heads={})
    with pytest.raises(ValueError, match="must be an identifier"):
        MultiTaskTSN("caffenet", heads={"ucf-101": 101})
    with pytest.raises(ValueError, match=r"class_names\['ucf'\] has 1 names for a head of 2 classes"):
        MultiTaskTSN("caffenet", heads=HEADS, input_size=SIZE, class_names={"ucf": ["a"]})
    with pytest.raises(ValueError, match="needs at least one dataset"):
        multitask_dataset({})


# --- the resumable training merge, the validation merge, one head as a stream ---

def _records(prepared_samples):
    records = read_list_file(prepared_samples / "train.txt")
    ucf = [r for r in records if r.label < 2][:4]
    hmdb = [VideoRecord(r.video, r.num_frames, 0) for r in records if r.label == 2][:2] + [
        VideoRecord(r.video, r.num_frames, 1) for r in records if r.label == 1 and r not in ucf][:2]
    return {"ucf": ucf, "hmdb": hmdb}


def _counting(batches_per_epoch, calls):
    """make_batches whose batch ``i`` of head ``h`` (from the start of epoch 0)
    is ``x`` filled with ``i``: the batches say where in their dataset they are."""
    def make(head):
        def batches(epoch, skip):
            calls.append((head, epoch, skip))
            first = epoch * batches_per_epoch[head] + skip
            return tf.data.Dataset.counter(first).map(
                lambda i: (tf.fill([2, 3], i), tf.fill([2], tf.cast(i % 2, tf.int32))))
        return batches
    return {head: make(head) for head in batches_per_epoch}


def _positions(ds, steps, heads):
    out = []
    for x, labels, weights in ds.take(steps):
        (head,) = [h for h in heads if weights[h].numpy().sum() > 0]
        out.append((head, int(x[0, 0])))
    return out


def test_training_batches_are_a_function_of_the_seed_and_step():
    bpe = {"a": 3, "b": 7}
    calls = []
    full = _positions(multitask_training_batches(_counting(bpe, calls), bpe, seed=5), 200, bpe)
    assert calls == [("a", 0, 0), ("b", 0, 0)]
    for head in bpe:  # each dataset's batches in its own order, none skipped or repeated
        assert [i for h, i in full if h == head] == list(range(sum(h == head for h, _ in full)))
    # Default weights proportional to the epochs' batches: about 3 / 10 of the steps draw "a".
    assert 0.2 < sum(h == "a" for h, _ in full) / len(full) < 0.4
    # Resumed at any step: the uninterrupted run's batches from there on, each dataset
    # restarted at (epoch, batch) = divmod(its batches so far, its batches per epoch).
    for start in (1, 10, 37, 150):
        calls.clear()
        resumed = _positions(multitask_training_batches(_counting(bpe, calls), bpe, seed=5, start_step=start),
                             200 - start, bpe)
        assert resumed == full[start:], start
        taken = {head: sum(h == head for h, _ in full[:start]) for head in bpe}
        assert calls == [(head, *divmod(taken[head], bpe[head])) for head in bpe]
    other = _positions(multitask_training_batches(_counting(bpe, []), bpe, seed=6), 200, bpe)
    assert [h for h, _ in other] != [h for h, _ in full]
    # Weights: a head of weight 0 is never drawn; as a mapping or in the heads' order.
    for weights in ([0.0, 1.0], {"b": 2, "a": 0}):
        assert {h for h, _ in _positions(multitask_training_batches(
            _counting(bpe, []), bpe, seed=5, weights=weights), 50, bpe)} == {"b"}
    # One dataset: every step is its.
    assert _positions(multitask_training_batches(_counting({"a": 3}, []), {"a": 3}, seed=0, start_step=4),
                      3, ["a"]) == [("a", 4), ("a", 5), ("a", 6)]


def test_training_batches_refuse_bad_arguments():
    bpe = {"a": 3, "b": 7}
    make = _counting(bpe, [])
    cases = [
        (dict(make_batches={}), "needs at least one dataset"),
        (dict(batches_per_epoch={"a": 3}), r"make_batches has the heads \['a', 'b'\] but batches_per_epoch \['a'\]"),
        (dict(batches_per_epoch={"a": 3, "b": 0}), r"batches_per_epoch\['b'\] must be an int >= 1, got 0"),
        (dict(batches_per_epoch={"a": 3, "b": 2.5}), r"batches_per_epoch\['b'\] must be an int >= 1"),
        (dict(start_step=-1), "start_step must be an int >= 0, got -1"),
        (dict(seed=None), "seed must be an int"),
        (dict(weights=[1.0]), r"weights has 1 values for 2 datasets \['a', 'b'\]"),
        (dict(weights=[1.0, -1.0]), "weights must be finite, >= 0 and not all 0"),
        (dict(weights=[0, 0]), "weights must be finite, >= 0 and not all 0"),
        (dict(weights=[float("nan"), 1]), "weights must be finite"),
        (dict(weights={"a": 1, "c": 1}), "weights name the heads"),
        (dict(make_batches={"a": make["a"], "b": lambda e, s: make["b"](e, s).take(5)}),
         "the 'b' dataset ends after 5 batches"),
        (dict(make_batches={"a": make["a"], "b": lambda e, s: make["b"](e, s).map(lambda x, y: (x[:, :2], y))}),
         "the datasets' inputs differ"),
    ]
    for change, message in cases:
        arguments = {"make_batches": make, "batches_per_epoch": bpe, "seed": 0, **change}
        with pytest.raises(ValueError, match=message):
            multitask_training_batches(arguments.pop("make_batches"), arguments.pop("batches_per_epoch"),
                                       **arguments)


def test_training_batches_of_real_pipelines_resume_exactly(prepared_samples):
    """make_dataset's seeded epochs under the merge: a run resumed at step g
    gets the very clips, labels and weights of the uninterrupted run."""
    records, frames = _records(prepared_samples), prepared_samples / "frames"
    options = dict(num_segments=1, new_length=L, input_size=SIZE, batch_size=2, seed=4, repeat=True)
    make = {head: (lambda e, s, head=head: pipeline.make_dataset(
        records[head], frames, "flow", start_epoch=e, skip_batches=s, **options)) for head in records}
    bpe = {head: 2 for head in records}  # 4 videos, batches of 2

    def batches(start, steps):
        return [(x.numpy(), {h: v.numpy() for h, v in labels.items()}, {h: v.numpy() for h, v in weights.items()})
                for x, labels, weights in multitask_training_batches(make, bpe, seed=9, start_step=start)
                .take(steps)]

    full = batches(0, 9)
    heads = [next(h for h in HEADS if w[h].sum() > 0) for _, _, w in full]
    assert set(heads) == set(HEADS)
    for start in (3, 6):
        for (x, labels, weights), (x0, labels0, weights0) in zip(batches(start, 9 - start), full[start:],
                                                                 strict=True):
            np.testing.assert_array_equal(x, x0)
            for h in HEADS:
                np.testing.assert_array_equal(labels[h], labels0[h])
                np.testing.assert_array_equal(weights[h], weights0[h])


def test_validation_batches_score_each_head_on_its_own_videos(prepared_samples):
    records, frames = _records(prepared_samples), prepared_samples / "frames"
    options = dict(num_segments=1, new_length=L, input_size=SIZE, batch_size=3, training=False)
    datasets = {head: pipeline.make_dataset(records[head], frames, "flow", **options) for head in records}
    val = multitask_validation_batches(datasets)
    batches = list(val)
    assert len(batches) == 4  # 4 videos each, batches of 3: 2 + 2, every video once
    order = [next(h for h in HEADS if w[h].numpy().sum() > 0) for _, _, w in batches]
    assert order == ["ucf", "ucf", "hmdb", "hmdb"]
    for head in HEADS:
        assert np.concatenate([l[head].numpy() for (_, l, w), h in zip(batches, order) if h == head]).tolist() \
            == [r.label for r in records[head]]
    model = _model()
    logs = model.evaluate(val, verbose=0, return_dict=True)
    for head in HEADS:  # each head's (weighted) accuracy over its own dataset's videos only
        scores = np.concatenate([model(x, training=False)[head].numpy() for x, _ in datasets[head]])
        expected = np.mean(scores.argmax(-1) == [r.label for r in records[head]])
        (key,) = [k for k in logs if k.startswith(head) and "acc" in k]
        assert logs[key] == pytest.approx(expected, abs=1e-6), (key, logs)
    with pytest.raises(ValueError, match="needs at least one dataset"):
        multitask_validation_batches({})
    with pytest.raises(ValueError, match="'ucf' validation dataset repeats forever"):
        multitask_validation_batches({"ucf": datasets["ucf"].repeat()})


def test_head_stream_is_a_plain_stream_of_that_head(prepared_samples, tmp_path):
    model = _model()
    # Move the trunk and the heads away from their initialisation so that a missed copy shows.
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()])
    x = next(iter(_datasets(prepared_samples)["ucf"]))[0]
    outputs = model(x, training=False)
    for head in HEADS:
        stream = model.head_stream(head)
        assert type(stream) is TSN and stream.num_classes == HEADS[head] and stream.modality == "flow"
        assert (stream.backbone, stream.input_size, stream.new_length, stream.num_segments, stream.dropout,
                stream.partial_bn, stream.precision) == ("caffenet", SIZE, L, 1, 0.0, True, "float32")
        assert stream.class_names == model.class_names[head]
        np.testing.assert_array_equal(stream.get_layer("fc-action").kernel.numpy(),
                                      model.get_layer(f"fc-action_{head}").kernel.numpy())
        np.testing.assert_allclose(stream(x, training=False).numpy(), outputs[head].numpy(), atol=1e-5)
    # Saved and loaded as any stream.
    path = tmp_path / "ucf.keras"
    model.head_stream("ucf").save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is TSN
    np.testing.assert_allclose(loaded(x, training=False).numpy(), outputs["ucf"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"has no head 'kinetics'; its heads are \['ucf', 'hmdb'\]"):
        model.head_stream("kinetics")
