"""Input pipelines as users write them, for ``tfaudit data`` (built from generated data; nothing downloaded)."""
import time

import numpy as np
import tensorflow as tf


def wait_on_io(x):
    time.sleep(0.002)  # a read that waits: the GIL is released, so parallel calls overlap
    return x * 2


def sequential_io_map(n=100_000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.py_function(wait_on_io, [x], tf.int64))  # TensorFlow keeps py_function sequential
    dataset = dataset.batch(8)
    return dataset


def well_tuned(n=1_000_000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32) * 2.0, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(256)
    return dataset.prefetch(tf.data.AUTOTUNE)


def endless(scale=1.0):
    return tf.data.Dataset.range(100).repeat().map(lambda x: tf.cast(x, tf.float32) * scale, num_parallel_calls=tf.data.AUTOTUNE)


def raises():
    raise RuntimeError("the bucket is not reachable")


def not_a_dataset():
    return [1, 2, 3]


def empty():
    return tf.data.Dataset.range(0)


def source_only(n=1_000_000):
    return tf.data.Dataset.range(n)


def shuffled_images(n=100_000, side=64, buffer=1000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda i: tf.random.stateless_uniform([side, side, 3], seed=tf.stack([i, 0])),  # decoded images
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.shuffle(buffer_size=buffer)
    return dataset.batch(32).prefetch(tf.data.AUTOTUNE)


def without_prefetch(n=1_000_000, batch=6):
    """Batches that take a few ms to make, with what TensorFlow runs ahead of the consumer by itself turned off (the injected
    prefetch, parallel batching, and the fused map-and-batch, which runs in a thread of its own): the model waits for each."""
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.py_function(wait_on_io, [x], tf.int64))
    dataset = dataset.batch(batch)
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.parallel_batch = False
    options.experimental_optimization.map_and_batch_fusion = False
    return dataset.with_options(options)


def build_busy_model(path, size=384, repeats=8):
    """A SavedModel taking a batch of int64 ids and doing a few ms of matrix products per call."""
    class Busy(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([size, size], seed=[1, 2]) / size)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
        def serve(self, ids):
            x = tf.tile(tf.cast(ids[:, None], tf.float32), [1, size]) + self.w[:1]
            x = tf.tile(x[:1], [size, 1])
            for _ in range(repeats):
                x = tf.tanh(tf.matmul(x, self.w))
            return {"score": tf.reduce_sum(x) + tf.cast(tf.reduce_sum(ids), tf.float32)}

    module = Busy()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def ready_batches(n=1_000_000, batch=3):
    """Batches of ids that cost next to nothing: any model waits on them for no time at all."""
    return tf.data.Dataset.range(n).batch(batch).prefetch(tf.data.AUTOTUNE)


def chained_math(x):
    """A few ms of small, dependent, stateless steps: one thread's work, which only running elements side by side speeds up."""
    return tf.while_loop(lambda i, v: i < 300, lambda i, v: (i + 1, tf.sin(v) * 1.0001 + 0.001), (0, x))[1]


def without_map_parallelization(n=1_000_000):
    dataset = tf.data.Dataset.range(n).map(lambda x: tf.fill([64], tf.cast(x, tf.float32)))
    dataset = dataset.map(chained_math)  # stateless: TensorFlow would run it in parallel, but the options below say no
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    return dataset.batch(16).with_options(options)


def uneven_wait(x):
    time.sleep(0.012 if int(x) % 6 == 0 else 0.001)  # every sixth element waits long: in order, the rest queue behind it
    return x


def ordered_uneven(n=1_000_000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.py_function(uneven_wait, [x], tf.int64), num_parallel_calls=4)
    return dataset.batch(8)


def write_records(folder, files=3, records=10):
    """TFRecord files of serialized tf.Examples (a float feature and a label)."""
    for f in range(files):
        with tf.io.TFRecordWriter(f"{folder}/part-{f}.tfrecord") as writer:
            for r in range(records):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(r)] * 8)),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[r % 2]))}))
                writer.write(example.SerializeToString())
    return folder


def parse(record):
    return tf.io.parse_single_example(record, {"x": tf.io.FixedLenFeature([8], tf.float32), "label": tf.io.FixedLenFeature([], tf.int64)})


def records(folder):
    files = tf.data.Dataset.list_files(f"{folder}/*.tfrecord", shuffle=False)
    dataset = files.interleave(tf.data.TFRecordDataset, 2)  # cycle_length 2, read one file at a time each
    dataset = dataset.apply(lambda d: d.map(parse))
    return dataset.batch(4)


def decode(record):
    time.sleep(0.002)  # a decode that waits: the same work every epoch
    return record


def decoded_records(folder, augment=False, parallel=False):
    files = tf.data.Dataset.list_files(f"{folder}/*.tfrecord", shuffle=False)
    dataset = files.interleave(tf.data.TFRecordDataset, cycle_length=2, num_parallel_calls=tf.data.AUTOTUNE)
    calls = tf.data.AUTOTUNE if parallel else None
    if augment:  # random, and before the slow stage: a cache after that stage would freeze it
        dataset = dataset.map(lambda r: r + tf.strings.as_string(tf.random.uniform([], maxval=9, dtype=tf.int32)), num_parallel_calls=calls)
    dataset = dataset.map(lambda r: tf.py_function(decode, [r], tf.string), num_parallel_calls=calls)
    dataset = dataset.batch(4)
    return dataset.prefetch(tf.data.AUTOTUNE) if parallel else dataset


def write_blobs(folder, files=4, records=400, size=8192):
    """TFRecord files of random bytes (a few MiB), written and flushed to disk."""
    rng = np.random.default_rng(0)
    for f in range(files):
        with tf.io.TFRecordWriter(f"{folder}/blobs-{f}.tfrecord") as writer:
            for _ in range(records):
                writer.write(rng.bytes(size))
    return folder


_decoded: dict = {}


def remember(record, every_read=False):
    key = bytes(record.numpy()) + (str(len(_decoded)).encode() if every_read else b"")
    _decoded[key] = key[::-1]  # "decoded" once and kept for ever: one more entry with every new record (or every read)
    return _decoded[key]


def remembering_records(folder, every_read=False):
    dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(f"{folder}/blobs-*.tfrecord"))
    dataset = dataset.map(lambda r: tf.py_function(lambda x: remember(x, every_read), [r], tf.string), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def read_once(n=300):
    rows = iter(range(n))  # a stream that can be read once (a queue, a socket)
    return tf.data.Dataset.from_generator(lambda: rows, output_signature=tf.TensorSpec([], tf.int64)).map(lambda x: x * 2)


def write_csv(folder, rows=100):
    with open(f"{folder}/rows.csv", "w") as out:
        out.write("x,label\n" + "".join(f"{r * 0.5},{r % 2}\n" for r in range(rows)))
    return f"{folder}/rows.csv"


def csv_made_by_tf(path):
    """A pipeline TensorFlow's make_csv_dataset builds: every stage made inside the library call."""
    return tf.data.experimental.make_csv_dataset(path, batch_size=8, label_name="label", num_epochs=1, shuffle=False)
