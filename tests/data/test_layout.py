"""The frame-folder layout: one place for the file names prepare writes and the pipelines read."""

import pytest

from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.layout import DEFAULT_LAYOUT, FrameLayout, parse_template


def test_default_names_and_kinds():
    assert DEFAULT_LAYOUT.rgb_name(7) == "img_00007.jpg"
    assert DEFAULT_LAYOUT.flow_names(12) == ("flow_x_00012.jpg", "flow_y_00012.jpg")
    assert [DEFAULT_LAYOUT.kind_of(n) for n in ("img_00001.jpg", "flow_x_00002.jpg", "flow_y_00002.jpg",
                                                "notes.txt", "img_x.jpg", ".img_00001.jpg")] == [
        "rgb", "flow_x", "flow_y", "", "", ""]
    # the pipelines read what prepare writes
    assert (pipeline.RGB_TEMPLATE, pipeline.FLOW_X_TEMPLATE, pipeline.FLOW_Y_TEMPLATE) == (
        DEFAULT_LAYOUT.rgb, DEFAULT_LAYOUT.flow_x, DEFAULT_LAYOUT.flow_y)


def test_other_tools_layouts():
    mmaction = FrameLayout("img_{:05d}.jpg", "x_{:05d}.jpg", "y_{:05d}.jpg")
    assert mmaction.kind_of("x_00003.jpg") == "flow_x" and mmaction.kind_of("img_00003.jpg") == "rgb"
    six_digits = FrameLayout("{:06d}.jpg")
    assert six_digits.rgb_name(1) == "000001.jpg" and six_digits.kind_of("000001.jpg") == "rgb"
    assert parse_template("frame{}.png") == ("frame", ".png", -1, " ")


def test_bad_template():
    with pytest.raises(ValueError, match="exactly one integer field"):
        FrameLayout("img_{:05d}_{:02d}.jpg")
