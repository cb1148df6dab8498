"""Valid bytes for string inputs the graph parses or decodes (``tfaudit.engine.input_graph`` says which), without
TensorFlow: serialized tf.Example / tf.SequenceExample protos written in the protobuf wire format
(tensorflow/core/example/example.proto, feature.proto), encoded images (Pillow), web-safe base64.

Values, like every synthetic input's: floats standard normal, ints in [0, the feature's ``bound``, learned by the
probe) (else [0, 10)), strings from the model's vocabulary (else a placeholder), a sparse or ragged feature 1 to 3
values, a feature list 2 to 5 steps.
"""
from __future__ import annotations

import base64
import io
import struct
from typing import Any

import numpy as np

INT_HIGH = 10
STRING_PLACEHOLDER = b"tfaudit sample"
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP", "any": "PNG"}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def feature_bytes(dtype: str, values: list) -> bytes:
    """A tf.train.Feature: bytes_list (1), float_list (2, packed) or int64_list (3, packed)."""
    if dtype == "string":
        return _field(1, b"".join(_field(1, v) for v in values))
    if dtype.startswith("float"):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))


def features_bytes(features: dict[str, bytes]) -> bytes:
    """A tf.train.Features: map<string, Feature> feature = 1, each entry a message of key (1) and value (2)."""
    return b"".join(_field(1, _field(1, key.encode()) + _field(2, value)) for key, value in features.items())


def example_bytes(features: dict[str, bytes]) -> bytes:
    return _field(1, features_bytes(features))


def sequence_example_bytes(context: dict[str, bytes], feature_lists: dict[str, list[bytes]]) -> bytes:
    """A tf.train.SequenceExample: context (1) and feature_lists (2): map<string, FeatureList{repeated Feature = 1}> = 1."""
    lists = b"".join(_field(1, _field(1, key.encode()) + _field(2, b"".join(_field(1, f) for f in steps)))
                     for key, steps in feature_lists.items())
    return _field(1, features_bytes(context)) + _field(2, lists)


class PayloadMaker:
    """Bytes for one encoded input, from ``rng``: vocabulary words for strings, each int feature below its ``bound``,
    ``forced`` ({feature key: value}) when the probe sets one feature on purpose."""

    def __init__(self, rng: np.random.Generator, vocabulary: tuple[str, ...] = (), forced: dict[str, int] | None = None):
        self.rng, self.vocabulary, self.forced = rng, vocabulary, forced or {}

    def make(self, encoded: dict[str, Any]) -> bytes:
        kind = encoded["kind"]
        if kind == "example":
            return example_bytes({f["key"]: self.feature(f) for f in encoded["features"]})
        if kind == "sequence_example":
            steps = int(self.rng.integers(2, 6))
            return sequence_example_bytes({f["key"]: self.feature(f) for f in encoded["context"]},
                                          {f["key"]: [self.feature(f) for _ in range(steps)] for f in encoded["feature_lists"]})
        if kind == "image":
            return image_bytes(encoded, self.rng)
        if kind == "base64":
            return base64.urlsafe_b64encode(self.make(encoded["inner"]))
        raise ValueError(f"unknown encoding {kind!r}")

    def feature(self, feature: dict[str, Any]) -> bytes:
        if feature["kind"] == "dense":
            count = int(np.prod([3 if d < 0 else d for d in feature["shape"]], dtype=np.int64))
        else:
            count = int(self.rng.integers(1, 4))
        return feature_bytes(feature["dtype"], self.values(feature, count))

    def values(self, feature: dict[str, Any], count: int) -> list:
        key, dtype = feature["key"], feature["dtype"]
        if dtype == "string":
            words = self.vocabulary
            return [words[i].encode() for i in self.rng.integers(0, len(words), size=count)] if words else [STRING_PLACEHOLDER] * count
        if dtype.startswith("float"):
            return [float(v) for v in self.rng.standard_normal(count)]
        if key in self.forced:
            return [self.forced[key]] * count
        return [int(v) for v in self.rng.integers(0, max(1, feature.get("bound") or INT_HIGH), size=count)]


def image_bytes(encoded: dict[str, Any], rng: np.random.Generator) -> bytes:
    """A random image of the size and channels asked for, encoded in the format the graph decodes."""
    from PIL import Image

    channels = encoded["channels"]
    fmt = PIL_FORMATS[encoded["format"]]
    if fmt != "PNG" and channels not in (1, 3):
        channels = 3  # formats without alpha: the decoder adds what it needs
    pixels = rng.integers(0, 256, size=(encoded["height"], encoded["width"], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels])
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
