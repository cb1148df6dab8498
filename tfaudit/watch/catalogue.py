"""tfaudit watch's findings: what each says, why it matters, how to fix and verify it (no TensorFlow).

Besides the rules, the fragments the analysis puts together: sentences and code lines that depend
on what was watched, and the wording of the trace log. A finding's id is its rule's id followed by
what it is about (``watch/shape-varies/<function>``), except ``watch/summary``.
"""
from __future__ import annotations

from tfaudit.api import Effort, PracticalMinimum, Risk, Rule, catalogue

# python-loop: the dispatch its calls pay, which one batched call would not pay again, as a share of the loop's time.
LOOP_MINIMUM = PracticalMinimum(0.10, why="10 % of the loop's time, spent in dispatch one batched call would not pay again")

# Numbers and the trace log
MILLISECONDS = "$ms ms"
MICROSECONDS = "$us µs"
PRICED = "$avoided trace$plural avoided × $per_trace median trace time = $total"
PLURAL = "s"
FIRST_TRACE = "first trace"
FIRST_TRACE_OF_OBJECT = "first trace of a new tf.function object"
CHANGED_SHAPE = "$argument: shape at axis $axis $old → $new"
CHANGED_OBJECT = "$argument: a new $type object"
CHANGED_PYTHON_VALUE = "$argument: Python value $old → $new"
CHANGED_OTHER = "$argument: $kind $old → $new"
LOG_FIRST = "first"  # the summary's trace log
LOG_NEW_OBJECT = "new object"

# shape-varies
VARIED_AXIS = "`$argument` at axis $axis ($values)"
RANK_CHANGED = "the rank of an argument"
SIGNATURE = "@tf.function(input_signature=[\n$entries\n])"
OR_PER_RANK = "\n\n# or, keeping one graph per rank:\n@tf.function(reduce_retracing=True)"
NO_SIGNATURE = "@tf.function(reduce_retracing=True)  # `$parameter` is not a tensor (or a flat dict/list of them): no input_signature fits"
TENSOR_SPEC = "tf.TensorSpec(shape=$shape, dtype=tf.$dtype)"
SPEC_ENTRY = "    $spec,  # $parameter"
DICT_ENTRY = "    {$specs},  # $parameter"  # the keys' quotes become double quotes
LIST_ENTRY = "    [$specs],  # $parameter"
KEYED_SPEC = "$key: $spec"

# dtype-varies
CAST = "$argument = tf.convert_to_tensor($argument, dtype=tf.float32)"

# python-value
TOOK = "`$argument` took $values"
UNROLLED = (
    " The graph grows with the value ($ops ops): a Python loop over `$top` is unrolled into the graph; "
    "iterate with `tf.range` instead."
)
AND_LOOP = ", and loop with `tf.range`"
LOOP_CODE = "\n# inside $name:\nfor i in tf.range($top):  # not range($top)\n    ..."

# object-per-call
SWAP_WEIGHTS = "; for many models of one shape, swap weights into one traced reference model"
REUSE_MODEL = (
    ", outside the request path, and reuse it;\n"
    "# for many models of one architecture keep one reference model and swap weights in (seed 002's cache):\n"
    "reference.set_weights(actual_model.get_weights())\nresult = predict(x)  # traced once for the reference model"
)
REUSE_OBJECT = " and reuse it, or pass the tensors it holds instead of the object"

# predict-in-tf-function
TRACING_FAILED = "tracing it failed: $message."
PREDICT_TRACED_INSIDE = "predict builds a tf.data pipeline and its own tf.function inside the trace."

# summary
EXITED = "; the program exited $status"

RETRACE_VERIFY = "Run `tfaudit watch` again: the function shows 1 trace."

RULES = catalogue(
    Rule(
        id="watch/shape-varies",
        kind="fact",
        severity="medium",
        title="`$name` retraced $avoided× because the shape of $described changed",
        summary=(
            "Each new shape builds a new graph: $traces traces of `$name` (defined at $defined_at), called from $site. "
            "It has no `input_signature`, so every new size is a new trace. Measured: $priced."
        ),
        why="Tracing runs the Python function again and optimises a new graph; TensorFlow warns only after 5 traces in 10 calls and never names the argument.",
        fix="Declare the signature with `None` exactly on the axes that varied (or use `reduce_retracing=True`).",
        example="$decorator\ndef $short(...):\n    ...$alternative",
        verify=RETRACE_VERIFY,
        effort=Effort("minutes", 0.5, "An input_signature with None on the varying axes (seed 002: ~30 minutes)."),
        severity_rule="medium when it retraced about every call (at most 3 calls per trace), low when the retraces are amortised over more calls",
        minimum="3 traces of one tf.function object from your code (one retrace is often deliberate), a tensor's shape or rank changing",
    ),
    Rule(
        id="watch/dtype-varies",
        kind="fact",
        severity="medium",
        title="`$name` retraced because the dtype of $arguments changed ($dtypes)",
        summary="$traces traces of `$name`; a dtype is part of the signature, so float64 NumPy arrays and float32 tensors each get a graph.",
        why="Each dtype is a separate graph.",
        fix="Convert inputs to one dtype before the call.",
        example="$casts",
        verify="Run `tfaudit watch` again: one trace per shape.",
        effort=Effort("minutes", 0.5, "Cast once before the call."),
        minimum="3 traces of one tf.function object from your code, a tensor's dtype changing",
    ),
    Rule(
        id="watch/python-value",
        kind="fact",
        severity="medium",
        title="`$name` retraced $avoided× for new Python values of $arguments",
        summary=(
            "A Python scalar argument is part of the signature: $took, one graph each ($traces traces, called from $site).$unrolled "
            "Measured: $priced."
        ),
        why="Python values are baked into the graph as constants, so each new value is a new trace.",
        fix="Pass $arguments as a tensor (`tf.convert_to_tensor` / `tf.constant` before the call)$loop.",
        example="$top = tf.constant($top)  # a tensor: one graph for every value\n$loop_code",
        verify=RETRACE_VERIFY,
        effort=Effort("hours", 1.5, "Pass tensors (tf.convert_to_tensor) and use TensorFlow control flow (seed 002: 1-2 hours)."),
        minimum=(
            "3 traces of one tf.function object from your code for new Python values, retraced about every call "
            "(at most 3 calls per trace) or 5 distinct values of one argument (fewer, amortised, are a small set of modes)"
        ),
    ),
    Rule(
        id="watch/object-per-call",
        kind="fact",
        severity="medium",
        title="`$name` retraced $avoided× for a new $type object in $arguments each call",
        summary=(
            "An object argument is keyed by identity: $new_objects new $type objects meant $traces traces (called from $site). "
            "Measured: $priced."
        ),
        why="A tf.function holds one graph per distinct object argument, and each costs a trace and memory.",
        fix="Stop creating a $type per call$swap.",
        example="# create the $type once$reuse",
        verify="Run `tfaudit watch` again: one trace.",
        effort=Effort("hours", 6, "A cache of functions and models with weight swapping (seed 002: 4-8 hours)."),
        minimum="3 traces of one tf.function object from your code, a new Python object passed in an argument",
    ),
    Rule(
        id="watch/function-per-call",
        kind="fact",
        severity="medium",
        title="`$name` is a new tf.function $objects× (defined inside a loop or per request)",
        summary=(
            "`$name` (defined at $defined_at) was made into $objects tf.function objects, each traced anew "
            "($traces traces; the call site is $site). A tf.function keeps its graphs per object. Measured: $priced."
        ),
        why="Each new tf.function object starts with an empty trace cache, so nothing is reused.",
        fix="Define `$name` once (module level, or cached by its configuration) and call that object every time.",
        example="@tf.function  # defined once, at module level\ndef $short(...):\n    ...\n\nfor request in requests:\n    $short(request)",
        verify="Run `tfaudit watch` again: one object, one trace.",
        effort=Effort("minutes", 0.5, "Move the definition out of the loop."),
        severity_rule="high from 10 tf.function objects of one definition, else medium",
        minimum="3 tf.function objects made from one definition in your code (not a method: one per instance is by design), 3 traces among them",
    ),
    Rule(
        id="watch/predict-in-tf-function",
        kind="fact",
        severity="high",
        title="`model.predict()` is called inside the tf.function `$outer`",
        summary="`$outer` calls `model.predict()` ($where); $what `predict()` is a batch loop for eager use; inside a graph call the model itself.",
        why="Seed 002 measured the direct call 6.18× faster than predict() (231 → 37 ms).",
        fix="Call the model directly inside the tf.function.",
        example="@tf.function(reduce_retracing=True)\ndef $short(x):\n    return model(x, training=False)  # not model.predict(x)",
        verify="Run `tfaudit watch` again: no predict() under a tf.function.",
        effort=Effort("minutes", 0.5, "Replace predict() by a direct call."),
        minimum="one `model.predict()` traced, or failing to trace, inside a tf.function",
    ),
    Rule(
        id="watch/predict-per-call",
        kind="fact",
        severity="medium",
        title="`model.predict()` called per request at $where: $traces traces in $calls calls",
        summary=(
            "Each `predict()` call at $where builds a tf.data pipeline and traces $functions functions again "
            "($per_call of tracing per call, $total in all). For a batch already in memory call the model directly."
        ),
        why="predict() is built for large datasets: per call it builds an input pipeline, and in a request loop that is the cost.",
        fix="Convert the batch to a tensor once and call one tf.function that calls the model directly.",
        example=(
            "predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)\n"
            "result = predict(tf.convert_to_tensor(batch, dtype=tf.float32))"
        ),
        verify="Run `tfaudit watch` again: no traces per request.",
        effort=Effort("hours", 1.5, "One tf.function around model(x) with tensors converted once (seed 002: 1-2 hours)."),
        severity_rule="high from 10 predict() calls at one call site, else medium",
        minimum="3 predict() calls at one call site, each tracing again, on batches of at most 1,024 rows (the median)",
    ),
    Rule(
        id="watch/python-loop",
        kind="advice",
        applies_if="the loop's runs are independent, so one batched call can do them all",
        severity="low",
        title="`$name` called $calls× back to back from a Python loop at $where ($p50 per call)",
        summary=(
            "A Python loop (Monte-Carlo style) calls `$name` $calls times in $span s, $busy of it inside the calls. "
            "Each call pays tf.function's dispatch, measured here at $dispatch for an empty function ($share of a call): "
            "$loop_share of the loop's time. "
            "Batch the runs into one call, or loop inside the graph with `tf.range` and a `TensorArray`; time both, "
            "as seed 002's in-graph version was slower (0.17×)."
        ),
        why="Each Python-level call crosses into TensorFlow's runtime once; a loop of small calls spends its time in dispatch.",
        fix="Run the loop in one call: add the runs as a batch axis (or tf.range + TensorArray inside the tf.function).",
        example=(
            "@tf.function(reduce_retracing=True)\ndef monte_carlo(x, noise_factor, num_runs):\n"
            "    noisy = x[None] + tf.random.normal(tf.concat([[num_runs], tf.shape(x)], 0), stddev=noise_factor)\n"
            "    return tf.map_fn(lambda xi: model(xi, training=False), noisy)  # or reshape to one batch"
        ),
        verify="Time the loop before and after; `tfaudit watch` shows 1 call instead of many.",
        effort=Effort("hours", 2, "Vectorise the runs over a batch axis, or move the loop into the graph."),
        risk=Risk("medium", "The in-graph loop can be slower; measure before and after (seed 002: 0.17×)."),
        minimum=(
            "100 calls of one tf.function object from your code (not already a retracing finding) whose dispatch (an empty "
            f"tf.function's, per call) adds up to at least {LOOP_MINIMUM.percent} of the loop's span"
        ),
    ),
    Rule(
        id="watch/summary",
        kind="fact",
        severity="info",
        title="$traces traces of $functions functions ($yours of them yours) in $seconds s$exited",
        summary="`$command`: every tf.function trace in the program, where it was defined, what called it and what changed.",
        why="",
        fix="See the other findings.",
        effort=Effort("minutes", 0.1, "Nothing to do: the measurements behind the findings."),
        severity_rule="info: the measurements behind the other findings",
    ),
)
