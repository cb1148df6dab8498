"""A corpus of odd models, the kinds users really have, each built with random weights.

``build_<name>(path)`` writes one model under ``path`` and returns the path to audit. Every
built-in check must end passed, findings or skipped (with a reason) on each of them — never
errored (tests/test_corpus.py). ``CORPUS`` lists them; ``NEEDS_INPUTS`` the ones whose
inputs cannot be synthesised, with the samples to pass as ``--inputs``; ``TRUSTED`` the ones refused
without ``--trust-model``.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

VOCABULARY = ["the", "model", "serves", "fast", "slow", "tensor", "graph", "audit"]


def _variable(shape, seed):
    return tf.Variable(np.random.default_rng(seed).standard_normal(shape).astype("float32"))


def _vocabulary_file(path: str, name: str) -> str:
    """The vocabulary beside the model (the SavedModel copies it into its assets)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    vocabulary = os.path.join(directory, name)
    with open(vocabulary, "w") as f:
        f.write("\n".join(VOCABULARY) + "\n")
    return vocabulary


def _save(module, path, **signatures):
    tf.saved_model.save(module, path, signatures=signatures or {"serving_default": module.serve})
    return path


def build_bert_classifier(path: str) -> str:
    """keras-hub BertBackbone (2 layers, 300 ids, 2 segments, 64 positions) + a 3-class head, exported."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64
    )
    logits = keras.layers.Dense(3, name="logits")(backbone(backbone.input)["pooled_output"])
    keras.Model(backbone.input, logits).export(path, verbose=False)
    return path


class _SegmentIds(tf.Module):
    """Ids into a 2-row table and a 0/1 input (not named as a mask) used only as a Select condition."""

    def __init__(self):
        super().__init__()
        self.segments = _variable([2, 4], seed=1)
        self.tokens = _variable([50, 4], seed=2)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="ids"),
            tf.TensorSpec([None, None], tf.int32, name="kinds"),
            tf.TensorSpec([None, None], tf.int32, name="keep"),
        ]
    )
    def serve(self, ids, kinds, keep):
        embedded = tf.gather(self.tokens, ids) + tf.gather(self.segments, kinds)
        kept = tf.where(tf.cast(keep, tf.bool)[..., None], embedded, tf.zeros_like(embedded))
        return {"pooled": tf.reduce_sum(kept, axis=1)}


def build_small_table_ids(path: str) -> str:
    return _save(_SegmentIds(), path)


class _TextClassifier(tf.Module):
    """Whitespace tokenisation with TF Text, ids from a vocabulary asset, mean of embeddings."""

    def __init__(self, vocabulary_file: str):
        super().__init__()
        import tensorflow_text as text

        self.tokenizer = text.WhitespaceTokenizer()
        initializer = tf.lookup.TextFileInitializer(
            vocabulary_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=1)
        self.embedding = _variable([len(VOCABULARY) + 1, 8], seed=3)
        self.head = _variable([8, 2], seed=4)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        tokens = self.tokenizer.tokenize(text)
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        pooled = tf.reduce_mean(tf.ragged.map_flat_values(tf.gather, self.embedding, ids), axis=1)
        return {"scores": tf.matmul(tf.where(tf.math.is_nan(pooled), 0.0, pooled), self.head)}


def build_text_classifier(path: str) -> str:
    """serving_default: text string [None] -> scores float32 [None, 2]; needs tensorflow_text to load."""
    return _save(_TextClassifier(_vocabulary_file(path, "vocabulary.txt")), path)


class _HashTable(tf.Module):
    """String keys to ids through a StaticHashTable initialised from a vocabulary asset."""

    def __init__(self, vocabulary_file: str):
        super().__init__()
        initializer = tf.lookup.TextFileInitializer(
            vocabulary_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=0)
        self.embedding = _variable([len(VOCABULARY), 4], seed=5)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="word")])
    def serve(self, word):
        return {"vector": tf.gather(self.embedding, self.table.lookup(word))}


def build_lookup_table_assets(path: str) -> str:
    return _save(_HashTable(_vocabulary_file(path, "words.txt")), path)


class _History(tf.Module):
    """A state variable of dynamic shape: every request is appended to a history buffer."""

    def __init__(self):
        super().__init__()
        self.history = tf.Variable(tf.zeros([0, 4]), shape=tf.TensorShape([None, 4]), trainable=False)
        self.w = _variable([4, 4], seed=6)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        self.history.assign(tf.concat([self.history[-64:], x], axis=0))
        return {"y": tf.matmul(x, self.w) + tf.reduce_mean(self.history, axis=0)}


def build_dynamic_state(path: str) -> str:
    return _save(_History(), path)


class _Ragged(tf.Module):
    """A ragged batch sent as values + row lengths: only consistent pairs are valid."""

    def __init__(self):
        super().__init__()
        self.w = _variable([3, 2], seed=7)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.float32, name="values"),
            tf.TensorSpec([None], tf.int64, name="row_lengths"),
        ]
    )
    def serve(self, values, row_lengths):
        ragged = tf.RaggedTensor.from_row_lengths(values, row_lengths, validate=True)
        return {"pooled": tf.matmul(tf.reduce_sum(ragged, axis=1), self.w)}


def build_ragged_input(path: str) -> str:
    return _save(_Ragged(), path)


def ragged_input_samples(path: str) -> str:
    """Six values in rows of 1, 2 and 3: what a real client of build_ragged_input sends."""
    np.savez(path, values=np.random.default_rng(0).standard_normal((6, 3)).astype("float32"), row_lengths=np.array([1, 2, 3], dtype=np.int64))
    return path


class _TwoHeads(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = _variable([6, 3], seed=8)

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="features")])
    def serve(self, features):
        return {"scores": tf.nn.softmax(tf.matmul(features, self.w))}

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="features")])
    def embed(self, features):
        return {"embedding": tf.matmul(features, self.w)}


def build_several_signatures(path: str) -> str:
    module = _TwoHeads()
    return _save(module, path, serving_default=module.serve, embed=module.embed)


class _NoVariables(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.nn.softplus(x * 2.0 + 1.0)}


def build_no_variables(path: str) -> str:
    return _save(_NoVariables(), path)


def build_tf_keras_lambda(path: str) -> str:
    """A tf_keras model with a Lambda layer, saved as a tf_keras SavedModel."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.Input(shape=(6,), name="x"),
            tf_keras.layers.Dense(8, activation="relu"),
            tf_keras.layers.Lambda(lambda t: t * tf.sigmoid(t), name="swish"),
            tf_keras.layers.Dense(3),
        ]
    )
    model.save(path, save_format="tf")
    return path


def build_lstm_masking(path: str) -> str:
    """Keras 3: Embedding(mask_zero=True) -> LSTM -> GRU over variable-length ids, exported."""
    import keras

    keras.utils.set_random_seed(0)
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    embedded = keras.layers.Embedding(40, 8, mask_zero=True)(ids)
    sequence = keras.layers.LSTM(8, return_sequences=True)(embedded)
    outputs = keras.layers.Dense(2)(keras.layers.GRU(8)(sequence))
    keras.Model(ids, outputs).export(path, verbose=False)
    return path


class _TfxClassifier(tf.Module):
    """The TFX / Estimator serving shape: serialized tf.Examples in, parsed by a feature spec (dense floats, a string
    through a vocabulary asset, a sparse int), class scores and string labels out."""

    def __init__(self, vocabulary_file: str):
        super().__init__()
        initializer = tf.lookup.TextFileInitializer(
            vocabulary_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self.words = _variable([len(VOCABULARY), 4], seed=11)
        self.clicks = _variable([20, 4], seed=12)
        self.head = _variable([4 + 4 + 4, 3], seed=13)
        self.labels = tf.constant(["low", "mid", "high"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        features = tf.io.parse_example(examples, {
            "age": tf.io.FixedLenFeature([4], tf.float32),
            "city": tf.io.FixedLenFeature([], tf.string),
            "clicks": tf.io.VarLenFeature(tf.int64),
        })
        ids = self.table.lookup(features["city"])
        tf.debugging.assert_non_negative(ids, message="city out of vocabulary")
        clicks = tf.nn.embedding_lookup_sparse(self.clicks, features["clicks"], None, combiner="mean")
        hidden = tf.concat([features["age"], tf.gather(self.words, ids), clicks], axis=1)
        scores = tf.nn.softmax(tf.matmul(hidden, self.head))
        return {"scores": scores, "classes": tf.gather(self.labels, tf.argmax(scores, axis=1))}


def build_tfx_classifier(path: str) -> str:
    """serving_default: examples string [None] (serialized tf.Example) -> scores float32 [None, 3], classes string [None]."""
    return _save(_TfxClassifier(_vocabulary_file(path, "cities.txt")), path)


class _SequenceScorer(tf.Module):
    """tf.SequenceExample in: a context float and a feature list of token ids per step."""

    def __init__(self):
        super().__init__()
        self.tokens = _variable([30, 4], seed=14)
        self.head = _variable([5, 2], seed=15)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sequence_examples")])
    def serve(self, sequence_examples):
        context, lists, _ = tf.io.parse_sequence_example(
            sequence_examples,
            context_features={"score": tf.io.FixedLenFeature([], tf.float32)},
            sequence_features={"tokens": tf.io.FixedLenSequenceFeature([], tf.int64)},
        )
        pooled = tf.reduce_mean(tf.gather(self.tokens, lists["tokens"]), axis=1)
        pooled = tf.where(tf.math.is_nan(pooled), 0.0, pooled)
        return {"y": tf.matmul(tf.concat([pooled, context["score"][:, None]], axis=1), self.head)}


def tfx_request_files(folder: str, rows: int = 16) -> dict[str, str]:
    """The TFX classifier's samples as users hold them: {format: path} for a .tfrecord of tf.Examples, a TF Serving
    REST predict body (b64 bytes) and a classify body, all the same rows."""
    import base64
    import json

    rng = np.random.default_rng(7)
    examples = [{"age": [float(v) for v in rng.standard_normal(4)], "city": VOCABULARY[int(rng.integers(len(VOCABULARY)))],
                 "clicks": [int(v) for v in rng.integers(0, 20, size=int(rng.integers(1, 4)))]} for _ in range(rows)]
    serialized = [tf.train.Example(features=tf.train.Features(feature={
        "age": tf.train.Feature(float_list=tf.train.FloatList(value=e["age"])),
        "city": tf.train.Feature(bytes_list=tf.train.BytesList(value=[e["city"].encode()])),
        "clicks": tf.train.Feature(int64_list=tf.train.Int64List(value=e["clicks"])),
    })).SerializeToString() for e in examples]
    paths = {"tfrecord": os.path.join(folder, "examples.tfrecord"), "predict": os.path.join(folder, "predict.json"),
             "classify": os.path.join(folder, "classify.json")}
    with tf.io.TFRecordWriter(paths["tfrecord"]) as writer:
        for record in serialized:
            writer.write(record)
    with open(paths["predict"], "w") as f:
        json.dump({"signature_name": "serving_default", "instances": [{"b64": base64.b64encode(r).decode()} for r in serialized]}, f)
    with open(paths["classify"], "w") as f:
        json.dump({"examples": examples}, f)
    return paths


def build_sequence_example(path: str) -> str:
    return _save(_SequenceScorer(), path)


class _ImageBytes(tf.Module):
    """The Vertex / TF Serving image pattern: encoded image bytes in, decoded and resized in the graph."""

    def __init__(self, decode):
        super().__init__()
        self.decode = decode
        self.kernel = _variable([3, 3, 3, 4], seed=16)
        self.head = _variable([4, 5], seed=17)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
        def one(data):
            image = tf.image.convert_image_dtype(self.decode(data, channels=3), tf.float32)
            return tf.image.resize(image, [64, 64])

        images = tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)
        features = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(images, self.kernel, 2, "SAME")), axis=[1, 2])
        return {"probabilities": tf.nn.softmax(tf.matmul(features, self.head))}


def build_jpeg_bytes(path: str) -> str:
    """serving_default: image_bytes string [None] (JPEG) -> probabilities float32 [None, 5]."""
    return _save(_ImageBytes(tf.io.decode_jpeg), path)


def build_png_bytes(path: str) -> str:
    """serving_default: image_bytes string [None] (PNG) -> probabilities float32 [None, 5]."""
    return _save(_ImageBytes(tf.io.decode_png), path)


CORPUS = (  # the longest audits first: tests/test_corpus.py runs them side by side
    "bert_classifier",
    "tfx_classifier",
    "jpeg_bytes",
    "lstm_masking",
    "text_classifier",
    "tf_keras_lambda",
    "small_table_ids",
    "lookup_table_assets",
    "dynamic_state",
    "ragged_input",
    "several_signatures",
    "no_variables",
    "sequence_example",
    "png_bytes",
)
NEEDS_INPUTS = {"ragged_input": ragged_input_samples}
TRUSTED = {"tf_keras_lambda"}  # a Lambda saved as Python bytecode


def build_keras_in_module(path: str) -> str:
    """A tf.Module whose tf.function calls a Keras 3 conv net tracked as an attribute (as benchmarks/models.py does).

    Saved so, each Keras variable is in the graph twice: the signature reads one set of handles,
    the restore op assigns another. TFLiteConverter.from_saved_model on the directory as written
    then freezes nothing and the flatbuffer has no weights (READ_VARIABLE ops without values).
    """
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))

    class Wrapper(tf.Module):
        def __init__(self):
            super().__init__()
            self.keep = model  # tracks the Keras variables
            self.serve = tf.function(lambda image: {"scores": model(image, training=False)},
                                     input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")])

    return _save(Wrapper(), path)


def build_tf_keras_mobilenet_fixed_batch(path: str) -> str:
    """tf_keras.applications MobileNetV2 α0.35/96 (random weights) on Input(batch_size=1): a fixed batch, saved by tf_keras."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    image = tf_keras.Input(shape=(96, 96, 3), batch_size=1, name="image")
    model = tf_keras.applications.MobileNetV2(alpha=0.35, input_tensor=image, weights=None, classifier_activation=None)
    model.save(path, save_format="tf")
    return path
