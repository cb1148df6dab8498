"""tfaudit.engine.model: loading every supported format, the inventory, and one-line load errors."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tfaudit.engine.model import LoadError, LoadedModel, export_function, input_specs, load_model


@pytest.fixture(scope="session")
def mlp(built_model) -> LoadedModel:
    return load_model(built_model("mlp"))


def copy_model(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def assert_one_line_error(path: str, *words: str, signature: str | None = None) -> str:
    with pytest.raises(LoadError) as info:
        load_model(path, signature=signature)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert os.path.abspath(path) in message
    for word in words:
        assert word in message
    return message


# --- formats and inventory -----------------------------------------------------------------------


def test_mlp_inventory(mlp, built_model):
    inv = mlp.inventory
    assert mlp.format == inv["format"] == "saved_model"
    assert mlp.signature == inv["signature"] == "serving_default"
    assert inv["path"] == os.path.abspath(built_model("mlp"))
    assert inv["signatures"]["serving_default"] == {
        "inputs": [{"name": "x", "shape": [None, 8], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [None, 4], "dtype": "float32"}],
    }
    assert inv["variables"] == {
        "count": 2,
        "parameters": 36,
        "bytes": 144,
        "by_dtype": {"float32": {"count": 2, "parameters": 36, "bytes": 144}},
    }
    assert inv["ops"]["MatMul"] == 1 and inv["ops"]["Relu"] == 1
    assert "Placeholder" not in inv["ops"] and "StatefulPartitionedCall" not in inv["ops"]
    assert {"saved_model.pb", "variables"} <= set(inv["files"])
    assert inv["size_bytes"] == sum(inv["files"].values()) > inv["files"]["saved_model.pb"] > 0
    assert inv["versions"]["tensorflow"] and inv["versions"]["keras"] is None
    assert inv["keras_loadable"] is False and mlp.keras_model() is None
    assert json.loads(json.dumps(inv)) == inv


def test_input_specs(mlp):
    assert input_specs(mlp.inventory) == [{"name": "x", "shape": [None, 8], "dtype": "float32"}]


def test_serving_fn_runs(mlp):
    outputs = mlp.serving_fn()(x=np.ones([3, 8], np.float32))
    assert set(outputs) == {"y"} and outputs["y"].shape == (3, 4)


def test_accepts_path_to_saved_model_pb(built_model):
    assert load_model(os.path.join(built_model("mlp"), "saved_model.pb")).path == os.path.abspath(built_model("mlp"))


def test_fixed_batch(built_model):
    assert input_specs(load_model(built_model("fixed_batch")).inventory)[0]["shape"] == [1, 8]


def test_float64(built_model):
    loaded = load_model(built_model("float64"))
    assert loaded.inventory["variables"]["by_dtype"] == {"float64": {"count": 2, "parameters": 36, "bytes": 288}}
    outputs = loaded.serving_fn()(x=np.ones([2, 8], np.float64))
    assert outputs["y"].dtype.name == "float64"


def functions_by_name(loaded: LoadedModel) -> dict[str, dict]:
    return {f["name"]: f for f in loaded.inventory["functions"]}


def test_retraced_function_shows_every_trace(built_model):
    predict = functions_by_name(load_model(built_model("retraced")))["predict"]
    assert predict["concrete_functions"] == 4
    assert [sig[0]["shape"] for sig in predict["input_signatures"]] == [[b, 8] for b in (1, 2, 3, 4)]


def test_python_arg_traces(built_model):
    scale = functions_by_name(load_model(built_model("python_arg")))["scale"]
    assert scale["concrete_functions"] == 3
    assert sorted(scale["python_args"]) == [["1"], ["2"], ["3"]]


def test_sequence_model(built_model):
    loaded = load_model(built_model("sequence"))
    assert input_specs(loaded.inventory) == [{"name": "tokens", "shape": [None, None], "dtype": "int32"}]
    assert loaded.inventory["variables"]["parameters"] == 40
    assert "ResourceGather" in loaded.inventory["ops"]
    tokens = np.random.default_rng(0).integers(0, 10, size=(2, 5)).astype(np.int32)
    assert loaded.serving_fn()(tokens=tokens)["pooled"].shape == (2, 4)


def test_string_input_model(built_model):
    loaded = load_model(built_model("string_input"))
    assert input_specs(loaded.inventory)[0]["dtype"] == "string"
    assert loaded.inventory["variables"]["count"] == 0
    assert loaded.serving_fn()(text=np.array([b"ab", b"abc"]))["length"].numpy().tolist() == [2, 3]


def test_tf_keras_saved_model(built_model):
    loaded = load_model(built_model("tf_keras"))
    inv = loaded.inventory
    assert loaded.format == "tf_keras_saved_model" and inv["keras_loadable"] is True
    assert inv["versions"]["keras"] and "keras_metadata.pb" in inv["files"]
    assert inv["variables"]["parameters"] == 36
    assert inv["ops"]["MatMul"] == 1  # inside the nested function library, not the top graph
    assert input_specs(inv) == [{"name": "x", "shape": [None, 8], "dtype": "float32"}]
    keras_model = loaded.keras_model()
    assert keras_model is not None and keras_model is loaded.keras_model()  # cached
    assert keras_model.count_params() == 36
    (output,) = loaded.serving_fn()(x=np.ones([2, 8], np.float32)).values()
    assert output.shape == (2, 4)


def test_keras3_file(built_model):
    loaded = load_model(built_model("keras3"))
    inv = loaded.inventory
    assert loaded.format == "keras" and loaded.signature == "serving_default"
    assert inv["signatures"]["serving_default"] == {
        "inputs": [{"name": "x", "shape": [None, 8], "dtype": "float32"}],
        "outputs": [{"name": "dense", "shape": [None, 4], "dtype": "float32"}],
    }
    assert inv["variables"]["parameters"] == 36 and inv["ops"]["MatMul"] == 1
    assert inv["files"] == {"model.keras": inv["size_bytes"]} and inv["versions"]["keras"]
    assert inv["keras_loadable"] is True and loaded.keras_model() is loaded.obj
    assert loaded.serving_fn()(x=np.ones([5, 8], np.float32))["dense"].shape == (5, 4)
    assert json.loads(json.dumps(inv)) == inv


# --- signature selection -------------------------------------------------------------------------


def test_explicit_signature(built_model):
    loaded = load_model(built_model("two_signatures"), signature="small")
    assert loaded.signature == loaded.inventory["signature"] == "small"
    assert set(loaded.inventory["signatures"]) == {"small", "large"}
    assert input_specs(loaded.inventory)[0]["shape"] == [1, 8]


def test_several_signatures_without_serving_default(built_model):
    assert_one_line_error(built_model("two_signatures"), "serving_default", "large", "small")


def test_unknown_signature_lists_available(built_model):
    assert_one_line_error(built_model("mlp"), "'nope'", "serving_default", signature="nope")


def test_only_signature_is_chosen(built_model, tmp_path):
    import tensorflow as tf

    original = tf.saved_model.load(built_model("mlp"))
    path = str(tmp_path / "renamed")
    tf.saved_model.save(original, path, signatures={"predict": original.signatures["serving_default"]})
    assert load_model(path).signature == "predict"


# --- bad inputs: one-line LoadError ----------------------------------------------------------------


def test_missing_path(tmp_path):
    assert_one_line_error(str(tmp_path / "nope"), "no such file or directory")


def test_empty_directory(tmp_path):
    assert_one_line_error(str(tmp_path), "empty directory")


def test_directory_without_saved_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(str(tmp_path), "no saved_model.pb")


def test_nested_saved_model_is_hinted(built_model, tmp_path):
    copy_model(built_model("mlp"), tmp_path / "1")
    assert_one_line_error(str(tmp_path), "no saved_model.pb", "'1'")


def test_text_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a model")
    assert_one_line_error(str(path), "not a model")


def test_keras_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"garbage" * 10)
    assert_one_line_error(str(path), "not a zip")


def test_keras_zip_without_config(tmp_path):
    import zipfile

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    assert_one_line_error(str(path), "cannot load Keras model")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_saved_model_pb(built_model, tmp_path, keep):
    path = copy_model(built_model("mlp"), tmp_path / "m")
    pb = os.path.join(path, "saved_model.pb")
    data = open(pb, "rb").read()
    open(pb, "wb").write(data[: int(len(data) * keep)])
    assert_one_line_error(path, "corrupt saved_model.pb")


def test_garbage_saved_model_pb(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\xff" * 100)
    assert_one_line_error(str(tmp_path), "corrupt saved_model.pb")


def test_no_signature_names_each_function_and_function_audits_one(built_model, tmp_path):
    import tensorflow as tf

    path = built_model("no_signature")
    assert_one_line_error(path, "has no serving signature", "decode(float32[None, 4])", "encode(float32[None, 8])", "--function NAME")
    saved = export_function(path, "encode", str(tmp_path / "encode"), refuse_untrusted=True, user_modules=())
    model = load_model(saved)
    assert model.signature == "serving_default" and input_specs(model.inventory) == [{"name": "x", "shape": [None, 8], "dtype": "float32"}]
    y = model.serving_fn()(x=tf.ones([3, 8]))
    assert list(y) == ["output_0"] and y["output_0"].shape == (3, 4)
    with pytest.raises(LoadError, match=r"--function nope: no such restored function \(found: decode, encode\)"):
        export_function(path, "nope", str(tmp_path / "nope"), refuse_untrusted=True, user_modules=())


def test_missing_variables_directory(built_model, tmp_path):
    path = copy_model(built_model("mlp"), tmp_path / "m")
    shutil.rmtree(os.path.join(path, "variables"))
    assert_one_line_error(path, "cannot load SavedModel")
