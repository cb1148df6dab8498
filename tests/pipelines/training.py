"""A training loop as users write one: a pipeline of (features, label) batches and a train step (Keras 3, GradientTape)."""
import keras
import tensorflow as tf

model = keras.Sequential([keras.Input([64]), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1)])
optimizer = keras.optimizers.SGD(0.01)


@tf.function
def train_step(batch):
    features, labels = batch
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(features, training=True) - labels) ** 2)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss


def examples(n=None, batch=32):
    """(features, label) batches; endless unless ``n`` is given."""
    dataset = tf.data.Dataset.counter() if n is None else tf.data.Dataset.range(n)
    dataset = dataset.map(lambda i: (tf.random.stateless_normal([64], seed=tf.stack([i, 0])), tf.cast(i % 2, tf.float32)[None]),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch).prefetch(tf.data.AUTOTUNE)


def broken_step(batch):
    raise ValueError("labels missing")
