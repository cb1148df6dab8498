"""The pruning check's findings: what each says, why it matters, how to fix and verify it."""
from __future__ import annotations

from tfaudit.api import Effort, Risk, Rule, catalogue

from .sweep import PERCENTS

# What the evidence's numbers are of.
MEASURED_HOW = {
    "fidelity": "the serving signature with pruned weights vs. before pruning, same inputs",
    "size": "zip (deflate, default level) of the float32 TFLite flatbuffer, as tfmot's guide measures it",
    "latency": "LiteRT, sparse-encoded flatbuffer vs. the dense float32 flatbuffer, batch 1",
}
SIZE_PCT_OF = "the zipped float32 TFLite model"
COUNTED = "the zipped flatbuffers' bytes"
SEVERITY_BY_SAVING = (
    "from the zipped size and latency saved: medium at 25 % smaller and at least 1 MiB, or 20 % faster; low at "
    "100 KiB smaller or 5 % faster; else info (a latency saving counts when its interval's low end reaches 0.05 ms)"
)
MEASURED_RISK = Risk("low", "Measured on the audit inputs; re-check on real data.")

# The recommendation's optional sentences.
SMALLER_ZIPPED = ": $size_pct% smaller zipped"
ZIPPED = " Zipped TFLite: $pruned_mb MB instead of $base_mb MB ($size_pct% smaller)."
SPARSE_LATENCY = "Sparse LiteRT latency: $ms ms vs $base_ms ms dense ($verdict)."
NO_LATENCY = "Latency: $reason."
NO_SPARSE_PATH = "not measured (no sparse-capable path here)"
NOT_PRUNED = " Not pruned ($count): $tensors."
COMBINED_WITHIN = " — within the bound."
COMBINED_BEYOND = " — beyond the bound ($bound)."

# The fixes' code, filled with this model's path and signature.
ONE_SHOT_TFMOT = (
    "import tensorflow_model_optimization as tfmot\nimport tf_keras\n"
    "from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper\n\n"
    'model = tf_keras.models.load_model("$path")\n'
    "schedule = tfmot.sparsity.keras.ConstantSparsity($sparsity, begin_step=0, frequency=1)\n"
    "pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)\n"
    "for layer in pruned.layers:  # one-shot: apply the masks once, no training\n"
    "    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):\n"
    "        layer.pruning_step.assign(1)\n"
    "        layer.pruning_obj.conditional_mask_update()\n"
    "        layer.pruning_obj.weight_mask_op()\n"
    "final = tfmot.sparsity.keras.strip_pruning(pruned)\n"
    'final.save("model_pruned", save_format="tf")'
)
ONE_SHOT_DIRECT = (
    "import numpy as np\nimport tensorflow as tf\n${keras_import}\n"
    "$load\n"
    "for v in variables:\n"
    "    if v.dtype.is_floating and len(v.shape) >= 2:  # kernels, not biases or norms\n"
    "        w = v.numpy()\n"
    "        threshold = np.quantile(np.abs(w), $sparsity)\n"
    "        v.assign(np.where(np.abs(w) > threshold, w, 0).astype(w.dtype))\n"
    "$save"
)
IMPORT_KERAS = "import keras\n"
LOAD_KERAS = 'model = keras.saving.load_model("$path")\nvariables = model.weights'
LOAD_SAVED_MODEL = 'model = tf.saved_model.load("$path")\nvariables = model.signatures["$signature"].variables'
SAVE_KERAS = 'model.save("model_pruned.keras")'
SAVE_SAVED_MODEL = 'tf.saved_model.save(model, "model_pruned", signatures={"$signature": model.signatures["$signature"]})'
QUANTIZE_PRUNED = (
    'converter = tf.lite.TFLiteConverter.from_saved_model("model_pruned")\n'
    "converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
    '${float16}open("model_pruned_quantized.tflite", "wb").write(converter.convert())'
)
FLOAT16_WEIGHTS = "converter.target_spec.supported_types = [tf.float16]\n"
FINE_TUNING = (
    "import tensorflow_model_optimization as tfmot\nimport tf_keras\n\n"
    "$load\n"
    "schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.75, begin_step=0, end_step=end_step)\n"
    "pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)\n"
    "pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-4), loss=loss, metrics=metrics)\n"
    "pruned.fit(train_ds, epochs=epochs, validation_data=val_ds,\n"
    "           callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])\n"
    "final = tfmot.sparsity.keras.strip_pruning(pruned)\n"
    'final.save("model_pruned", save_format="tf")'
)
LOAD_TF_KERAS = 'model = tf_keras.models.load_model("$path")'
BUILD_TF_KERAS = "model = build_your_tf_keras_model()  # tfmot needs a tf_keras (Keras 2) model"


def magnitude_rule(percent: int) -> Rule:
    return Rule(
        id=f"pruning/magnitude-{percent}",
        runtime="litert",
        fix_writer="the pruned SavedModel and its flatbuffers",
        severity="info",
        title="Prune $percent% of the weights$smaller",
        summary=(
            "Pruning $percent% of the kernel weights ($method) keeps the outputs within the bound: relative L2 error "
            "$loss$top1.$zipped $latency$not_pruned"
        ),
        why="Zeros compress: the model downloads and stores smaller; sparse kernels can also run faster where the runtime supports them.",
        fix="Prune $percent% of each kernel by magnitude, strip the wrappers, and ship the compressed model.",
        example="$code",
        verify="Re-run `tfaudit PRUNED_MODEL --checks pruning` and compare its outputs with the original on real inputs.",
        effort=Effort("hours", 2.0, "One-shot pruning, no training: prune, strip, convert and re-validate."),
        risk=MEASURED_RISK,
        severity_rule=SEVERITY_BY_SAVING + "; the risk is none when the outputs did not change at all",
        minimum="the largest swept sparsity whose outputs stay within --max-fidelity-loss (relative L2, and top-1 for class scores)",
    )


RULES = catalogue(
    *(magnitude_rule(percent) for percent in PERCENTS),
    Rule(
        id="pruning/needs-fine-tuning",
        kind="fact",
        severity="low",
        title="One-shot pruning breaks the fidelity bound; pruning needs fine-tuning",
        summary=(
            "No swept sparsity kept the relative L2 error within $bound without training (measured: $losses). "
            "Pruning while fine-tuning lets the remaining weights compensate.$not_pruned"
        ),
        why="",
        fix="Prune gradually while fine-tuning with tfmot, then strip the wrappers.",
        example="$code",
        effort=Effort("days", 24.0, "Pruning during training: a training pipeline, data and several epochs."),
        risk=Risk("medium", "Accuracy after fine-tuning is not measured here."),
        severity_rule="low when one-shot pruning was measured and broke the bound at every sparsity; info when no sparsity could be measured",
        minimum="every swept sparsity beyond --max-fidelity-loss",
    ),
    Rule(
        id="pruning/combined",
        runtime="litert",
        severity="info",
        title="$percent% pruning + $kind: $size_pct% smaller zipped",
        summary=(
            "Measured together: zipped $combined_mb MB vs $base_mb MB float32 (pruning alone $pruned_mb MB); "
            "relative L2 error $loss against the SavedModel$verdict"
        ),
        why="",
        fix="Prune to $percent%, then convert with $kind.",
        example="$code",
        effort=Effort("hours", 3.0, "One-shot pruning plus a converter setting."),
        fix_writer="the pruned and quantized flatbuffer (model.tflite)",
        risk=MEASURED_RISK,
        severity_rule=SEVERITY_BY_SAVING + ", on the zipped size; info when its outputs are beyond the bound (no savings then)",
        minimum="a recommended sparsity whose pruned model converts and runs in LiteRT",
    ),
)

# The combined model that did not convert or run: the same finding id, as a fact.
COMBINED_UNMEASURED = Rule(
    id="pruning/combined",
    runtime="litert",
    kind="fact",
    severity="info",
    title="$percent% pruning with $kind could not be measured",
    summary="The combined model did not run: $error.",
    why="",
    fix="See the pruning finding.",
    effort=Effort("hours", 2.0, "Prune, then convert with weight quantization."),
    severity_rule="info: nothing was measured",
)

# What --fix-dir writes (an artifact's "what").
PRUNED_ARTIFACT = "the model pruned to $name: a SavedModel (saved_model/), its float32 TFLite model (model.tflite)$sparse"
SPARSE_ARTIFACT = " and the same sparse-encoded (model_sparse.tflite)"
COMBINED_ARTIFACT = "the $name-pruned model with $kind weights (model.tflite)"
