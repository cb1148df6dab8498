"""``--fix-dir``'s artifacts: TF Serving's batching parameters, and the SavedModel copy with its warm-up requests."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterator

import numpy as np

from tfaudit.api import Finding, Yielded, fix_dir, publish_fix, with_artifact

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def with_fixes(ctx, judged: Iterator[Yielded]) -> Iterator[Yielded]:
    """What the judge decided, the batching finding with its file written when ``--fix-dir`` asks for it."""
    for item in judged:
        if fix_dir(ctx) and isinstance(item, Finding) and item.id.startswith("serving/batch-size"):
            yield batching_file(ctx, item)
        else:
            yield item


def batching_file(ctx, finding: Finding) -> Finding:
    """FIX_DIR/serving/batching_parameters.txt, for `tensorflow_model_server --enable_batching --batching_parameters_file=…`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batching_parameters.txt")
        with open(path, "w", encoding="utf-8") as out:
            out.write(finding.fix.code.rstrip() + "\n")
        folder = publish_fix(ctx, "serving", {"batching_parameters.txt": path})
    return with_artifact(finding, folder, "TF Serving batching parameters (batching_parameters.txt), from this run's batch sweep", finding.fix.code,
                         {}, {"note": "the batch sweep in this run measured this configuration; TF Serving itself is not run here"}, remeasured=False)


def write_warmup_copy(model: str, target: str, signature: str, feeds: list[dict[str, np.ndarray]]) -> str:
    """A copy of the SavedModel with ``assets.extra/tf_serving_warmup_requests`` holding one PredictRequest per feed."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    shutil.copytree(model, target)
    path = os.path.join(target, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for feed in feeds:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "model"
            request.model_spec.signature_name = signature
            for name, value in feed.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
