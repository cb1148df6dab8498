"""Magnitude pruning of the loaded model's kernels, in place, and putting them back (in the worker; TensorFlow)."""
from __future__ import annotations

from typing import Any

import numpy as np

from tfaudit.api import one_line

from .._compression import attribute_paths, serving_variables, unknown_shapes
from .sweep import TWO_FOUR

METHOD_TFMOT = "tfmot prune_low_magnitude (ConstantSparsity, masks applied once) + strip_pruning"
METHOD_DIRECT = "direct magnitude pruning of the variables (per tensor, smallest |w| set to zero)"
MIN_KERNEL_ELEMENTS = 16  # tiny tensors are not worth a mask


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """True where a weight survives: all but the ``sparsity`` fraction with the smallest magnitude."""
    flat = np.abs(values).ravel()
    drop = int(round(sparsity * flat.size))
    if drop <= 0:
        return np.ones(values.shape, dtype=bool)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argpartition(flat, drop - 1)[:drop]] = False
    return keep.reshape(values.shape)


class Pruner:
    """Prunes the loaded model's kernels in place and puts them back.

    Kernels are the float variables of rank >= 2 the serving signature reads; those whose shape is
    only known at run time are skipped and named. tfmot prunes tf_keras models (so the numbers
    match what the user would run, 2:4 included); every other model is pruned directly.
    """

    def __init__(self, ctx):
        import tensorflow as tf

        variables = serving_variables(ctx)
        unknown = unknown_shapes(variables)
        names = attribute_paths(ctx.model.obj) if unknown else {}
        self.skipped = [f"{names.get(id(v), v.name)} {dims}: shape not known until run time" for v, dims in unknown]
        known = [v for v in variables if all(v is not u for u, _ in unknown)]
        self.kernels = [
            v for v in known
            if tf.as_dtype(v.dtype).is_floating and len(v.shape) >= 2 and int(np.prod(v.shape)) >= MIN_KERNEL_ELEMENTS
        ]
        self.originals = [v.numpy().copy() for v in self.kernels]
        # The rest (biases, and state a serving call may change): put back before every fidelity run.
        self.state = [(v, v.numpy().copy()) for v in variables if all(v is not k for k in self.kernels)]
        self.method, self.method_note = METHOD_DIRECT, ""
        self.keras = None
        if ctx.model.format == "tf_keras_saved_model":
            try:
                import tensorflow_model_optimization  # noqa: F401

                self.keras = ctx.model.keras_model()
                self.keras_weights = self.keras.get_weights()
                self.method = METHOD_TFMOT
            except Exception as exc:  # no tfmot, or the tf_keras model does not load
                self.method_note = f"tfmot not usable ({one_line(exc)}); pruned the variables directly"

    @property
    def parameters(self) -> int:
        return int(sum(v.size for v in self.originals))

    def summary(self) -> dict[str, Any]:
        """How the kernels were pruned (the method, which may have fallen back to direct pruning), and what was not."""
        return {
            "method": self.method, "method_note": self.method_note, "skipped_tensors": self.skipped,
            "pruned_tensors": len(self.kernels), "pruned_parameters": self.parameters,
        }

    def apply(self, sparsity: float | str) -> dict[str, Any]:
        """Prune to ``sparsity`` (a fraction, or "2:4"); returns the achieved sparsity."""
        pruned = None
        if self.method == METHOD_TFMOT:
            try:
                pruned = self.tfmot_values(sparsity)
            except Exception as exc:  # a layer tfmot cannot wrap
                self.method, self.method_note = METHOD_DIRECT, f"tfmot failed ({one_line(exc)}); pruned the variables directly"
        if pruned is None:
            if isinstance(sparsity, str):
                raise ValueError("2:4 pruning is only measured through tfmot")
            pruned = [np.where(magnitude_mask(v, sparsity), v, 0).astype(v.dtype) for v in self.originals]
        for variable, value in zip(self.kernels, pruned):
            variable.assign(value)
        zeros = sum(int(np.sum(v == 0)) for v in pruned)
        return {"achieved_sparsity": round(zeros / max(1, self.parameters), 4), "pruned_parameters": self.parameters}

    def restore(self) -> None:
        for variable, value in zip(self.kernels, self.originals):
            variable.assign(value)

    def reset_state(self) -> None:
        """Every other variable as it was before the reference run (a stateful model's state, say)."""
        for variable, value in self.state:
            variable.assign(value)

    def tfmot_values(self, sparsity: float | str) -> list[np.ndarray]:
        """Kernel values after tfmot's one-shot pruning, matched to the serving variables by name."""
        import tensorflow_model_optimization as tfmot
        from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

        prune = tfmot.sparsity.keras
        self.keras.set_weights(self.keras_weights)  # prune_low_magnitude wraps (and then masks) these very layers
        if sparsity == TWO_FOUR:
            wrapped = prune.prune_low_magnitude(self.keras, sparsity_m_by_n=(2, 4))
        else:
            schedule = prune.ConstantSparsity(float(sparsity), begin_step=0, frequency=1)
            wrapped = prune.prune_low_magnitude(self.keras, pruning_schedule=schedule)
        for layer in wrapped.layers:
            if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
                layer.pruning_step.assign(1)  # what UpdatePruningStep does before the first batch
                layer.pruning_obj.conditional_mask_update()
                layer.pruning_obj.weight_mask_op()
        stripped = prune.strip_pruning(wrapped)
        by_name = {w.name: w.numpy() for w in stripped.weights}
        self.keras.set_weights(self.keras_weights)
        values = []
        for variable, original in zip(self.kernels, self.originals):
            value = by_name.get(variable.name)
            if value is None or value.shape != original.shape:
                raise ValueError(f"no tf_keras weight matches {variable.name}")
            values.append(value)
        return values
