import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tfaudit.engine import demo

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return demo.build_demo(str(tmp_path_factory.mktemp("demo") / "saved_model"))


@pytest.fixture(scope="module")
def loaded(demo_dir):
    import tensorflow as tf

    return tf.saved_model.load(demo_dir)


def test_demo_module_does_not_import_tensorflow():
    code = "import sys, tfaudit.engine.demo as d; d.demo_path(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})


def test_demo_path_is_versioned_in_the_user_cache():
    path = demo.demo_path()
    assert path.endswith(os.path.join(f"demo-v{demo.DEMO_VERSION}", "saved_model"))
    assert "tfaudit" in path


def test_serving_signature_has_a_fixed_batch(loaded):
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["features"]
    assert inputs["features"].shape.as_list() == [1, 64]
    assert inputs["features"].dtype.name == "float32"
    assert signature.structured_outputs["scores"].shape.as_list() == [1, 10]


def test_serving_signature_returns_probabilities(loaded):
    features = np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)
    scores = loaded.signatures["serving_default"](features=features)["scores"].numpy()
    assert scores.shape == (1, 10)
    assert np.all(scores >= 0)
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    # predict and refine share the forward pass: refine with steps=1 is the same model
    np.testing.assert_allclose(loaded.predict(features).numpy(), scores, rtol=1e-6)
    np.testing.assert_allclose(loaded.refine(features, 1).numpy(), scores, rtol=1e-6)


def test_predict_holds_one_graph_per_traced_batch_size(loaded):
    functions = loaded.predict.concrete_functions
    batch_sizes = sorted(f.structured_input_signature[0][0].shape[0] for f in functions)
    assert batch_sizes == [1, 2, 4, 8, 16]


def test_refine_bakes_its_python_argument_into_each_graph(loaded):
    functions = loaded.refine.concrete_functions
    steps = sorted(f.structured_input_signature[0][1] for f in functions)
    assert steps == [1, 2, 3]
    node_counts = {f.structured_input_signature[0][1]: len(f.graph.as_graph_def().node) for f in functions}
    assert node_counts[1] < node_counts[2] < node_counts[3]  # the loop is unrolled


def test_kernels_are_mostly_near_zero(loaded):
    kernels = [layer.kernel.numpy() for layer in (loaded.dense1, loaded.dense2, loaded.dense3)]
    assert [k.shape for k in kernels] == [(64, 256), (256, 256), (256, 10)]
    entries = np.concatenate([np.abs(k).ravel() for k in kernels])
    assert np.mean(entries < 1e-3) >= 0.8


def test_one_layer_stores_float64_weights(demo_dir):
    import tensorflow as tf

    dtypes = tf.train.load_checkpoint(os.path.join(demo_dir, "variables", "variables")).get_variable_to_dtype_map()
    assert dtypes["dense2/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == tf.float64
    assert dtypes["dense1/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == tf.float32


def test_second_build_is_a_no_op(demo_dir):
    model_file = os.path.join(demo_dir, "saved_model.pb")
    mtime = os.stat(model_file).st_mtime_ns
    started = time.perf_counter()
    assert demo.build_demo(demo_dir) == demo_dir
    assert time.perf_counter() - started < 0.5
    assert os.stat(model_file).st_mtime_ns == mtime
    assert [n for n in os.listdir(os.path.dirname(demo_dir)) if n.startswith(".")] == []  # no staging left


def test_module_entry_point_prints_only_the_path(tmp_path):
    # The CLI runs this in a subprocess and reads the path from stdout, so TF's chatter must stay on stderr.
    from tfaudit.engine.launch import child_environment, python_command

    target = tmp_path / "built" / "saved_model"
    result = subprocess.run(python_command("tfaudit.engine.demo", str(target)), capture_output=True, text=True, check=True, env=child_environment())
    assert result.stdout == f"{target}\n"
    assert (target / "saved_model.pb").exists()
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
