"""The serving check's findings: what each says, why it matters, how to fix and verify it."""
from __future__ import annotations

from tfaudit.api import MIN_PRACTICAL_LATENCY_MS, Effort, PracticalMinimum, Risk, Rule, catalogue

MEDIUM_GAIN_PCT = 50.0
GAIN_SEVERITY = f"low; medium when the saving's interval low end reaches {MEDIUM_GAIN_PCT:g} %"
# serving/cold-start: a cold first request is a finding when every one measured is both (user minimums, not fitted to a model):
COLD_FACTOR = 5.0  # times the warm median: past any percentile a server reports for warm calls, so it shows as a spike
COLD_MIN_MS = 10.0  # and slower by this much: a tenth of a 100 ms online SLO, the least extra wait worth a fix
COLD_MEDIUM_MS = 1000.0  # a median first request of a second: a timeout for most online callers
# serving/xla: jit_compile=True against the plain call, decided in ABBA rounds (tfaudit.api.compare_in_turn)
# serving/batch-size: the serving batch's rows in one call against as many calls of the first batch, timed in ABBA rounds
BATCH_MINIMUM = PracticalMinimum(0.10, why="10 % of the rows' time, the least saving worth a server's batching configuration")
XLA_MINIMUM = PracticalMinimum(0.10, why="10 % of a call, the least speed-up worth a compiler flag and its outputs' risk")
XLA_MEDIUM = PracticalMinimum(1.0, why="XLA at least halves a call")
# serving/threads, serving/precision, serving/onednn and the combined run: a serving process against the defaults', in ABBA turns
SETTING_MINIMUM = PracticalMinimum(0.10, why="10 % of a call, the least gain worth a process setting")
SETTING_HALVES = PracticalMinimum(1.0, why=(
    "the setting halves a call; a thread count must, to be a finding: it takes cores from the host's other work or leaves "
    "them to it, so its gain moves with their load (smaller gains reach the headline's configuration only)"))
# serving/litert-threads: a num_threads against LiteRT's default, decided in ABBA rounds
LITERT_MINIMUM = PracticalMinimum(0.10, absolute_ms=MIN_PRACTICAL_LATENCY_MS, why=(
    f"10 % of a call and at least {MIN_PRACTICAL_LATENCY_MS} ms: a thread count is a one-line change, but below that its cores buy nothing"))
LITERT_HALVES = PracticalMinimum(1.0, why=(
    "the count halves a call; a thread count must, to be a finding, as a process's must (SETTING_HALVES): on MobileNetV2 "
    "at 2 cores, num_threads=2 read 1.40x and 1.46x faster than the default in two audits and 1.22x slower in a third"))
# serving/concurrency: N callers against one caller doing the same calls, decided in ABBA turns
CONCURRENCY_MINIMUM = PracticalMinimum(1.0, why=(
    "twice one caller's rows/s: what a second replica on the same cores gives at best, without raising each call's latency"))


EXAMPLE_LANGUAGE = {"serving/batch-size": "text", "serving/concurrency": "text", "serving/configuration": "text"}  # else python

BATCHING_PARAMETERS = (
    "# batching_parameters.txt  (tensorflow_model_server --enable_batching --batching_parameters_file=batching_parameters.txt)\n"
    "max_batch_size { value: $batch }\n"
    "batch_timeout_micros { value: $timeout_us }   # the $bound ms bound minus batch $batch's $stat of $stat_ms ms\n"
    "num_batch_threads { value: $cores }\n"
    "max_enqueued_batches { value: 100 }\n"
    "$allowed"
    "# allowed_batch_sizes pads each batch to a size measured here (XLA then compiles once per size)\n"
)
ALLOWED_BATCH_SIZE = "allowed_batch_sizes: $batch\n"
BATCH_RISK = "a request may wait up to the batch timeout; p99 at batch $batch was $p99 ms"
CONCURRENCY_RISK = "p99 goes from $base_p99 to $p99 ms"
XLA_RISK = "XLA compiles per input shape: pad batches to a few sizes"
PRECISION_RISK = "outputs moved by relative L2 $relative_l2 against float32"

BEFORE_FIRST_OP = "import tensorflow as tf\n# before the model is loaded or any op runs:\n"
INTRA_LINE = "tf.config.threading.set_intra_op_parallelism_threads($intra)\n"
INTER_LINE = "tf.config.threading.set_inter_op_parallelism_threads($inter)\n"
PRECISION_OPTION = {"bfloat16": "auto_mixed_precision_onednn_bfloat16", "float16": "auto_mixed_precision"}

WARMUP_NOT_WRITTEN = "not written: TF Serving serves SavedModel directories (export the .keras model first)"

HEADLINE_BEST = "best measured configuration: $configuration — $factor× the throughput of the default at p99 ≤ $p99 ms"
HEADLINE_DEFAULTS = "defaults are best here ($device): nothing measured beat batch $batch with TensorFlow's defaults"
HEADLINE_NOT_CONFIRMED = (
    "not confirmed together ($device): $gains each won alone, but $configuration timed in turn with the defaults measured "
    "$factor× [$low–$high]"
)
HEADLINE_NOT_MEASURED = "the best settings measured one by one are in the findings; together they could not be measured ($error)"
CONFIGURATION_GAINS = "Each gain above was measured against the defaults in this run."
CONFIGURATION_NO_GAINS = "No setting measured here beat the defaults by its interval's low end."

WARMUP_CODE = (
    "import os\nimport tensorflow as tf\nfrom tensorflow_serving.apis import predict_pb2, prediction_log_pb2\n\n"
    "os.makedirs(\"MODEL/assets.extra\", exist_ok=True)\n"
    "with tf.io.TFRecordWriter(\"MODEL/assets.extra/tf_serving_warmup_requests\") as writer:\n"
    "    for batch in $batch_list:\n"
    "        inputs = {$inputs}  # one real request of `batch` rows per input\n"
    "        request = predict_pb2.PredictRequest()\n"
    "        request.model_spec.signature_name = \"$signature\"\n"
    "        for name, value in inputs.items():\n"
    "            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))\n"
    "        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))\n"
    "        writer.write(log.SerializeToString())"
)


def setting_rule(kind: str, example: str, minimum: str) -> Rule:
    """serving/threads, serving/precision and serving/onednn: a process setting that beat the defaults."""
    return Rule(
        id=f"serving/{kind}",
        severity="low",
        title="Serve with $setting: $speedup× faster at batch $batch",
        summary="$setting: $saved % [$low–$high] less time per call at batch $batch than TensorFlow's defaults, each in a process of its own, in turns.",
        why="",
        fix="Start the serving process with $setting.",
        example=example,
        effort=Effort("minutes", 0.5, "set before the first op (or a server flag)"),
        risk=Risk("low", "", None),
        severity_rule="low; medium when decided to at least halve a call; dropped when the combined run (in turns with the defaults) does not confirm it",
        minimum=minimum,
    )


RULES = catalogue(
    Rule(
        id="serving/batch-size",
        fix_writer="batching_parameters.txt for TF Serving",
        severity="low",
        title="Batch requests$on: batch $batch serves $factor× the rows of batch 1 at p99 $p99 ms",
        summary=(
            "Batch $batch: $rows rows/s (p99 $p99 ms) against $first_rows rows/s at batch 1 (p99 $first_p99 ms); the knee is batch $knee, "
            "and the bound is $stat ≤ $bound ms ($bound_source)."
        ),
        why="Each call pays a fixed dispatch cost; batching shares it between requests. The saving is per row served.",
        fix="Batch up to $batch requests per call; the timeout below keeps the $stat within $bound ms.",
        example="$parameters",
        verify="Re-run `tfaudit MODEL --checks serving` with your --latency-budget-ms and compare rows/s.",
        effort=Effort("hours", 2, "enable server-side batching (TF Serving --enable_batching) or batch in the client"),
        severity_rule=GAIN_SEVERITY + " (the per-row saving of the serving batch over batch 1)",
        minimum=(
            f"the serving batch's rows in one call decided faster than as many calls of batch 1 by {BATCH_MINIMUM.percent} of their "
            "time (ABBA rounds), at a batch whose bounded statistic (its whole interval) fits the latency bound"
        ),
    ),
    Rule(
        id="serving/concurrency",
        severity="low",
        title="Serve $callers requests at once$on: $factor× the throughput of one at batch $batch",
        summary=(
            "$callers concurrent callers at batch $batch: $rows rows/s, p99 $p99 ms; one caller: $base_rows rows/s, p99 $base_p99 ms "
            "(the most callers whose $stat stays within $bound ms)."
        ),
        why="A single caller leaves cores idle between calls; concurrent calls fill them.",
        fix="Run $callers inferences at once: TF Serving's num_batch_threads, or $callers worker threads calling the model.",
        example="num_batch_threads { value: $callers }",
        effort=Effort("hours", 1, "more batch threads, or more model instances per replica"),
        severity_rule="medium: decided to at least double one caller's rows/s",
        minimum=("decided, in turns with one caller doing the same calls, to serve at least twice its rows/s, at a count whose "
                 "bounded statistic fits the latency bound"),
    ),
    Rule(
        id="serving/xla",
        severity="low",
        title="Compile with XLA$on: $speedup× faster at batch $batch",
        summary=(
            "jit_compile=True: $xla_ms ms against $plain_ms ms per call at batch $batch (×$low–$high); compiling took $compile_ms ms; "
            "outputs within relative L2 $relative_l2."
        ),
        why="",
        fix="Wrap the serving signature in a jit-compiled tf.function (and serve padded batch sizes).",
        example=(
            "serve = tf.saved_model.load(path).signatures[\"$signature\"]\n"
            "fast = tf.function(lambda **inputs: serve(**inputs), jit_compile=True)"
        ),
        effort=Effort("minutes", 0.5, "wrap the serving function; compile once per batch size"),
        severity_rule="low; medium when XLA is decided to at least halve a call",
        minimum=f"decided faster by at least {XLA_MINIMUM.percent} of a call (see How comparisons decide), outputs within --max-fidelity-loss",
    ),
    setting_rule(
        "threads", BEFORE_FIRST_OP + "$intra_line$inter_line"
        "# TF Serving: --tensorflow_intra_op_parallelism=$intra --tensorflow_inter_op_parallelism=$inter",
        "decided, in turns with the defaults' process, to at least halve a call (a thread count answers the host's other load)",
    ),
    setting_rule(
        "precision", BEFORE_FIRST_OP + "tf.config.optimizer.set_experimental_options({\"$option\": True})",
        f"decided, in turns with the defaults' process, faster by at least {SETTING_MINIMUM.percent} of a call; outputs within --max-fidelity-loss",
    ),
    setting_rule(
        "onednn", "export TF_ENABLE_ONEDNN_OPTS=$onednn   # read when TensorFlow is imported",
        f"decided, in turns with the defaults' process, faster by at least {SETTING_MINIMUM.percent} of a call",
    ),
    Rule(
        id="serving/litert-threads",
        runtime="litert",
        applies_if="you serve the TFLite flatbuffer with LiteRT",
        severity="low",
        title="LiteRT with num_threads=$threads: $speedup× faster than its default",
        summary="The float32 TFLite model: $ms ms per request with $threads threads against $default_ms ms with LiteRT's default.",
        why="",
        fix="Create the interpreter with num_threads=$threads.",
        example="from ai_edge_litert.interpreter import Interpreter\ninterpreter = Interpreter(model_path=\"model.tflite\", num_threads=$threads)",
        effort=Effort("minutes", 0.5, "one argument, where the model is served with LiteRT"),
        severity_rule="medium: only a count decided to at least halve a call is a finding",
        minimum=(
            f"decided faster than LiteRT's default by at least {LITERT_MINIMUM.percent} of a call and {LITERT_MINIMUM.absolute_ms:g} ms, "
            "and to halve a call (see How comparisons decide): a thread count's smaller gain moves with the host's other load"
        ),
    ),
    Rule(
        id="serving/cold-start",
        per="replica start",
        severity="low",
        title="Cold start: a new replica's first request takes $first_ms ms (warm: $warm_ms ms); a warm-up file cuts it to $after_ms ms",
        summary=(
            "In $processes fresh processes the first request took $first_low–$first_high ms after a $load_ms ms load; "
            "with the TF Serving warm-up records replayed at load, $after_low–$after_high ms."
        ),
        why="An autoscaled replica's first requests pay graph optimisation and lazy allocation; users see it as timeouts after every scale-up.",
        fix=(
            "Add assets.extra/tf_serving_warmup_requests (PredictionLog records of batch $batches) to the SavedModel; "
            "TF Serving replays them before serving."
        ),
        example=WARMUP_CODE,
        effort=Effort("minutes", 0.5, "ship the warm-up file in the SavedModel"),
        severity_rule=f"low; medium when the median first request takes {COLD_MEDIUM_MS / 1000:g} s or more",
        minimum=(f"the first request at least {COLD_FACTOR:g} × the warm median and {COLD_MIN_MS:g} ms slower; every replayed first "
                 "request faster than every cold one"),
    ),
)

COLD_ORDERED = "first requests without the warm-up file slower than every one with it"
# Not in RULES: the headline is no verdict. It is emitted on every audit the check finishes, whatever was measured.
CONFIGURATION = Rule(
    id="serving/configuration",
    kind="fact",
    severity="info",
    title="$headline",
    summary="$headline. $verdict",
    why="The serving configuration decides most of a deployment's latency and cost; these are this host's measurements.",
    fix="Serve with the configuration above.",
    example="$code",
    effort=Effort("minutes", 0.25, "nothing to change when the defaults are best"),
    severity_rule="info: the headline, always, with every table measured",
)
