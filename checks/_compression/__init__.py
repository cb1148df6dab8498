"""The library the compression checks (quantization, pruning, serving) share: conversion, LiteRT runs, fidelity, sizes.

- ``agreement``: fidelity against the SavedModel, top-1 statistics and the bound (pure: NumPy only);
- ``variants``: a measured variant, what switching to it saves, the Pareto frontier (pure);
- ``feeds``: the inputs measured on, and their trip to helper processes;
- ``savedmodel``: the SavedModel a converter reads (exports, re-exports, new weights), crash suspects;
- ``conversion``: TFLite conversions in a helper process;
- ``litert``: running flatbuffers with LiteRT in the helper process, and re-measuring --fix-dir artifacts.

NumPy at module top only; TensorFlow and LiteRT are imported inside the functions that run them.
Everything is re-exported here under the names the checks import.
"""
from __future__ import annotations

from typing import Any

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import HelperTimeout as ConversionTimeout
from tfaudit.api import fix_dir, one_line, publish_fix, with_artifact

from .agreement import (
    DEFAULT_MAX_FIDELITY_LOSS,
    MIB,
    NEAR_TIE_FACTOR,
    Z95,
    _classes,
    _float_outputs,
    fidelity,
    mb,
    top1_statistics,
    top1_text,
    top1_verdict,
    wilson,
    within_bound,
)
from .conversion import (
    _LOADED,
    Converted,
    _write,
    calibrate_only,
    configure_variant,
    convert,
    convert_isolated,
    convert_job,
    float32_flatbuffer,
    loaded,
    needs_select_ops,
    preload,
    prepare_conversions,
    quantize_calibrated,
    quiet_converter,
    reuse_loaded_model,
)
from .feeds import (
    CALIBRATION_SAMPLES,
    EVAL_SAMPLES,
    EXTRA_ROWS,
    budget_name,
    calibration_rows,
    eval_feeds,
    input_names,
    input_specs,
    latency_feed,
    max_fidelity_loss,
    more_feeds,
    read_feeds,
    representative_code,
    run_serving,
    write_feeds,
)
from .litert import IN_TURN_SHARE, LiteRT, interpreter_runner, litert_job, remeasure
from .savedmodel import (
    _REEXPORTED,
    _export_cached,
    attribute_paths,
    audit_cache,
    conversion_source,
    crash_evidence,
    crash_suspects,
    export_serving,
    reexport_reason,
    resource_variable_ops,
    scratch_dir,
    serving_variables,
    unknown_shapes,
    unrestored_variables,
    with_new_weights,
)
from .variants import (
    Measured,
    benefit_points,
    pareto_frontier,
    representative_code_for,
    samples_for,
    saving_support,
    savings,
    severity_for,
    shape_text,
    zipped_size,
)

_audit_cache = audit_cache  # the name before the package

def __getattr__(name: str) -> Any:
    """``Helper``, imported when asked for: the helper machinery stays unimported for the judges."""
    if name == "Helper":
        from tfaudit.api import Helper

        return Helper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CALIBRATION_SAMPLES", "DEFAULT_MAX_FIDELITY_LOSS", "EVAL_SAMPLES", "EXTRA_ROWS", "IN_TURN_SHARE",
    "MIB", "NEAR_TIE_FACTOR", "Z95", "ConversionCrashed", "ConversionFailed", "ConversionTimeout", "Converted",
    "LiteRT", "Measured", "attribute_paths", "audit_cache", "benefit_points", "budget_name", "calibrate_only", "calibration_rows",
    "configure_variant", "conversion_source", "convert", "convert_isolated", "convert_job", "crash_evidence", "crash_suspects",
    "eval_feeds", "export_serving", "fidelity", "fix_dir", "float32_flatbuffer", "input_names", "input_specs", "interpreter_runner",
    "latency_feed", "litert_job", "loaded", "max_fidelity_loss", "mb", "more_feeds", "needs_select_ops", "one_line", "pareto_frontier",
    "preload", "prepare_conversions", "publish_fix", "quantize_calibrated", "quiet_converter", "read_feeds", "reexport_reason",
    "remeasure", "representative_code", "representative_code_for", "resource_variable_ops", "reuse_loaded_model", "run_serving",
    "samples_for", "saving_support", "savings", "scratch_dir", "serving_variables", "severity_for", "shape_text", "top1_statistics", "top1_text",
    "top1_verdict", "unknown_shapes", "unrestored_variables", "wilson", "with_artifact", "with_new_weights", "within_bound",
    "write_feeds", "zipped_size", "_LOADED", "_REEXPORTED", "_audit_cache", "_classes", "_export_cached", "_float_outputs", "_write",
]
