"""Serialized protos and encoded images written without TensorFlow parse and decode in TensorFlow as they should, and
--inputs reads every format users have into the same arrays."""
import base64
import gzip
import json
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfaudit.engine.inputs import InputError, InputFactory, InputSpec, load_samples
from tfaudit.engine.payloads import PayloadMaker, example_bytes, feature_bytes, image_bytes, sequence_example_bytes
from tfaudit.engine.samples import example_from_json

EXAMPLE = {"kind": "example", "features": [
    {"key": "age", "kind": "dense", "dtype": "float32", "shape": [4]},
    {"key": "city", "kind": "dense", "dtype": "string", "shape": []},
    {"key": "clicks", "kind": "sparse", "dtype": "int64", "shape": [], "bound": 20},
    {"key": "steps", "kind": "dense", "dtype": "int64", "shape": [-1]},
]}


def test_examples_parse_with_every_feature_in_range():
    maker = PayloadMaker(np.random.default_rng(0), vocabulary=("cairo", "lima"))
    parsed = tf.io.parse_example([maker.make(EXAMPLE) for _ in range(8)], {
        "age": tf.io.FixedLenFeature([4], tf.float32), "city": tf.io.FixedLenFeature([], tf.string),
        "clicks": tf.io.VarLenFeature(tf.int64), "steps": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    })
    assert parsed["age"].shape == (8, 4) and set(parsed["city"].numpy()) <= {b"cairo", b"lima"}
    clicks = parsed["clicks"].values.numpy()
    assert len(clicks) >= 8 and clicks.min() >= 0 and clicks.max() < 20
    assert parsed["steps"].shape == (8, 3)


def test_wire_format_matches_protobuf_for_negative_ints_and_floats():
    ours = example_bytes({"i": feature_bytes("int64", [-1, 0, 300]), "f": feature_bytes("float32", [1.5]), "s": feature_bytes("string", [b"\x00"])})
    theirs = tf.train.Example.FromString(ours)
    assert list(theirs.features.feature["i"].int64_list.value) == [-1, 0, 300]
    assert list(theirs.features.feature["f"].float_list.value) == [1.5]
    assert list(theirs.features.feature["s"].bytes_list.value) == [b"\x00"]


def test_sequence_examples_parse():
    made = sequence_example_bytes({"score": feature_bytes("float32", [0.5])}, {"tokens": [feature_bytes("int64", [i]) for i in range(3)]})
    context, lists, _ = tf.io.parse_sequence_example(
        [made], context_features={"score": tf.io.FixedLenFeature([], tf.float32)},
        sequence_features={"tokens": tf.io.FixedLenSequenceFeature([], tf.int64)})
    assert context["score"].numpy().tolist() == [0.5] and lists["tokens"].numpy().tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("fmt, decode", [("jpeg", tf.io.decode_jpeg), ("png", tf.io.decode_png), ("bmp", tf.io.decode_bmp),
                                          ("gif", tf.io.decode_gif), ("webp", tf.io.decode_image), ("any", tf.io.decode_image)])
def test_images_decode_at_the_size_and_channels_asked(fmt, decode):
    data = image_bytes({"kind": "image", "format": fmt, "channels": 3, "height": 12, "width": 20}, np.random.default_rng(0))
    image = decode(data)
    assert image.shape[-3:] == (12, 20, 3)


def test_base64_payloads_are_web_safe():
    spec = {"kind": "base64", "inner": {"kind": "image", "format": "png", "channels": 1, "height": 4, "width": 4}}
    made = PayloadMaker(np.random.default_rng(1)).make(spec)
    assert tf.io.decode_png(tf.io.decode_base64(made)).shape == (4, 4, 1)


def tfrecord(path, records, compress=False):
    data = b"".join(struct.pack("<Q", len(r)) + b"\0" * 4 + r + b"\0" * 4 for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def test_every_inputs_format_reads_the_same_examples(tmp_path):
    spec = [InputSpec("examples", (None,), "string")]
    examples = [{"age": [1.0, 2.0, 3.0, 4.0], "city": "lima", "clicks": [3, 4]}, {"age": [0, 0, 0, 1], "city": "cairo", "clicks": [1]}]
    types = {"age": "float32", "city": "string", "clicks": "int64"}
    serialized = [example_from_json(e, types) for e in examples]
    assert tf.train.Example.FromString(serialized[1]).features.feature["age"].float_list.value[3] == 1.0  # typed as the model reads it
    classify = tmp_path / "classify.json"
    classify.write_text(json.dumps({"examples": examples}))
    predict = tmp_path / "predict.json"
    predict.write_text(json.dumps({"instances": [{"b64": base64.b64encode(s).decode()} for s in serialized]}))
    columnar = tmp_path / "columnar.json"
    columnar.write_text(json.dumps({"inputs": {"examples": [{"b64": base64.b64encode(s).decode()} for s in serialized]}}))
    files = [str(classify), str(predict), str(columnar), tfrecord(tmp_path / "x.tfrecord", serialized),
             tfrecord(tmp_path / "x.tfrecord.gz", serialized, compress=True)]
    for path in files:
        rows = load_samples(path, spec, types)["examples"]
        assert rows.dtype == object and list(rows) == serialized, path
    assert InputFactory(spec, samples=load_samples(files[0], spec, types)).make(batch=5)["examples"].shape == (5,)


def test_predict_bodies_with_named_inputs_and_an_image_folder(tmp_path):
    specs = [InputSpec("x", (None, 2), "float32"), InputSpec("ids", (None,), "int64")]
    body = tmp_path / "rows.json"
    body.write_text(json.dumps({"instances": [{"x": [1, 2], "ids": 3}, {"x": [3, 4], "ids": 5}]}))
    rows = load_samples(str(body), specs)
    assert rows["x"].dtype == np.float32 and rows["x"].shape == (2, 2) and rows["ids"].tolist() == [3, 5]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(image_bytes({"kind": "image", "format": "png", "channels": 3, "height": 4, "width": 4},
                                                      np.random.default_rng(i)))
    (images / "notes.txt").write_text("not an image")
    assert load_samples(str(images), [InputSpec("image_bytes", (None,), "string")])["image_bytes"].shape == (3,)


@pytest.mark.parametrize("content, message", [
    ({"instances": [[1, 2]]}, "one input"),
    ({"rows": []}, '"instances", "inputs" or "examples"'),
    ({"examples": [{"a": 1}]}, "one string input"),
])
def test_unusable_request_bodies_are_one_line(tmp_path, content, message):
    body = tmp_path / "body.json"
    body.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        load_samples(str(body), [InputSpec("x", (None, 2), "float32"), InputSpec("y", (None,), "float32")])


def test_a_torn_tfrecord_is_one_line(tmp_path):
    path = tmp_path / "torn.tfrecord"
    path.write_bytes(struct.pack("<Q", 100) + b"\0" * 20)
    with pytest.raises(InputError, match="not a TFRecord file"):
        load_samples(str(path), [InputSpec("examples", (None,), "string")])
