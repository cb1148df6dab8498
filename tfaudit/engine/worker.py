"""The worker process: loads the model, runs one job, writes events to its event pipe.

Started by tfaudit.engine.runner, forked from the zygote or as a fresh interpreter
(``tfaudit.engine.launch`` with JOB_JSON as its argument), with the event pipe's file descriptor
in ``TFAUDIT_EVENT_FD``. Its stdout and stderr go to a log the runner keeps for the error report,
so nothing TensorFlow prints can corrupt the event stream.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

from tfaudit.events import CheckFinished, Event, LoadFailed, ModelLoaded, event_of, to_json

WORKER_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # C++ info/warnings off; Python warnings (retracing) stay
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",  # several workers and the user's jobs can share a GPU
    "OPENBLAS_NUM_THREADS": "1",  # NumPy's only thread before TF's first op: without it no fork is safe
}


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def tensorflow_environment() -> dict[str, Any]:
    import tensorflow as tf

    from tfaudit.engine.resources import host_environment

    environment = host_environment()
    environment["tensorflow"] = tf.__version__
    for module, distribution in (("tf_keras", "tf-keras"), ("keras", "keras")):
        try:  # the installed version, without importing it (tf_keras alone takes ~0.25 s)
            environment[module] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            environment[module] = None
    environment["tf_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return environment


def open_model(job: dict[str, Any], refuse_untrusted: bool = False):
    """Load the model and its input factory, as every job needs them.

    The inventory job probes and tries the inputs (tfaudit.engine.input_probe); check jobs receive
    what it learned in ``input_constraints``. The inventory refuses an untrusted model (``refuse_untrusted``) before
    it runs anything of it; the checks start only after it accepted the model.
    """
    from tfaudit.engine.input_probe import open_inputs
    from tfaudit.engine.model import import_modules, load_model

    imports = job.get("imports") or []
    import_modules(imports)
    model = load_model(job["model"], job.get("signature"), refuse_untrusted=refuse_untrusted, user_modules=tuple(imports))
    return model, open_inputs(model, job.get("inputs"), job.get("input_constraints"))


def open_pipeline(job: dict[str, Any]):
    """``tfaudit data``: the user's pipeline, its factory imported here (by the import rule) and called."""
    from tfaudit.engine.model import import_modules
    from tfaudit.engine.pipeline import attach_model, attach_step, build

    imports = job.get("imports") or []
    import_modules(imports)
    options = job["options"]["pipeline"]
    pipeline = build(options["target"], options["arguments"])
    if options.get("model"):
        attach_model(pipeline, options["model"], options.get("signature"), bool(job["options"].get("trust_model")), tuple(imports))
    if options.get("step"):
        attach_step(pipeline, options["step"])
    return pipeline


def run_pipeline_inventory(job: dict[str, Any], emit: Callable[[Event], None]) -> None:
    from tfaudit.engine.pipeline import PipelineError

    try:
        inventory = open_pipeline(job).inventory()
    except PipelineError as exc:
        emit(LoadFailed(message=str(exc)))
        return
    emit(ModelLoaded(inventory=inventory, environment=tensorflow_environment()))


def run_inventory(job: dict[str, Any], emit: Callable[[Event], None]) -> None:
    from tfaudit.engine.inputs import InputError
    from tfaudit.engine.model import SERVING_DEFAULT, LoadError, export_function

    if (job.get("options") or {}).get("pipeline"):
        run_pipeline_inventory(job, emit)
        return
    trusted = bool((job.get("options") or {}).get("trust_model"))
    try:
        if job.get("function"):
            source = job["model"]
            job = {**job, "signature": SERVING_DEFAULT, "model": export_function(
                source, job["function"], os.path.join(job["scratch_dir"], "function"), not trusted, tuple(job.get("imports") or []))}
        model, inputs = open_model(job, refuse_untrusted=not trusted)
    except (LoadError, InputError) as exc:
        emit(LoadFailed(message=str(exc)))
        return
    baseline = (job.get("options") or {}).get("baseline_model")
    problem = baseline and baseline_model_problem(baseline, model, inputs, trusted, tuple(job.get("imports") or []))
    if problem:
        emit(LoadFailed(message=f"--baseline-model {baseline}: {problem}"))
        return
    inventory = {**model.inventory, "input_constraints": inputs.constraints.to_dict()}
    if job.get("function"):  # reports name the user's model; the checks open what was saved
        inventory["function"] = {"name": job["function"], "saved_as": inventory["path"]}
        inventory["path"] = source
    emit(ModelLoaded(inventory=inventory, environment=tensorflow_environment()))


def baseline_model_problem(path: str, model, inputs, trusted: bool, user_modules: tuple[str, ...]) -> str | None:
    """Why ``--baseline-model`` cannot be timed against ``model``: it does not load with the same signature, or does not
    answer a request made for ``model``'s inputs. None when it can."""
    from tfaudit.engine.model import LoadError, load_model

    try:
        old = load_model(path, model.signature, refuse_untrusted=not trusted, user_modules=user_modules)
    except LoadError as exc:
        return str(exc)
    import tensorflow as tf

    try:
        old.serving_fn()(**{name: tf.constant(value) for name, value in inputs.make(batch=1).items()})
    except Exception as exc:  # noqa: BLE001 - whatever the old export raises on these inputs is the reason
        return f"it cannot be called with this model's inputs ({error_line(exc)})"
    return None


def run_check(job: dict[str, Any], emit: Callable[[Event], None]) -> None:
    from tfaudit.api import Context, Finding, SkipCheck
    from tfaudit.budget import BUDGETS
    from tfaudit.engine.registry import load_target

    check_id = job["check"]
    started = time.monotonic()

    def finish(status: str, error: str = "") -> None:
        emit(CheckFinished(check_id, status, round(time.monotonic() - started, 3), error))

    findings = 0
    try:
        # The check is made before TensorFlow runs anything here: a check may fork a helper process
        # now, which is safe only before the first op (the compression checks' conversion process).
        check = load_target(job["target"])()
        pipeline = open_pipeline(job) if job["options"].get("pipeline") else None
        model, inputs = open_model(job) if pipeline is None else (None, None)
        ctx = Context(
            model=model,  # type: ignore[arg-type]  # None with a pipeline
            inputs=inputs,  # type: ignore[arg-type]
            pipeline=pipeline,
            budget=BUDGETS[job["budget"]],
            options={**job.get("options", {}), "imports": job.get("imports") or []},  # --import, for processes a check starts
            scratch_dir=job.get("scratch_dir"),
        )
        for item in check.run(ctx):
            if isinstance(item, Finding):
                if item.check != check_id:
                    raise ValueError(f"finding {item.id!r} names check {item.check!r}, not {check_id!r}")
                findings += item.severity != "info"  # info only reports what was measured
            emit(event_of(check_id, item))
    except SkipCheck as exc:
        finish("skipped", str(exc))
        return
    except Exception as exc:
        traceback.print_exc()
        finish("errored", error_line(exc))
        return
    finish("findings" if findings else "passed")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    for key, value in WORKER_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from tfaudit.engine.zygote import preload

    preload(job.get("preload") or [])  # what a forked worker inherits: the same modules and memory either way
    stream = os.fdopen(int(os.environ["TFAUDIT_EVENT_FD"]), "w", buffering=1)

    def emit(event: Event) -> None:
        stream.write(to_json(event) + "\n")
        stream.flush()

    {"inventory": run_inventory, "check": run_check}[job["mode"]](job, emit)
    stream.close()
    return 0

