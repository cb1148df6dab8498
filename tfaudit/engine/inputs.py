"""Input synthesis from a signature's specs, and real samples from ``--inputs FILE.npz``.

NumPy only: specs come from the model inventory as plain dicts
(``{"name", "shape": [int | None], "dtype"}``), so this runs anywhere.

Synthetic data, by dtype (seeded, reproducible):
- floats: standard normal;
- signed/unsigned ints: uniform in [0, bound) where the model's own lookups
  bound the ids (``InputConstraints.id_bounds``, learned by
  ``tfaudit.engine.input_probe``), else in [0, 10);
- masks (``InputConstraints.masks``): 1 for each row's tokens, then 0 for its
  padding, each row a random length between half and all of the sequence;
- bool: fair coin;
- string: what the graph parses or decodes (``InputConstraints.encoded``): serialized tf.Example /
  tf.SequenceExample protos of its features, images in its format, base64 (tfaudit.engine.payloads);
  else words of the model's own vocabulary (``InputConstraints.vocabulary``, read from
  its assets), one word per element, or a sentence of 4 to 16 words when the graph tokenises
  (``InputConstraints.sentences``); without a vocabulary, the placeholder ``b"tfaudit sample"``.
``None`` dims: the first dim is the batch (default 1); any other is a
sequence length (default 16), the same in every input of one request and never
above ``InputConstraints.max_sequence_length``. Checks pick their own probe
values from ``DEFAULT_BATCH_SIZES`` and ``InputFactory.sequence_lengths``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfaudit.api import DEFAULT_BATCH_SIZES, DEFAULT_SEQUENCE_LENGTH, InputError  # noqa: F401 - part of the check API
from tfaudit.engine.payloads import INT_HIGH, STRING_PLACEHOLDER

DEFAULT_SEQUENCE_LENGTHS = (8, 16, 32, 64, 128)
DEFAULT_BATCH = 1


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...] | None  # None: unknown rank
    dtype: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        shape = data["shape"]
        return cls(name=data["name"], shape=None if shape is None else tuple(shape), dtype=data["dtype"])

    @property
    def batch_dynamic(self) -> bool:
        return bool(self.shape) and self.shape[0] is None

    @property
    def sequence_dims(self) -> tuple[int, ...]:
        """Positions of dynamic dims other than the batch."""
        return tuple(i for i, d in enumerate(self.shape or ()) if d is None and i > 0)


@dataclass(frozen=True)
class InputConstraints:
    """What the model accepts beyond its signature, learned once per audit.

    ``id_bounds``: integer inputs used as indices, with the exclusive upper bound of the
    smallest table they index; ``masks``: 0/1 inputs; ``max_sequence_length``: the longest
    sequence the model runs (position tables), None when unbounded or not probed;
    ``batch_fixed``: the model runs only the default batch (inputs whose rows depend on each
    other), so requests are never resized; ``encoded``: string inputs whose bytes the graph parses (tf.Example,
    tf.SequenceExample) or decodes (images, base64), with what it reads (tfaudit.engine.input_graph).
    """

    id_bounds: dict[str, int] = field(default_factory=dict)
    masks: tuple[str, ...] = ()
    max_sequence_length: int | None = None
    batch_fixed: bool = False
    vocabulary: tuple[str, ...] = ()
    sentences: bool = False
    encoded: dict[str, dict] = field(default_factory=dict)  # string inputs the graph parses or decodes (tfaudit.engine.payloads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_bounds": dict(self.id_bounds),
            "masks": list(self.masks),
            "max_sequence_length": self.max_sequence_length,
            "batch_fixed": self.batch_fixed,
            "vocabulary": list(self.vocabulary),
            "sentences": self.sentences,
            "encoded": dict(self.encoded),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "InputConstraints":
        data = data or {}
        return cls(
            id_bounds={k: int(v) for k, v in (data.get("id_bounds") or {}).items()},
            masks=tuple(data.get("masks") or ()),
            max_sequence_length=data.get("max_sequence_length"),
            batch_fixed=bool(data.get("batch_fixed")),
            vocabulary=tuple(data.get("vocabulary") or ()),
            sentences=bool(data.get("sentences")),
            encoded=dict(data.get("encoded") or {}),
        )


def numpy_dtype(dtype: str) -> np.dtype:
    if dtype == "string":
        return np.dtype(object)
    try:
        return np.dtype(dtype)
    except TypeError:
        raise InputError(f"cannot synthesise dtype {dtype}; pass --inputs FILE.npz") from None


class InputFactory:
    """Makes input dicts for one signature, synthetic or from real samples."""

    def __init__(
        self,
        specs: list[InputSpec],
        samples: dict[str, np.ndarray] | None = None,
        seed: int = 0,
        constraints: InputConstraints | None = None,
    ) -> None:
        self.specs = list(specs)
        self.samples = samples
        self.seed = seed
        self.constraints = constraints or InputConstraints()

    @property
    def synthetic(self) -> bool:
        return self.samples is None

    @property
    def batch_dynamic(self) -> bool:
        """Every batched (rank >= 1) input takes any batch size; scalars are not batched."""
        if self.constraints.batch_fixed:
            return False
        batched = [spec for spec in self.specs if spec.shape]
        return bool(batched) and all(spec.batch_dynamic for spec in batched)

    @property
    def has_sequence_dims(self) -> bool:
        return any(spec.sequence_dims for spec in self.specs)

    @property
    def sequence_lengths(self) -> tuple[int, ...]:
        """DEFAULT_SEQUENCE_LENGTHS that the model accepts."""
        longest = self.constraints.max_sequence_length
        if longest is None:
            return DEFAULT_SEQUENCE_LENGTHS
        return tuple(n for n in DEFAULT_SEQUENCE_LENGTHS if n <= longest) or (longest,)

    @property
    def string_inputs(self) -> list[str]:
        return [spec.name for spec in self.specs if spec.dtype == "string"]

    @property
    def placeholder_string_inputs(self) -> list[str]:
        """String inputs synthesised as a placeholder: no vocabulary to draw from, no encoding the graph reads, no samples."""
        if not self.synthetic or self.constraints.vocabulary:
            return []
        return [name for name in self.string_inputs if name not in self.constraints.encoded]

    def make(self, batch: int | None = None, seq: int | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """One input dict. ``batch``/``seq`` fill dynamic dims; fixed dims are kept.

        ``seq`` above the model's ``max_sequence_length`` is cut to it; ``batch`` is ignored when
        the batch is fixed.
        """
        rng = np.random.default_rng(self.seed if seed is None else seed)
        longest = self.constraints.max_sequence_length
        if longest is not None:
            seq = min(seq or DEFAULT_SEQUENCE_LENGTH, longest)
        if self.constraints.batch_fixed:
            batch = None
        return {spec.name: self._make_one(spec, batch, seq, rng) for spec in self.specs}

    def _shape(self, spec: InputSpec, batch: int | None, seq: int | None) -> tuple[int, ...]:
        if spec.shape is None:
            raise InputError(f"input '{spec.name}' has unknown rank; pass --inputs FILE.npz")
        shape = []
        for i, dim in enumerate(spec.shape):
            if dim is not None:
                shape.append(dim)
            elif i == 0:
                shape.append(batch or DEFAULT_BATCH)
            else:
                shape.append(seq or DEFAULT_SEQUENCE_LENGTH)
        return tuple(shape)

    def _make_one(self, spec: InputSpec, batch: int | None, seq: int | None, rng: np.random.Generator) -> np.ndarray:
        if self.samples is not None:
            return self._from_samples(spec, batch)
        shape = self._shape(spec, batch, seq)
        if spec.dtype == "string":
            encoded = self.constraints.encoded.get(spec.name)
            return self.payloads(encoded, shape, rng) if encoded else self._strings(shape, rng)
        try:
            dtype = numpy_dtype(spec.dtype)
        except InputError as exc:
            raise InputError(f"input '{spec.name}': {exc}") from None
        if spec.name in self.constraints.masks:
            return padding_mask(shape, rng).astype(dtype)
        if dtype == np.bool_:
            return rng.integers(0, 2, size=shape).astype(bool)
        if np.issubdtype(dtype, np.integer):
            high = self.constraints.id_bounds.get(spec.name, INT_HIGH)
            return rng.integers(0, max(1, high), size=shape).astype(dtype)
        if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
            return rng.standard_normal(size=shape).astype(dtype)
        raise InputError(f"input '{spec.name}': cannot synthesise dtype {spec.dtype}; pass --inputs FILE.npz")

    def _strings(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        words = self.constraints.vocabulary
        if not words:
            return np.full(shape, STRING_PLACEHOLDER, dtype=object)
        picks = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            count = int(rng.integers(4, 17)) if self.constraints.sentences else 1
            picks[index] = " ".join(words[i] for i in rng.integers(0, len(words), size=count)).encode()
        return picks

    def payloads(self, encoded: dict, shape: tuple[int, ...], rng: np.random.Generator, forced: dict[str, int] | None = None) -> np.ndarray:
        from tfaudit.engine.payloads import PayloadMaker

        maker = PayloadMaker(rng, self.constraints.vocabulary, forced)
        made = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            made[index] = maker.make(encoded)
        return made

    def _from_samples(self, spec: InputSpec, batch: int | None) -> np.ndarray:
        data = self.samples[spec.name]
        if batch is None or not spec.batch_dynamic:
            return data
        reps = -(-batch // len(data))  # tile when the file holds fewer rows than asked
        return np.concatenate([data] * reps, axis=0)[:batch]


def padding_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """1 for each row's tokens, then 0: each row (along the last axis) between half and all full."""
    if not shape or shape[-1] == 0:
        return np.ones(shape, dtype=np.int64)
    length = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    lengths = rng.integers(max(1, (length + 1) // 2), length + 1, size=rows)
    mask = np.arange(length)[None, :] < lengths[:, None]
    return mask.reshape(shape).astype(np.int64)


def validate_samples(specs: list[InputSpec], samples: dict[str, np.ndarray]) -> None:
    """Raise InputError naming the first mismatch between samples and signature."""
    expected = {spec.name for spec in specs}
    missing = sorted(expected - set(samples))
    extra = sorted(set(samples) - expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise InputError(f"--inputs keys do not match the signature inputs ({'; '.join(parts)}); expected {', '.join(sorted(expected))}")
    for spec in specs:
        data = samples[spec.name]
        if spec.dtype == "string":
            dtype_ok = data.dtype.kind in "USO"
        else:
            dtype_ok = data.dtype == numpy_dtype(spec.dtype)
        if not dtype_ok:
            raise InputError(f"--inputs '{spec.name}' has dtype {data.dtype}, the signature expects {spec.dtype}")
        if spec.shape is None:
            continue
        if len(data.shape) != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, data.shape)
        ):
            want = "[" + ", ".join("None" if d is None else str(d) for d in spec.shape) + "]"
            raise InputError(f"--inputs '{spec.name}' has shape {list(data.shape)}, the signature expects {want}")
        if spec.shape and data.shape[0] == 0:
            raise InputError(f"--inputs '{spec.name}' holds no rows")


def load_samples(path: str, specs: list[InputSpec], feature_types: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Read and validate real inputs (tfaudit.engine.samples: .npz, .tfrecord, a TF Serving .json body, a folder of images)."""
    from tfaudit.engine.samples import SamplesError, read_samples

    try:
        samples = read_samples(path, specs, feature_types)
    except SamplesError as exc:
        raise InputError(str(exc)) from None
    validate_samples(specs, samples)
    return samples


NUL_TRAP = ("numpy 'S' arrays drop trailing NUL bytes, and a serialized proto can end in one: give these samples as a "
            ".tfrecord of the records, or a TF Serving .json body with {\"b64\": …} values")


def nul_trap(samples: dict[str, np.ndarray] | None) -> str:
    """The note for a rejected request whose string samples came as fixed-width bytes."""
    return f" ({NUL_TRAP})" if samples and any(array.dtype.kind == "S" for array in samples.values()) else ""
