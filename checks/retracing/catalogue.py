"""The retracing check's findings: what each says, why it matters, how to fix and verify it.

Besides the rules, the fragments the judge (and ``fix``) put together: sentences that depend on
what was measured, and the table rows of a summary.
"""
from __future__ import annotations

from tfaudit.api import MIN_PRACTICAL_LATENCY_MS, REGRESSION_MINIMUM, Effort, PracticalMinimum, Risk, Rule, catalogue

# --baseline-model: the least slowdown of the new export worth failing a merge for (asv's default --factor)
BASELINE_MODEL_MINIMUM = REGRESSION_MINIMUM  # the same merge gate as --baseline's

# retracing/fixed-batch-dim: 8 requests in one call of the relaxed signature against one call each
BATCHING_MINIMUM = PracticalMinimum(0.10, why="10 % of the requests' time, the least saving worth changing an export for")
RE_EXPORT_MINIMUM = PracticalMinimum(0.10, why="10 % of a call: a re-export that costs less at the old batch size serves the same")
BATCHING_HIGH = PracticalMinimum(1.0, why="batching at least halves the requests' time: a server answers twice as many per core")

# retracing/wrapper-retraces: each replay of the stream through the fixed wrapper against one through the retracing wrapper,
# interleaved (the replays' order reversed every other time); the median share is the severity's measure too
WRAPPER_MINIMUM = PracticalMinimum(0.10, why="10 % of the request stream's time, the least saving worth changing serving code for")

# retracing/predict-in-loop: model.predict() per request against a direct call on the same requests
PREDICT_MINIMUM = PracticalMinimum(0.10, absolute_ms=MIN_PRACTICAL_LATENCY_MS,
                                   why="10 % of a request and 0.05 ms, the least saving worth changing serving code for")

# Severities: what moves a finding up a level, each written once here.
MIB = 1024 * 1024
DUPLICATE_HIGH_BYTES = 10 * MIB  # retraced-before-export: duplicated graph bytes ...
DUPLICATE_HIGH_SHARE = 0.5  # ... or their share of saved_model.pb
FIXED_BATCH_HIGH_OVERHEAD_SHARE = 0.5  # fixed-batch-dim, where batching could not be timed: per-call overhead of a call

RETRACING_WARNING = "triggered tf.function retracing"  # TF's own warning, caught from the tensorflow logger

# retraced-before-export
VARIED_DIM = "`$input` $axis took $values"
AXIS_NUMBER = "axis $axis"
SHARE_OF_PB = " ($share of saved_model.pb)"
LOAD_SHARE = ", about $ms ms of the $load_ms ms load (estimated from the byte share)"
UNSAVED_SHAPE_FAILS = " Calling it with $input axis $axis = $size raised: $error"
PYTHON_ARGS_TOO = " It also takes Python arguments ($names); make them tensors too, or they stay baked in."
LOAD_ROW = "| Load time of these graphs (estimate) | $before ms | $after ms |\n"

# python-argument
BAKED_VALUES = "`$arg` = $values"
UNSAVED_VALUE_FAILS = " Calling it with $arg=$value raised: $error"
LOOP_BODY = "    for _ in tf.range($arg):  # a graph loop: one trace for every value\n        ...\n"
BRANCH_BODY = "    ...  # use tf.cond / tf.where on `$arg` instead of Python if\n"

# fixed-batch-dim, and the batching measured with the signature relaxed in memory
ONE_PER_CALL = "one request per call"
PADDED = "every call padded to exactly $batch rows"
BATCHING_FAILED = " Relaxing the batch dimension here did not work, so the export must change in code: $why."
BATCHING_MEASURED = (
    " With the batch dimension relaxed in memory ($relaxed_as; outputs equal row by row), one call of $rows_total rows took "
    "$once ms against $each ms for $rows calls$outcome"
)
BATCHING_SAVED = ": $saved ms [$low–$high] saved per $rows-row request ($pct % of its time)."
BATCHING_NO_DIFFERENCE = ": no significant difference."
BATCHING_UNDECIDED = ": not decided within the budget ($decision), so no saving is claimed."
OVERHEAD_MEASURED_AS = "a no-op tf.function with the same input_signature, called and materialised the same way"
RELAXED_FROM_KERAS = "traced again from the $keras model"
RELAXED_FROM_GRAPH = "the graph imported again with None as its batch dimension"
PLAN_FAILED = "relaxing the batch dimension failed: $error"
CALL_FAILED = "the relaxed signature fails on $rows rows at once, so the graph depends on the batch size: $error"
OTHER_RESULTS = (
    "the relaxed signature gives other results for $rows rows at once (largest gap $gap of the outputs' scale): "
    "the graph depends on the batch size"
)

# fixed-dims
FIXED_INPUT = "`$name` $shape"

# wrapper-retraces
TITLE_SHAPES = "A plain @tf.function around this model retraces for every new request shape"
TITLE_OPTION = "A @tf.function wrapper retraces for every new Python option value"
CONTRAST = "$what: $traces_before traces per stream against $traces_after, $before before and $after after, $verdict."
FASTER = "$speedup× faster (95% interval), decided past $minimum of the stream's time"
NOT_CLAIMED = "$speedup×, not decided faster past $minimum of the stream's time, so no saving is claimed"
SHAPES_WHAT = "With $varied, a plain `@tf.function` against one with the model's input_signature"
VARIED_BATCHES = "batch sizes $values"
VARIED_LENGTHS = "sequence lengths $values"
UNBOUNDED = "Sequence lengths vary, so real traffic keeps meeting new shapes and the plain wrapper keeps retracing."
WARM_UP_ONCE = (
    "Only the batch size varies, so a long-running process stops retracing once it has seen each size: "
    "a warm-up cost of about $trace_ms per process."
)
OPTION_WHAT = "Passing a per-request option `$option` ($count values) as a Python int against a tensor"
CALLER_ONLY = "The model itself is fine: its serving signature is dynamic; this is about the code that calls it."
CALLER_TOO = "This is about the code that calls the model, apart from the export problems reported above."
PATTERN_ROW = "| $pattern | $traces | $trace_ms | $median ($p10–$p90) | $total |"
PATTERNS = {
    "plain": "plain @tf.function",
    "signature": "@tf.function(input_signature=...)",
    "reduce_retracing": "@tf.function(reduce_retracing=True)",
    "python_scalar": "plain @tf.function, option as Python int",
    "tensor_scalar": "option as a tensor in the input_signature",
}

# predict-in-loop
MODEL_FINE = " The model itself is fine."

# Why the serving probe did not run, and the check's skip message.
UNKNOWN_RANK = "an input has unknown rank, so requests cannot be synthesised"
STRING_INPUTS = (
    "string inputs ($inputs) cannot be synthesised realistically (no vocabulary among the model's assets); pass --inputs FILE.npz"
)
SKIPPED = "the saved functions are fine; serving probe skipped: $reason"

# --fix-dir
FIX_REFUSED = " --fix-dir: not re-exported: $why."
FIX_NOT_PREPARED = "the model could not be prepared for it: $error"
FIX_EXPORT_FAILED = "the re-export failed: $error"
FIX_DOES_NOT_LOAD = "the re-exported model does not load: $error"
FIX_NOT_CHECKED = "the re-exported model could not be checked: $error"
FIX_OTHER_RESULTS = "`$function` re-traced from its graph gives other results (largest gap $gap of the outputs' scale)"
FIX_STILL_FAILS = "`$function` re-traced from its graph still fails on $input axis $axis = $size: $error"
FIX_WHAT = "the model re-exported with $relaxed (saved_model/; $how$kept)"
FIX_RELAXED_BATCH = "`$signature` with `None` as the batch dimension"
FIX_RELAXED_FUNCTION = "`$function` as one function for every size"
FIX_FROM_GRAPHS = "each graph imported again over the same variables"
FIX_KEPT = "; $functions kept as saved"

RULES = catalogue(
    Rule(
        id="retracing/retraced-before-export",
        kind="fact",
        severity="medium",
        title="`$function` was traced $count times before export",
        summary=(
            "The restored function `$function` holds $count concrete functions that differ only in input shape ($dims): "
            "$duplicated duplicated graph$plural, $duplicate_bytes bytes of function bodies$share$load. A restored function "
            "never retraces, so any other shape fails.$failure$python_note\n\n"
            "| `$function` | Before | After (input_signature) |\n|---|---|---|\n| Concrete functions | $count | 1 |\n"
            "| Graph bytes | $total_bytes | $largest_bytes |\n$load_row| Sizes accepted on the varied dims | only the $count saved | any |"
        ),
        why=(
            "Without an input_signature, every new input shape seen before saving traced a new graph, and each graph is "
            "saved, loaded and kept in memory. After export the function cannot retrace: shapes that were not traced "
            "before saving raise `Could not find matching concrete function`."
        ),
        fix=(
            "Give `$function` an `input_signature` with `None` on the dims that varied, so one trace serves every "
            "size, and re-export. Callers of the restored function then accept any size on those dims."
        ),
        example=(
            "$decorator\ndef $function($params):\n    ...  # body unchanged\n\n"
            "# Save once; the restored `$function` then holds one concrete function for every size.\n"
            'tf.saved_model.save(module, "exported_model", signatures=...)'
        ),
        verify=(
            "Re-export, run `tfaudit MODEL --checks retracing`: `$function` holds 1 concrete function, and "
            "`loaded.$function(...)` accepts sizes that were not traced."
        ),
        effort=Effort("minutes", 0.5, "Add an input_signature with None on the varying dims and re-export (seed 002: ~30 min)."),
        severity_rule=(f"medium; high when the duplicated graphs take at least {DUPLICATE_HIGH_BYTES // MIB} MiB or "
                       f"{100 * DUPLICATE_HIGH_SHARE:g} % of saved_model.pb"),
        minimum="two concrete functions of one function that differ only in input shape (a fact of the export)",
    ),
    Rule(
        id="retracing/python-argument",
        kind="fact",
        severity="medium",
        title="`$function` has Python argument$plural baked into its graphs",
        summary=(
            "The restored function `$function` holds $count concrete functions, one per saved value of $values. Each value "
            "is a separate graph ($total_bytes bytes in all, $extra_bytes beyond the largest), and any other value fails "
            "after export.$failure"
        ),
        why=(
            "A Python value is part of a tf.function's cache key: every new value traces (and unrolls) a new graph. "
            "A SavedModel keeps only the values traced before saving; the restored function rejects any other value."
        ),
        fix=(
            "Pass $args as a tensor and replace the Python loop or branch on it with `tf.range`/`tf.while_loop` "
            "(or `tf.cond`), so one graph serves every value."
        ),
        example="$decorator\ndef $function(self, $params):\n$body\n# Call with a tensor: module.$function(..., tf.constant($value))",
        verify="Re-export and re-run the check: `$function` holds 1 concrete function and accepts any value of $names.",
        effort=Effort(
            "hours", 1.5, "Turn the Python argument into a tensor and its Python control flow into tf.range/tf.while_loop (seed 002: 1-2 h)."
        ),
        severity_rule="medium: a fact of the export (Keras' own training/mask arguments are not flagged)",
        minimum="two saved values of one Python argument (a fact of the export)",
    ),
    Rule(
        id="retracing/fixed-batch-dim",
        per="$rows requests",
        fix_writer="the SavedModel re-exported with the batch dimension relaxed",
        severity="medium",
        title="The serving signature fixes the batch size to $batch",
        summary=(
            "`$signature` takes `$first` $shape: $padded, so a server cannot batch requests. One call takes $per_call ms "
            "here, of which about $share% [$share_low–$share_high] is per-call overhead (a no-op function with the same "
            "signature takes $overhead ms). A request of $rows rows costs $rows calls, about $rows_ms ms; batching would "
            "pay that overhead once.$batched"
        ),
        why=(
            "With a fixed batch dimension each request is its own call: the per-call overhead (dispatch, argument "
            "conversion, kernel launch) is paid once per row instead of once per batch, and throughput is capped."
        ),
        fix=(
            "Export the serving signature with `None` as the batch dimension, then let the server batch requests "
            "(TF Serving `--enable_batching`, or your own queue). The computation must not depend on the batch size."
        ),
        example=(
            "# Re-export with a dynamic batch dimension (the graph must not hard-code the batch size,\n"
            "# e.g. in tf.reshape; use tf.shape(x)[0] instead):\n"
            "$decorator\ndef serve($names):\n    return model_fn($names)  # the same computation as before\n\n"
            'tf.saved_model.save(module, "exported_model", signatures={"serving_default": serve})\n\n'
            "# Then batch on the server, e.g. TF Serving: --enable_batching --batching_parameters_file=batching.txt\n"
            "# with max_batch_size { value: 32 } batch_timeout_micros { value: 1000 }"
        ),
        verify="After re-export the check reports no fixed batch, and `serve($first=tf.zeros([$rows, ...]))` works.",
        effort=Effort("hours", 1.0, "Change the input_signature to None on the batch dim, check the graph is batch-polymorphic, re-export."),
        severity_rule=(
            "medium; high when one call of 8 requests with the batch dimension relaxed in memory is decided to take at most "
            "half their 8 calls' time (a server answers twice as many per core); where that could not be measured, when "
            f"the per-call overhead is at least {100 * FIXED_BATCH_HIGH_OVERHEAD_SHARE:g} % of a call (10th percentiles of both)"
        ),
        minimum=f"a saving is claimed once it is decided past {BATCHING_MINIMUM.percent} of the requests' time (see How comparisons decide)",
    ),
    Rule(
        id="retracing/fixed-dims",
        applies_if="these integer inputs are token ids padded to that length",
        kind="advice",
        severity="info",
        title="Integer inputs have fixed lengths",
        summary=(
            "The serving signature fixes the length of integer inputs ($listed). If these are token ids, every request is "
            "padded to that length and pays for the padding."
        ),
        why="Padding every request to the maximum length makes short requests cost as much as long ones.",
        fix="If the length is a padded sequence length, export it as `None` so short requests run short.",
        example="$decorator",
        verify="Time short and long requests after re-export; short ones should be faster.",
        effort=Effort("hours", 1.0, "Relax the dim to None and check the graph handles variable lengths."),
        severity_rule="info: a fact of the signature; whether the inputs are padded token ids is not known",
    ),
    Rule(
        id="retracing/wrapper-retraces",
        per="stream of $requests requests",
        applies_if="your code wraps the model in a tf.function without an input_signature, as the replayed pattern does",
        severity="info",
        title="$title",
        summary=(
            "Replayed $requests requests $runs times through each wrapper users write around `$signature`. $sentences\n\n"
            "| Pattern | Traces | Trace time | Median request (p10–p90) | Stream total |\n|---|---|---|---|---|\n$rows"
        ),
        why=(
            "A `tf.function` without an input_signature traces a new graph for every new input shape and every new "
            "Python argument value; a trace costs far more than a call. With variable batch sizes, sequence lengths "
            "or option values, the traces keep coming."
        ),
        fix=(
            "Wrap the serving function once, at start-up, in a `tf.function` with this model's `input_signature` "
            "(None on the varying dims), and pass per-request options as tensors, so every request reuses one graph."
        ),
        example=(
            'loaded = tf.saved_model.load("$path")\nserve = loaded.signatures["$signature"]\n\n'
            "# Defined once at start-up; one trace serves every request.\n$decorator\ndef predict($names):\n    return $call\n\n"
            "# A per-request option goes in as a tensor, never as a Python value:\n$option_decorator\n"
            "def predict_with_$option($option_names):\n    outputs = $call\n"
            "    ...  # use `$option` through TF ops (tf.range, tf.math.top_k), not Python control flow\n    return outputs\n\n"
            "# predict_with_$option(..., tf.constant(3)) rather than predict_with_$option(..., 3)"
        ),
        verify=(
            "Call `predict.experimental_get_tracing_count()` after serving traffic: it should stay at 1; TF's "
            f"'{RETRACING_WARNING}' warning should not appear in the logs."
        ),
        effort=Effort("minutes", 0.5, "Add the model's input_signature to your wrapper and pass options as tensors (seed 002: ~30 min)."),
        severity_rule=(
            f"low when a fix saves at least {WRAPPER_MINIMUM.percent} of the request stream's time (the median over the replays), else info; "
            "never above low: the wrapper is the caller's code, not the model"
        ),
        minimum=(f"a wrapper that traces more than once per stream; the saved milliseconds are claimed only when the replays decide "
                 f"the fixed wrapper faster past {WRAPPER_MINIMUM.percent} of the stream's time (see How comparisons decide)"),
    ),
    Rule(
        id="retracing/predict-in-loop",
        applies_if="your serving code calls model.predict() per request",
        severity="info",
        title="model.predict() per small request is slower than calling the model",
        summary=(
            "On $count requests of $smallest–$largest rows, `model.predict(x)` took $predict_ms ms per request and "
            "`model(x, training=False)` $direct_ms ms: $speedup× faster (95% interval). predict() builds a data pipeline "
            "on every call; it pays off on large arrays, not per request.$fine"
        ),
        why="`predict()` sets up a data adapter, a loop and callbacks on every call: a fixed cost that dominates small batches.",
        fix=(
            "In the request path call the model directly (or through a `tf.function` with the input_signature); keep "
            "`predict()` for large offline arrays."
        ),
        example=(
            "$decorator\ndef serve($name):\n    return model($name, training=False)\n\n"
            "scores = serve(tf.constant(batch))  # instead of model.predict(batch)"
        ),
        verify="Time the request handler before and after; the per-request latency drops by the measured amount.",
        effort=Effort("minutes", 0.5, "Replace predict() with a direct call in the request path."),
        risk=Risk("none", "Same computation; only the calling convention changes."),
        severity_rule=f"low when the direct call saves at least {PREDICT_MINIMUM.percent} of a request's time (median), else info",
        minimum=(
            f"the direct call decided faster by at least {PREDICT_MINIMUM.percent} of a request and {PREDICT_MINIMUM.absolute_ms:g} ms "
            "(see How comparisons decide); a "
            "report from before the rounds: the saving per request significant (its 95 % interval above zero)"
        ),
    ),
)
