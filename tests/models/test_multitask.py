"""The two-stream ConvNets' multi-task stream (Simonyan & Zisserman 2014, Sec. 4):
one head per dataset, each head's loss on its own dataset's videos only,
trained with fit() on real flow from the sample clips, split here into two
"datasets" of two classes each."""

import keras
import numpy as np
import pytest

from helpers import run_model_saving_test
from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.lists import VideoRecord, read_list_file
from keras_gated_tsn.data.multitask import multitask_dataset
from keras_gated_tsn.models import MultiTaskTSN

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
