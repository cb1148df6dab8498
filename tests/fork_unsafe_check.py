"""A third-party check whose module runs a TensorFlow op at import: no process that imported it may fork."""
import tensorflow as tf

from tfaudit.api import Check, CheckMeta, Metric

ANSWER = float(tf.constant(20.0) + 1.0)  # an eager op: TensorFlow's runtime and its thread pools start here


class RunsAnOpAtImport(Check):
    meta = CheckMeta("fake-op-at-import", "Fake check that runs an op at import", "makes its importer unsafe to fork")

    def run(self, ctx):
        yield Metric("answer", ANSWER, "count")
