"""--fix-dir for the retracing check: the model re-exported with relaxed input signatures.

A Keras-loadable model (tf_keras SavedModel, ``.keras``) is traced again from the Keras model with
``None`` on the batch dimension, so layers that read the static batch size (Flatten, Reshape)
compute with the new one. Any other SavedModel is relaxed from its own graphs: each concrete
function's GraphDef is imported into a new ``tf.function`` whose placeholders have ``None`` on the
relaxed axes, over the same variables; the rest of the object (other functions, assets, tables) is
saved again as it was. A graph that hard-codes a size gives other results for other sizes: the
re-measurement compares every output with the original's, row by row, and refuses a mismatch.

``export_script`` writes the code as text and ``export`` runs exactly that text, so the artifact's
README shows the code that made it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Relaxed outputs must match the original's within this, relative to the outputs' largest magnitude:
# a batched matmul sums in another order (~1e-7 relative), a hard-coded batch size is off by O(1).
OUTPUT_TOLERANCE = 1e-4


@dataclass
class RelaxedPlan:
    """What to relax: the serving signature's batch axis and restored functions' varied axes."""

    signature: str
    signature_inputs: list[tuple[str, tuple | None, str]]  # (name, relaxed shape, dtype), in call order
    relax_batch: bool
    functions: dict[str, list[tuple[str, tuple | None, str]]] = field(default_factory=dict)  # name -> relaxed args
    keras: str | None = None  # "tf_keras" | "keras" when re-traced from the Keras model
    output_names: list[str] = field(default_factory=list)


def shape_code(shape: tuple | None) -> str:
    return "None" if shape is None else "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def tensor_spec_code(name: str, shape: tuple | None, dtype: str) -> str:
    return f'tf.TensorSpec({shape_code(shape)}, tf.{dtype}, name="{name}")'


def _decorated(name: str, args: list[tuple[str, tuple | None, str]], body: str) -> list[str]:
    params = [a[0] for a in args]
    return [
        "@tf.function(input_signature=[" + ", ".join(tensor_spec_code(*a) for a in args) + "], autograph=False)",
        f"def {name}({', '.join(params)}):",
        f"    {body}",
        "",
    ]


# The scripts' paths line; with_paths puts the real ones in.
PATHS = 'MODEL, OUT = "model", "relaxed_signature/saved_model"'


def with_paths(script: str, model: str, out: str) -> str:
    return script.replace(PATHS, f"MODEL, OUT = {model!r}, {out!r}")


GRAPH_HELPER = '''

def traced_again(concrete):
    """A Python callable that runs ``concrete``'s graph on tensors of any shape, over the same variables."""
    graph_def = concrete.graph.as_graph_def()
    arguments = len(concrete.inputs) - len(concrete.captured_inputs)
    inputs = [t.name for t in concrete.inputs[:arguments]]
    captured = [t.name for t in concrete.inputs[arguments:]]
    variables = {id(v.handle): v for v in concrete.variables}
    held = [variables.get(id(handle), handle) for handle in concrete.captured_inputs]
    outputs = [t.name for t in concrete.outputs]

    def run(*tensors):
        graph = tf.compat.v1.get_default_graph()
        input_map = dict(zip(inputs, tensors))
        for name, value in zip(captured, held):
            input_map[name] = graph.capture(value.handle if hasattr(value, "handle") else value)
        results = tf.graph_util.import_graph_def(graph_def, input_map=input_map, return_elements=outputs, name="")
        return tf.nest.pack_sequence_as(concrete.structured_outputs, results)

    return run

'''


def _keras_module(plan: RelaxedPlan) -> str:
    return "tf_keras" if plan.keras == "tf_keras" else "keras"


def serving_lines(plan: RelaxedPlan) -> list[str]:
    """The code that defines the relaxed ``serve`` from ``model`` (Keras) or ``loaded`` (a SavedModel, with ``traced_again``)."""
    params = ", ".join(a[0] for a in plan.signature_inputs)
    if plan.keras:
        tree = "tf.nest" if plan.keras == "tf_keras" else "keras.tree"
        return [
            f"OUTPUT_NAMES = {plan.output_names!r}  # the original serving signature's outputs, in the model's order",
            "",
            *_decorated("serve", plan.signature_inputs,
                        f"return dict(zip(OUTPUT_NAMES, {tree}.flatten(model({tree}.pack_sequence_as(model.input, [{params}]), training=False))))"),
        ]
    return [f"serving_graph = traced_again(loaded.signatures[{plan.signature!r}])",
            *_decorated("serve", plan.signature_inputs, f"return serving_graph({params})")]


def export_script(plan: RelaxedPlan) -> str:
    """Runnable code: reads MODEL, writes OUT."""
    if plan.keras:
        module = _keras_module(plan)
        load = "tf_keras.models.load_model(MODEL, compile=False)" if module == "tf_keras" else "keras.saving.load_model(MODEL, compile=False)"
        lines = [
            "import tensorflow as tf",
            f"import {module}",
            "",
            PATHS + "  # the original model, the folder to write",
            f"model = {load}",
            *serving_lines(plan),
            "module = tf.Module()",
            "module.model_variables = " + ("list(model.variables)" if module == "tf_keras" else "[v.value for v in model.variables]")
            + "  # the weights, saved with the function (the Keras model's own traces are not)",
            "module.serve = serve",
            'tf.saved_model.save(module, OUT, signatures={"serving_default": serve.get_concrete_function()})',
        ]
        return "\n".join(lines) + "\n"
    lines = [
        "import tensorflow as tf",
        "",
        PATHS + "  # the original SavedModel, the folder to write",
        "loaded = tf.saved_model.load(MODEL)" + GRAPH_HELPER.rstrip("\n"),
        "",
        "",
    ]
    for name, args in plan.functions.items():
        lines += [f"{name}_graph = traced_again(loaded.{name}.concrete_functions[0])",
                  *_decorated(f"{name}_relaxed", args, f"return {name}_graph({', '.join(a[0] for a in args)})"),
                  f"loaded.{name} = {name}_relaxed", ""]
    signatures = "loaded.signatures"
    if plan.relax_batch:
        lines += serving_lines(plan)
        signatures = f"{{**loaded.signatures, {plan.signature!r}: serve.get_concrete_function()}}"
    lines.append(f"tf.saved_model.save(loaded, OUT, signatures={signatures})")
    return "\n".join(lines) + "\n"


def relaxed_serving(plan: RelaxedPlan, model):
    """The relaxed ``serve`` built in memory by the same code as the export, on the loaded ``model``
    (the Keras model, or the loaded SavedModel, which is not changed)."""
    import importlib

    import tensorflow as tf

    namespace: dict = {"tf": tf}
    if plan.keras:
        namespace[_keras_module(plan)] = importlib.import_module(_keras_module(plan))
        namespace["model"] = model
    else:
        exec(GRAPH_HELPER, namespace)
        namespace["loaded"] = model
    exec("\n".join(serving_lines(plan)), namespace)
    return namespace["serve"]


def export(plan: RelaxedPlan, model: str, out: str) -> str:
    """Run ``export_script`` on ``model``, writing ``out``; return the script (its paths still ``PATHS``)."""
    script = export_script(plan)
    exec(compile(with_paths(script, model, out), "<relaxed export>", "exec"), {})
    return script


def max_relative_gap(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> float:
    """The largest output difference relative to the outputs' largest magnitude (inf when the keys or shapes differ)."""
    if set(reference) != set(candidate):
        return float("inf")
    gaps = []
    for key, ref in reference.items():
        ref, got = np.asarray(ref), np.asarray(candidate[key])
        if ref.shape != got.shape:
            return float("inf")
        if not np.issubdtype(ref.dtype, np.number):
            gaps.append(0.0 if np.array_equal(ref, got) else float("inf"))
            continue
        # Relative to the outputs' own scale (a floor of 1 would let small outputs hide a wrong batch); the tiny
        # floor only keeps vanishing outputs (a random-weight MobileNetV2's logits are ~1e-16) from dividing by zero.
        scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-12)
        gaps.append(float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) / scale if ref.size else 0.0)
    return max(gaps, default=0.0)


def stacked(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}


def numpy_outputs(outputs) -> dict[str, np.ndarray]:
    if isinstance(outputs, dict):
        return {k: v.numpy() for k, v in outputs.items()}
    import tensorflow as tf

    return {str(i): t.numpy() for i, t in enumerate(tf.nest.flatten(outputs))}

