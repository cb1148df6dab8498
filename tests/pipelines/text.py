"""A text classifier's input pipeline as users write it: rows of a CSV, keras-hub's BERT preprocessing (WordPiece), batches."""
import csv

import keras_hub
import numpy as np
import tensorflow as tf

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(200)] + [f"##{i}" for i in range(40)]


def write_csv(folder, rows=2000, seed=0):
    """A CSV of generated sentences (6 to 40 words of a made-up vocabulary) and 3 labels."""
    rng = np.random.default_rng(seed)
    path = f"{folder}/reviews.csv"
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            words = rng.choice(WORDS[:200], size=rng.integers(6, 41))
            writer.writerow([" ".join(words), int(rng.integers(0, 3))])
    return path


def bert_inputs(path, batch=16, sequence_length=64):
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=SPECIAL + WORDS), sequence_length=sequence_length)
    dataset = tf.data.experimental.CsvDataset(path, [tf.string, tf.int32], header=True)
    dataset = dataset.map(lambda text, label: preprocessor(text, label))  # row by row, without num_parallel_calls
    dataset = dataset.map(lambda features, label: ({**features, "padding_mask": tf.cast(features["padding_mask"], tf.int32)}, label))
    return dataset.batch(batch).prefetch(tf.data.AUTOTUNE)
