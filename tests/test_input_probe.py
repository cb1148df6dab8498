"""Inputs the model accepts (tfaudit.engine.input_probe) and custom-op libraries (tfaudit.engine.model), on real graphs."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import odd_models
from conftest import run_cli
from tfaudit.engine.inputs import InputError


def open_model(path: str, samples: str | None = None):
    from tfaudit.engine.input_probe import open_inputs
    from tfaudit.engine.model import load_model

    model = load_model(path)
    return model, open_inputs(model, samples)


def test_ids_stay_inside_the_smallest_table_and_masks_are_found_in_the_graph(built_model):
    model, inputs = open_model(built_model("small_table_ids"))
    constraints = inputs.constraints
    assert constraints.id_bounds == {"ids": 50, "kinds": 2}  # read from the runtime's own errors
    assert constraints.masks == ("keep",)  # only a Select condition: found in the graph, not by name
    feed = inputs.make(batch=32, seq=20)
    assert feed["kinds"].max() == 1 and feed["ids"].max() < 50 and feed["ids"].max() > 2
    keep = feed["keep"]
    assert set(np.unique(keep)) <= {0, 1} and keep[:, 0].all()  # each row starts with tokens, then pads
    assert (np.diff(keep, axis=1) <= 0).all() and not keep.all()


def test_without_constraints_the_old_synthesis_breaks_the_model(built_model):
    """The probe is what makes this model runnable: ids in [0, 10) overflow the 2-row table."""
    from tfaudit.engine.input_probe import call_error
    from tfaudit.engine.inputs import InputFactory

    model, inputs = open_model(built_model("small_table_ids"))
    error = call_error(model.serving_fn(), InputFactory(inputs.specs).make(batch=8))
    assert error is not None and "is not in [0, 2)" in error


@pytest.mark.slow
def test_keras_hub_bert_inputs(built_model):
    model, inputs = open_model(built_model("bert_classifier"))
    constraints = inputs.constraints
    assert constraints.id_bounds == {"segment_ids": 2, "token_ids": 300}
    assert constraints.masks == ("padding_mask",)
    assert constraints.max_sequence_length == 64  # the position table, found by bisection
    assert inputs.sequence_lengths == (8, 16, 32, 64)
    assert inputs.make(batch=2, seq=128)["token_ids"].shape == (2, 64)


def test_inputs_the_model_rejects_are_one_line_naming_the_cause(built_model, tmp_path):
    path = built_model("ragged_input")
    with pytest.raises(InputError) as error:
        open_model(path)
    message = str(error.value)
    assert "\n" not in message and "pass real inputs with --inputs (.npz" in message
    assert "row_lengths" in message and "synthetic inputs" in message
    samples = odd_models.ragged_input_samples(str(tmp_path / "rows.npz"))
    _, inputs = open_model(path, samples)
    assert not inputs.synthetic
    # Rows of values and row lengths depend on each other: tiling them to batch 2 breaks the model,
    # so requests keep the samples' own batch.
    assert inputs.constraints.batch_fixed and not inputs.batch_dynamic
    assert inputs.make(batch=8)["values"].shape == (6, 3)


def test_cli_stops_before_any_check_when_the_model_rejects_its_inputs(built_model):
    done = run_cli(built_model("ragged_input"), "--headless", "--checks", "safety")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("tfaudit: error")]
    assert len(lines) == 1 and "rejects the synthetic inputs" in lines[0] and "Traceback" not in done.stderr
    assert "[safety] started" not in done.stderr


def load_in_fresh_process(path: str, *imports: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import sys
        from tfaudit.engine.model import LoadError, import_modules, load_model
        try:
            import_modules({list(imports)!r})
            model = load_model({path!r})
        except LoadError as exc:
            print("LoadError:", exc)
            sys.exit(2)
        print("libraries:", model.inventory["op_libraries"], "tensorflow_text" in sys.modules)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_tf_text_model_loads_with_its_library_imported(built_model):
    path = built_model("text_classifier")
    done = load_in_fresh_process(path)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "libraries: ['tensorflow_text'] True" in done.stdout


def graph_with_op(op: str):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    node = graph_def.node.add()
    node.name, node.op = "custom", op
    return graph_def


def test_missing_library_names_the_op_and_the_package():
    from tfaudit.engine.model import LoadError, register_custom_ops

    with pytest.raises(LoadError, match=r"op Addons>NotAnOp is not registered: pip install tensorflow-addons"):
        register_custom_ops(graph_with_op("Addons>NotAnOp"), "/m")
    with pytest.raises(LoadError, match=r"op Acme>Blend is not registered .*pass --import MODULE"):
        register_custom_ops(graph_with_op("Acme>Blend"), "/m")
    assert register_custom_ops(graph_with_op("MatMul"), "/m") == []


def test_import_option_is_a_one_line_error_when_the_module_is_missing(built_model, tmp_path):
    done = run_cli(built_model("no_variables"), "--headless", "--import", "no_such_module_xyz", "--checks", "safety")
    assert done.returncode == 2
    assert "--import no_such_module_xyz failed: No module named 'no_such_module_xyz'" in done.stderr
    assert "Traceback" not in done.stderr
    config = tmp_path / "tfaudit.toml"
    config.write_text('[tool.tfaudit]\nimport = ["no_such_module_xyz"]\n')
    done = run_cli(built_model("no_variables"), "--headless", "--config", str(config), "--checks", "safety")
    assert done.returncode == 2 and "--import no_such_module_xyz failed" in done.stderr


def test_strings_come_from_the_model_vocabulary(built_model):
    _, inputs = open_model(built_model("text_classifier"))
    assert set(inputs.constraints.vocabulary) == set(odd_models.VOCABULARY)
    assert inputs.constraints.sentences  # the graph tokenises: a sentence per element
    text = inputs.make(batch=8)["text"]
    words = [w.decode() for sentence in text for w in sentence.split()]
    assert set(words) <= set(odd_models.VOCABULARY) and all(4 <= len(s.split()) <= 16 for s in text)
    assert inputs.placeholder_string_inputs == []
    _, lookup = open_model(built_model("lookup_table_assets"))
    assert not lookup.constraints.sentences and all(w.decode() in odd_models.VOCABULARY for w in lookup.make(batch=8)["word"])
