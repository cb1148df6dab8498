"""``--inputs``: real samples in the formats users have, read without TensorFlow into {input name: array}.

- ``.npz`` (no pickle): one array per input, as today.
- ``.tfrecord`` / ``.tfrecord.gz`` (also ``.tfrecords``): serialized records, each one row of the model's single string
  input (tf.Examples, as TF Serving's warm-up files and TFX hold them).
- ``.json``, a TF Serving REST request body: predict's row format (``{"instances": [...]}``) or columnar format
  (``{"inputs": ...}``); or classify / regress (``{"examples": [{feature: value, ...}, ...]}``, optional ``"context"``),
  each example made a serialized tf.Example for the single string input. Bytes come as ``{"b64": "..."}``.
- a directory of image files: each file's bytes one row of the single string input.

Every format is checked against the signature the same way (``inputs.validate_samples``).
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import struct
from typing import Any

import numpy as np

MAX_IMAGE_FILES = 256
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz")


class SamplesError(ValueError):
    """A --inputs file that cannot be read; the message is one line."""


def read_samples(path: str, specs: list, feature_types: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """{input: array} from ``path`` for the signature ``specs``; ``feature_types`` ({feature key: dtype}, from the parse
    op) types a classify body's values (an int where the model reads floats is a float)."""
    if os.path.isdir(path):
        return {_single_string(specs, "a directory of images"): image_directory(path)}
    if not os.path.exists(path):
        raise SamplesError(f"--inputs file not found: {path}")
    lower = path.lower()
    if lower.endswith(TFRECORD_SUFFIXES):
        return {_single_string(specs, "a .tfrecord"): np.array(tfrecord_records(path), dtype=object)}
    if lower.endswith(".json"):
        return rest_body(path, specs, feature_types or {})
    return npz_arrays(path)


def _single_string(specs: list, what: str) -> str:
    strings = [s.name for s in specs if s.dtype == "string"]
    if len(specs) != 1 or len(strings) != 1:
        names = ", ".join(f"{s.name} {s.dtype}" for s in specs)
        raise SamplesError(f"--inputs {what} feeds a model with one string input; this signature takes {names}")
    return strings[0]


def npz_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # zipfile/numpy errors vary; the user needs one line
        raise SamplesError(f"--inputs {path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None


def tfrecord_records(path: str) -> list[bytes]:
    """The records of a TFRecord file (gzip when it ends in .gz): each a uint64 length, its masked CRC, the data and
    its masked CRC (the CRCs are not checked: a torn record still shows as a wrong length)."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    records = []
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SamplesError(f"--inputs {path} cannot be read ({exc})") from None
    offset = 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise SamplesError(f"--inputs {path} is not a TFRecord file (a record header is cut at byte {offset})")
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            raise SamplesError(f"--inputs {path} is not a TFRecord file (record {len(records) + 1} says {length} bytes, the file ends first)")
        records.append(data[offset + 12: offset + 12 + length])
        offset = end
    if not records:
        raise SamplesError(f"--inputs {path} holds no records")
    return records


def image_directory(path: str) -> np.ndarray:
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))[:MAX_IMAGE_FILES]
    if not names:
        raise SamplesError(f"--inputs {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    rows = []
    for name in names:
        with open(os.path.join(path, name), "rb") as f:
            rows.append(f.read())
    return np.array(rows, dtype=object)


def _value(value: Any) -> Any:
    """JSON to Python: {"b64": …} to bytes, strings to UTF-8 bytes, lists and objects element by element."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=False)
        except (ValueError, TypeError) as exc:
            raise SamplesError(f"a {{\"b64\": …}} value is not base64 ({exc})") from None
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, str):
        return value.encode()
    return value


def _array(name: str, rows: list, dtype: str) -> np.ndarray:
    if dtype == "string":
        return np.array(rows, dtype=object)
    try:
        return np.asarray(rows, dtype=np.dtype(dtype))
    except (TypeError, ValueError) as exc:
        raise SamplesError(f"--inputs '{name}': its values are not {dtype} ({exc})") from None


def rest_body(path: str, specs: list, feature_types: dict[str, str]) -> dict[str, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as exc:
        raise SamplesError(f"--inputs {path} is not a JSON request body ({exc})") from None
    if not isinstance(body, dict) or not {"instances", "inputs", "examples"} & set(body):
        raise SamplesError(f"--inputs {path}: a TF Serving request body has \"instances\", \"inputs\" or \"examples\"")
    dtypes = {s.name: s.dtype for s in specs}
    if "examples" in body:
        name = _single_string(specs, "a classify/regress body")
        context = body.get("context") or {}
        rows = [example_from_json({**context, **example}, feature_types) for example in body["examples"]]
        return {name: np.array(rows, dtype=object)}
    if "instances" in body:
        instances = [_value(i) for i in body["instances"]]
        if instances and all(isinstance(i, dict) for i in instances):
            return {k: _array(k, [i.get(k) for i in instances], dtypes.get(k, "float32")) for k in instances[0]}
        return {specs[0].name: _array(specs[0].name, instances, specs[0].dtype)} if len(specs) == 1 else _one_input_only(specs)
    inputs = _value(body["inputs"])
    if isinstance(inputs, dict):
        return {k: _array(k, v, dtypes.get(k, "float32")) for k, v in inputs.items()}
    return {specs[0].name: _array(specs[0].name, inputs, specs[0].dtype)} if len(specs) == 1 else _one_input_only(specs)


def _one_input_only(specs: list) -> dict:
    raise SamplesError(f"--inputs: rows without input names feed a model with one input; name each of {', '.join(s.name for s in specs)}")


def example_from_json(example: dict[str, Any], feature_types: dict[str, str]) -> bytes:
    """One classify/regress example as a serialized tf.Example: strings and b64 as bytes, numbers as floats or ints
    (as the model's parse op reads that key, else as JSON wrote them)."""
    from tfaudit.engine.payloads import example_bytes, feature_bytes

    features = {}
    for key, raw in example.items():
        values = _value(raw if isinstance(raw, list) else [raw])
        if all(isinstance(v, bytes) for v in values):
            dtype = "string"
        elif feature_types.get(key, "").startswith("float") or any(isinstance(v, float) for v in values):
            dtype, values = "float32", [float(v) for v in values]
        else:
            dtype = "int64"
        features[key] = feature_bytes(dtype, values)
    return example_bytes(features)
