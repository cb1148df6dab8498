"""The quantization check's findings: what each says, why it matters, how to fix and verify it.

The recommendation's id is the recommended variant's (``quantization/float16`` …); the code
examples are assembled from the templates at the end by ``snippets``.
"""
from __future__ import annotations

from string import Template

from tfaudit.api import Effort, PracticalMinimum, Risk, Rule, catalogue

SELECTIVE = "full-int8-selective"
TITLES = {
    "float32": "float32 TFLite",
    "float16": "float16 weights",
    "dynamic-range-int8": "dynamic-range int8 (int8 weights, float activations)",
    "full-int8": "full-integer int8",
    "int16x8": "16x8 (int16 activations, int8 weights)",
    SELECTIVE: "full-integer int8 with the worst layers kept in float",
}

# --- the recommendation ----------------------------------------------------------------------------
RECOMMENDATION_SUMMARY = (
    "Measured on this host: $size_text$speed_text. Fidelity against the SavedModel: relative L2 error $loss, cosine $cosine$top1 "
    "— within the bound ($bound). Pareto frontier (size, latency, fidelity): $frontier.$tie$crash_note$reexport_note"
)
SIZE_TEXT = Template("$size MB instead of $base_size MB ($size_pct% smaller)")
SPEED_FASTER = Template("; $ms ms vs $base_ms ms median per request (${speedup}x faster)")
SPEED_SLOWER = Template("; but ${speedup}x the float32 speed on this host ($ms vs $base_ms ms): slower, measured")
SPEED_SAME = Template("; latency $ms ms vs $base_ms ms, no significant difference")
TIED = Template(
    " Tied within noise with $others (benefit intervals overlap: $points points at the low end); "
    "chose the lower measured fidelity loss, then the smaller file."
)
CRASH_NOTE = Template(" The TFLite converter crashed on $crashed; the variant table has the signal and a reproduction.")
REEXPORT_NOTE = (
    " Converted from the loaded model saved again: TFLiteConverter.from_saved_model on the SavedModel as written "
    "drops its weights (see evidence converted_from); the snippet saves it again first."
)
FIDELITY_BOUND_MEANS = Template(
    "relative L2 error <= $bound; for class scores, top-1 agreement >= $agreement judged on its 95 % interval, "
    "flips on near ties not counted (see checks/_compression/agreement.py and each variant's fidelity.top1)"
)
BASELINE_MEANS = "float32 TFLite (size and LiteRT latency); fidelity against the original SavedModel"
CONVERTED_FROM = "the loaded SavedModel saved again (tf.saved_model.save), not the directory as written"
SEVERITY_BY_SAVING = (
    "from what it saves against float32 TFLite: medium for a quarter of the size and at least 1 MiB, or 20 % faster at the "
    "interval's low end; low for 100 KiB or 5 % faster; else info"
)
RECOMMENDATION_MINIMUM = (
    "within the fidelity bound, and a benefit above zero at the low end of its interval (latency counts once the "
    "variant is decided faster than float32 by 10 % of a call and 0.05 ms, timed in ABBA rounds)"
)


def recommendation_rule(variant: str) -> Rule:
    return Rule(
        id=f"quantization/{variant}",
        runtime="litert",
        fix_writer="the converted flatbuffer (model.tflite)",
        severity="low",
        title=f"Ship the {TITLES[variant]} TFLite model: $size_pct% smaller",
        summary=RECOMMENDATION_SUMMARY,
        why="A smaller model loads faster, costs less memory and bandwidth on every replica or device.",
        fix=f"Convert with the {TITLES[variant]} settings and serve the .tflite with LiteRT.",
        example="$code",
        verify=f"Re-run `tfaudit MODEL --checks quantization --inputs real.npz`; compare outputs of model_{variant}.tflite with the SavedModel.",
        effort=Effort("hours", 1.5, "A converter setting and a re-validation of the outputs."),
        risk=Risk("low", "Measured on the audit inputs; re-check on real data."),
        severity_rule=SEVERITY_BY_SAVING,
        minimum=RECOMMENDATION_MINIMUM,
    )


# --- nothing to recommend, nothing converts ------------------------------------------------------------
BEYOND_BOUND = Template("; beyond the bound: $variants")
DID_NOT_RUN = Template("; did not run: $variants")
CONVERSION_NEEDED_SELECT = "needed SELECT_TF_OPS and could not be measured"
CONVERSION_FAILED = "failed"
SEQUENCE_NOTE = (
    " Variable-length recurrent layers need TensorList ops; a fixed sequence length (padding) lets the converter fuse them "
    "into TFLite's LSTM."
)
CRASHED_IN_CONVERTER = "the TFLite converter"
CRASHED_IN_LITERT = "the LiteRT interpreter running the converted float32 model"
CRASH_TRIGGER = Template("Likely trigger: $suspects — $why.")
CRASH_NO_TRIGGER = "No variable of unknown shape explains it; the snippet reproduces it."
NOT_CONVERTIBLE_EFFORT = "Export a serving signature without the state (or with a fixed-shape buffer), then convert."

# The same finding when TFLite crashes: another title, fix and reason to care (severity low, not info).
NOT_CONVERTIBLE_CRASH = Rule(
    id="quantization/not-convertible",
    kind="fact",
    severity="low",
    title="TFLite crashes on this model ($signal in $stage)",
    summary=(
        "The process running $what died with $signal, so no TFLite variant was measured (caught in a separate process: "
        "the rest of the audit is unaffected). $trigger"
    ),
    why="A serving runtime that segfaults takes every request in flight with it.",
    fix=(
        "Keep state out of the converted signature (take it as an input and return it as an output), or give the state a "
        "fixed shape. The snippet reproduces the crash."
    ),
    example="$code",
    effort=Effort("hours", 4.0, NOT_CONVERTIBLE_EFFORT),
    severity_rule="low: a crash of the converter or of LiteRT, caught in its own process",
)

# --- float32 does not reproduce the SavedModel ----------------------------------------------------------
WEIGHTS_LOST = " (its weights are lost)"
LITERT_CANNOT_RUN = Template("LiteRT cannot run it: $error")
MISMATCH_MEASURED = Template("relative L2 error $loss against the bound $bound$cosine$top1")
COSINE = Template(", cosine $cosine")
TOP1_AGREEMENT = Template(", top-1 agreement $agreement")
NON_FINITE_LOSS = "inf (NaN or infinite outputs)"
FLATBUFFER_SIZE = Template("The flatbuffer is $kib KiB against $saved_mb MB for the SavedModel")
VARIABLES_SIZE = Template(" ($variables_mb MB of variables)")
WEIGHTS_NOT_IN_IT = ": the weights are not in it"
READ_VARIABLE_KEPT = Template(" — it keeps $reads variable read(s) as READ_VARIABLE ops with no values to read")
DIAGNOSIS = Template(" Why: $why")
CALIBRATION_FAILS_TOO = Template(" The same cause makes $variants fail in calibration (READ_VARIABLE).")
CALIBRATION_FAILURES_WHY = (
    "the calibrator runs the converted graph, whose variables hold no values (same cause as the float32 mismatch)"
)
REEXPORT_FAILED = Template(" Saving the loaded model again (the automatic fix) failed: $error.")
REEXPORT_DID_NOT_HELP = " It was converted from the loaded model saved again (the automatic fix), which did not help."
RETRY_DID_NOT_HELP = Template(" The loaded model saved again and converted does not reproduce it either ($outcome).")
RETRY_LOSS = Template("relative L2 error $loss")
NOT_MEASURED = "not measured"

# --- full int8 beyond the bound ---------------------------------------------------------------------------
DEBUGGER_ERROR = Template(" $error.")
WORST_LAYERS = Template(" $lead: $layers.")
CULPRITS_STAND_OUT = "Worst layers by rmse/scale (healthy ≈ 0.29)"
NO_CULPRIT = "No layer stands out (all near the healthy 0.29); the worst by rmse/scale"
SELECTIVE_RECOVERS = Template(
    " Keeping them in float gives relative L2 error $loss ($recovered of the error recovered) for $size_cost KiB "
    "($selective_mb MB vs $int8_mb MB full int8, $float32_mb MB float32)$verdict"
)
SELECTIVE_WITHIN = " — within the bound."
SELECTIVE_BEYOND = " — still beyond the bound."
SELECTIVE_DID_NOT_RUN = Template(" The selective variant did not run: $error.")
SYNTHETIC_CALIBRATION = " Calibration used synthetic inputs: real rows (--inputs) often calibrate activation ranges much better."

# --- float64 ----------------------------------------------------------------------------------------------
FLOAT64_WEIGHTS = "weights"
FLOAT64_TENSORS = "signature tensors"
FLOAT64_SIGNATURE_TENSORS = Template("; float64 signature tensors: $tensors")
FLOAT64_MEASURED = Template(" Measured: $float64_ms ms per request in float64 vs $float32_ms ms with the same graph in float32 ($verdict).")
FLOAT64_LATENCY_REASON = Template(" Latency: $reason.")
FLOAT64_NOT_MEASURABLE = Template("not measurable: a float32 copy of the graph could not be built ($error)")
FLOAT32_MINIMUM = PracticalMinimum(0.10, why="10 % of a call, the least latency saving worth claiming beside the halved bytes")
FLOAT32_FASTER = "float32 is faster"
FLOAT32_SLOWER = "float32 is slower"
NO_DIFFERENCE_WORTH_CLAIMING = Template("no difference past $minimum % of a call")
UNDECIDED = "not decided within the budget's time, so no claim"
TWIN_METHOD = (
    "the serving graph frozen (variables as constants), timed as is and with every float64 re-typed to float32, in ABBA rounds until "
    "decided (see How comparisons decide)"
)
SIZE_PCT_OF_SAVEDMODEL = "the SavedModel on disk"
COUNTED = "the flatbuffers' bytes on disk"
FLOAT64_COUNTED = "the float64 variables' bytes (float32 stores half of them: a projection)"


RULES = catalogue(
    *(recommendation_rule(variant) for variant in ("float16", "dynamic-range-int8", "full-int8", "int16x8", SELECTIVE)),
    Rule(
        id="quantization/no-better-variant",
        kind="fact",
        severity="info",
        title="No TFLite variant is worth switching to",
        summary="No quantized variant saved size or time within the fidelity bound on this host$beyond$failed.$crash_note$reexport_note",
        why="",
        fix="Keep the float model; see the variant table for the measured alternatives.",
        effort=Effort("minutes", 0.1, "Nothing to do."),
        severity_rule="info: a measurement, nothing to fix",
    ),
    Rule(
        id="quantization/not-convertible",
        kind="fact",
        severity="info",
        title="The model does not run as TFLite on the built-in ops",
        summary=(
            "The float32 conversion $outcome: $reason. Without a float32 TFLite model there is no baseline for the quantized "
            "variants (their reasons are in the evidence).$sequence_note"
        ),
        why="",
        fix=(
            "Serve the SavedModel as it is, or make the graph TFLite-friendly (fixed shapes, builtin ops); SELECT_TF_OPS needs "
            "the Flex delegate in the runtime."
        ),
        example="$code",
        effort=Effort("hours", 4.0, "Replace or remove the unsupported ops, or ship the Flex delegate."),
        severity_rule="info when the conversion fails or needs the Flex delegate; low when TFLite crashes (see NOT_CONVERTIBLE_CRASH)",
    ),
    Rule(
        id="quantization/float32-mismatch",
        kind="fact",
        severity="medium",
        title="The float32 TFLite conversion does not reproduce the model$weights_lost",
        summary=(
            "Converted with TFLiteConverter.from_saved_model, the float32 TFLite model does not reproduce the SavedModel: "
            "$measured. $size.$diagnosis$calibration$reexport Every variant converted the same way inherits the error, so none "
            "is compared or recommended: a .tflite shipped from this conversion would silently serve wrong outputs."
        ),
        why="A TFLite model that converts without an error but computes something else reaches production unnoticed.",
        fix=(
            "Convert the serving function with the loaded object as its trackable (the converter then freezes the variables it "
            "captures), or export the model so its graph restores the variables the signature reads: a Keras 3 model with "
            "model.export(), not tracked inside a tf.Module; or save the loaded model again. Check the .tflite's outputs against "
            "the SavedModel before shipping it."
        ),
        example="$code",
        verify="Re-run `tfaudit $path --checks quantization`: the float32 variant's fidelity should be within the bound.",
        effort=Effort("hours", 1.0, "Export so the converter freezes the variables, then convert and compare the outputs again."),
        risk=Risk("high", "The converted model's outputs are wrong; measured against the SavedModel on the audit inputs."),
        severity_rule=(
            "high when the outputs are unrelated (relative L2 ≥ 0.5, cosine < 0.9, non-finite, or LiteRT cannot run it); "
            "else medium"
        ),
        minimum="the float32 flatbuffer's outputs beyond the fidelity bound, or resource-variable ops LiteRT cannot read",
    ),
    Rule(
        id="quantization/full-int8-fidelity",
        fix_writer="the selectively quantized flatbuffer (model.tflite)",
        severity="low",
        title="Full-integer int8 loses fidelity",
        summary=(
            "Full-integer int8 changes the outputs beyond the bound: relative L2 error $loss (bound $bound), max abs error "
            "$max_abs$top1.$debugger$synthetic"
        ),
        why=(
            "Full-integer int8 is what integer-only accelerators (Edge TPU, many NPUs and DSPs) need; its error comes from a "
            "few layers with wide activation ranges."
        ),
        fix=(
            "Calibrate on real inputs; keep the named layers in float (selective quantization); if int8 is a must, use "
            "quantization-aware training (tfmot.quantization.keras.quantize_model on a tf_keras model)."
        ),
        example="$code",
        effort=Effort(
            "days", 24.0, "Selective quantization is a converter change (hours); recovering the rest needs quantization-aware training (days)."
        ),
        risk=Risk("high", "Measured output error beyond the bound."),
        severity_rule="low: full int8 is one option among the variants; its savings are the selective variant's, when that is within the bound",
        minimum="full int8's fidelity beyond the bound (max_fidelity_loss)",
    ),
    Rule(
        id="quantization/float64",
        severity="low",
        title="The model keeps float64 $what: twice the bytes of float32",
        summary=(
            "$count float64 variable(s), $parameters parameters = $nbytes bytes ($half bytes as float32)$tensors. TFLite has no "
            "float64 kernels for most ops, and float64 math runs at half the SIMD width at best.$latency"
        ),
        why="float64 doubles weight memory and bandwidth and blocks TFLite conversion and most accelerators.",
        fix="Build and export the model in float32: cast its variables, and declare float32 TensorSpecs in the serving signature.",
        example="$code",
        effort=Effort("hours", 2.0, "Cast the weights and the signature to float32 and re-export."),
        risk=Risk("low", "float32 keeps ~7 significant digits; check outputs that need more."),
        severity_rule="medium for at least 1 MiB of float64 variables, else low",
        minimum="any float64 variable or signature tensor; a latency saving only when at least 10 % at the interval's low end",
    ),
)

# --- code examples (filled by snippets.py with this model's path, signature and inputs) ------------------
RESAVED_HEAD = Template(
    "import tensorflow as tf\n\n"
    'loaded = tf.saved_model.load("$path")\n'
    "# Saved again, the signature reads the variables the restore op restores: converted as written, the weights are lost.\n"
    'tf.saved_model.save(loaded, "resaved_saved_model", signatures={"$signature": loaded.signatures["$signature"]})\n'
    'converter = tf.lite.TFLiteConverter.from_saved_model("resaved_saved_model", signature_keys=["$signature"])\n'
)
KERAS_HEAD = Template(
    "import keras\nimport tensorflow as tf\n\n"
    'keras.saving.load_model("$path").export("exported_saved_model")\n'
    'converter = tf.lite.TFLiteConverter.from_saved_model("exported_saved_model", signature_keys=["serving_default"])\n'
)
SAVEDMODEL_HEAD = Template(
    "import tensorflow as tf\n\n"
    'converter = tf.lite.TFLiteConverter.from_saved_model("$path", signature_keys=["$signature"])\n'
)
VARIANT_LINES = {
    "float32": [],
    "float16": ["converter.optimizations = [tf.lite.Optimize.DEFAULT]", "converter.target_spec.supported_types = [tf.float16]"],
    "dynamic-range-int8": ["converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, no data needed"],
    "full-int8": [
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]",
        "converter.representative_dataset = representative_dataset",
        "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        "# inputs and outputs stay float32; set converter.inference_input_type = tf.int8 for an all-int8 graph",
    ],
    "int16x8": [
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]",
        "converter.representative_dataset = representative_dataset",
        "converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]",
    ],
}
SELECT_OPS_LINES = [
    "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]  # needs the Flex delegate at run time",
    "converter._experimental_lower_tensor_list_ops = False",
]
SELECTIVE_CONVERSION = Template(
    "debug_options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[\n"
    "$denied,\n    ])  # these layers stay float\n"
    "debugger = tf.lite.experimental.QuantizationDebugger(\n"
    "    converter=converter, debug_options=debug_options,\n"
    "    debug_dataset=lambda: ([row[name] for name in sorted(row)] for row in representative_dataset()))\n"
    "tflite_model = debugger.get_nondebug_quantized_model()\n"
)
CONVERT = "tflite_model = converter.convert()"
WRITE_FLATBUFFER = Template('open("model_$variant.tflite", "wb").write(tflite_model)')
CONVERTER_DIES = Template("tflite_model = converter.convert()  # the process dies with $signal")
LITERT_DIES = Template(
    "import numpy as np\n$code\n\nfrom ai_edge_litert.interpreter import Interpreter\n\n"
    'runner = Interpreter(model_path="model_float32.tflite").get_signature_runner("$signature")\n'
    "runner($feed)  # the process dies with $signal"
)
FLOAT32_FIX = Template(
    "import numpy as np\nimport tensorflow as tf\nfrom ai_edge_litert.interpreter import Interpreter\n\n"
    'loaded = tf.saved_model.load("$path")\n'
    'serve = loaded.signatures["$signature"]\n'
    "# The loaded object keeps the variables alive; the converter freezes the ones the function captures.\n"
    "converter = tf.lite.TFLiteConverter.from_concrete_functions([serve], loaded)\n"
    "tflite_model = converter.convert()\n"
    "# Or fix the export itself: keras_model.export(path) for a Keras 3 model instead of tracking it in a tf.Module,\n"
    '# or tf.saved_model.save(loaded, "resaved_saved_model", signatures={"$signature": serve}) and from_saved_model on that.\n\n'
    "# Always compare before shipping:\n"
    "expected = serve($feed)\n"
    "runner = Interpreter(model_content=tflite_model).get_signature_runner()\n"
    "got = runner(**{k: v.numpy() for k, v in dict($feed).items()})\n"
    "for name in expected:\n"
    "    print(name, np.linalg.norm(got[name] - expected[name].numpy()) / np.linalg.norm(expected[name].numpy()))  # ~1e-6\n"
)
FLOAT64_FIX = Template(
    "import tensorflow as tf\n\n"
    'model = tf.saved_model.load("$path")\n'
    "# Keras: keras.mixed_precision.set_dtype_policy('float32') (or drop tf.keras.backend.set_floatx('float64')) and rebuild.\n"
    "# tf.Module: create the variables as float32, e.g. tf.Variable(tf.cast(v, tf.float32)) for each float64 variable.\n"
    "@tf.function(input_signature=[$specs])\n"
    "def serve($names):\n"
    "    ...  # the same computation on float32 tensors\n"
    'tf.saved_model.save(module_in_float32, "model_float32", signatures={"serving_default": serve})'
)

# --- what gather writes into the variant table -------------------------------------------------------------
NOT_ATTEMPTED = "not attempted: TFLite crashed on the float32 model of the same graph"
REEXPORT_TRIED = "the loaded model saved again with tf.saved_model.save, then converted"
REEXPORTED_NOTE = "converted from the loaded model saved again: converted as written, it did not reproduce the SavedModel"
REEXPORT_REPRODUCES = (
    "the float32 conversion of the SavedModel as written did not reproduce its outputs; the loaded model saved again does"
)

# --- what --fix-dir wrote -------------------------------------------------------------------------------------
ARTIFACT_RECOMMENDED = Template("the $variant TFLite model (model.tflite)")
ARTIFACT_SELECTIVE = "the int8 TFLite model with the layers the QuantizationDebugger named kept in float (model.tflite)"
