import numpy as np
import pytest

from tfaudit.engine.inputs import (
    DEFAULT_SEQUENCE_LENGTH,
    INT_HIGH,
    STRING_PLACEHOLDER,
    InputError,
    InputFactory,
    InputSpec,
    load_samples,
)

SPECS = [
    InputSpec("image", (None, 4, 4, 3), "float32"),
    InputSpec("tokens", (None, None), "int32"),
    InputSpec("mask", (None, None), "bool"),
    InputSpec("text", (None,), "string"),
    InputSpec("scale", (), "float64"),
]


def test_synthesis_follows_dtypes_and_fills_dynamic_dims():
    batch = InputFactory(SPECS).make(batch=5, seq=7)
    assert batch["image"].shape == (5, 4, 4, 3) and batch["image"].dtype == np.float32
    assert batch["tokens"].shape == (5, 7) and batch["tokens"].dtype == np.int32
    assert batch["tokens"].min() >= 0 and batch["tokens"].max() < INT_HIGH
    assert batch["mask"].dtype == np.bool_ and batch["mask"].shape == (5, 7)
    assert batch["text"].shape == (5,) and batch["text"][0] == STRING_PLACEHOLDER
    assert batch["scale"].shape == () and batch["scale"].dtype == np.float64
    assert 0.5 < batch["image"].std() < 1.5


def test_defaults_and_determinism():
    factory = InputFactory(SPECS, seed=3)
    first, second = factory.make(), factory.make()
    assert first["tokens"].shape == (1, DEFAULT_SEQUENCE_LENGTH)
    np.testing.assert_array_equal(first["image"], second["image"])
    assert not np.array_equal(first["image"], factory.make(seed=4)["image"])


def test_fixed_dims_are_kept_and_flags_are_right():
    fixed = InputFactory([InputSpec("x", (1, 8), "float32")])
    assert fixed.make(batch=16)["x"].shape == (1, 8)
    assert not fixed.batch_dynamic and not fixed.has_sequence_dims
    dynamic = InputFactory(SPECS)
    assert dynamic.batch_dynamic and dynamic.has_sequence_dims and dynamic.string_inputs == ["text"]


def test_unsynthesisable_dtype_is_a_clear_error():
    with pytest.raises(InputError, match="cannot synthesise dtype"):
        InputFactory([InputSpec("v", (2,), "variant")]).make()


def test_real_samples_are_validated_and_tiled(tmp_path):
    specs = [InputSpec("x", (None, 3), "float32"), InputSpec("text", (None,), "string")]
    path = tmp_path / "in.npz"
    np.savez(path, x=np.arange(6, dtype=np.float32).reshape(2, 3), text=np.array(["a", "b"]))
    factory = InputFactory(specs, samples=load_samples(str(path), specs))
    assert not factory.synthetic
    made = factory.make(batch=5)
    assert made["x"].shape == (5, 3)
    np.testing.assert_array_equal(made["x"][2], made["x"][0])  # tiled from the 2 real rows
    assert list(made["text"]) == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y": np.zeros((1, 3), np.float32)}, "missing x; unexpected y"),
        ({"x": np.zeros((1, 3), np.float64)}, "'x' has dtype float64, the signature expects float32"),
        ({"x": np.zeros((1, 4), np.float32)}, "'x' has shape [1, 4], the signature expects [None, 3]"),
        ({"x": np.zeros((3,), np.float32)}, "'x' has shape [3]"),
        ({"x": np.zeros((0, 3), np.float32)}, "holds no rows"),
    ],
)
def test_mismatched_samples_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "in.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as error:
        load_samples(str(path), [InputSpec("x", (None, 3), "float32")])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unreadable_samples_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_samples(str(bad), [])
    with pytest.raises(InputError, match="not found"):
        load_samples(str(tmp_path / "missing.npz"), [])


def test_unknown_rank_needs_real_samples(tmp_path):
    spec = InputSpec.from_dict({"name": "blob", "shape": None, "dtype": "float32"})
    with pytest.raises(InputError, match="unknown rank"):
        InputFactory([spec]).make()
    path = tmp_path / "in.npz"
    np.savez(path, blob=np.zeros((2, 3, 4), np.float32))
    assert InputFactory([spec], samples=load_samples(str(path), [spec])).make()["blob"].shape == (2, 3, 4)


def test_constraints_bound_ids_shape_masks_and_cut_sequences():
    from tfaudit.engine.inputs import InputConstraints

    specs = [InputSpec("ids", (None, None), "int32"), InputSpec("attention_mask", (None, None), "int32")]
    constraints = InputConstraints(id_bounds={"ids": 3}, masks=("attention_mask",), max_sequence_length=20)
    assert InputConstraints.from_dict(constraints.to_dict()) == constraints
    factory = InputFactory(specs, constraints=constraints)
    batch = factory.make(batch=64, seq=128)
    assert batch["ids"].shape == (64, 20) and set(np.unique(batch["ids"])) == {0, 1, 2}
    mask = batch["attention_mask"]
    lengths = mask.sum(axis=1)
    assert mask.dtype == np.int32 and lengths.min() >= 10 and lengths.max() == 20 and len(set(lengths)) > 3
    assert factory.sequence_lengths == (8, 16)
    assert InputFactory(specs).sequence_lengths == (8, 16, 32, 64, 128)
