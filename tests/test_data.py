"""``tfaudit data``: the pipeline built and walked in a worker, its judge (pure), and whole audits through the CLI."""
import json
import os

import pytest

from conftest import run_cli, run_clis
from tfaudit.checks.data.judge import judge, slow_stage, stage_costs
from tfaudit.exit_codes import EXIT_OK, EXIT_USAGE

PIPELINES = os.path.join(os.path.dirname(__file__), "pipelines")
SHAPES = os.path.join(PIPELINES, "shapes.py")
TRAINING = os.path.join(PIPELINES, "training.py")
TEXT = os.path.join(PIPELINES, "text.py")


def line_of(path: str, text: str) -> int:
    with open(path) as source:
        return next(number for number, line in enumerate(source, 1) if text in line)


# --- the judge, from measurements (no TensorFlow) --------------------------------------------------------------------


def stage(index, kind, rates, ratio, where="p.py:1"):
    return {"index": index, "kind": kind, "node": kind, "where": where, "code": f"dataset.{kind}()", "arguments": {},
            "rates": rates, "inputs_per_output": {"value": ratio, "how": ""}}


def measured(stages, candidates=(), stopped_at="take"):
    return {
        "target": "p.py:make", "budget": "quick", "confidence": 0.95, "take": 2000, "take_given": False,
        "first_pass": {"elements": 2000, "empty": False, "exhausted": False, "stopped_at": stopped_at, "first_ms": 12.0,
                       "steady_seconds": 1.0, "wall_seconds": 1.0, "cpu_seconds": 0.5, "element_bytes": 64,
                       "getnext_ms": {"p50": 0.02, "p90": 0.1, "p99": 1.0, "mean": 0.05, "n": 1999, "within_50us": 0.7}},
        "stages": stages, "candidates": list(candidates), "options": {},
    }


SLOW_MAP = [stage(0, "range", [10_000.0] * 5, None), stage(1, "map", [100.0, 101.0, 99.0, 100.0, 100.0], 1.0),
            stage(2, "batch", [6.2, 6.25, 6.3, 6.25, 6.2], 16.0)]


def test_the_slow_stage_is_where_the_time_per_final_element_grows_most():
    costs = stage_costs(SLOW_MAP)
    # Per batch of 16: the source 1.6 ms, the map 160 ms, the batch 160 ms.
    assert [round(c["ms_per_final_element"].value, 1) for c in costs] == [1.6, 160.0, 160.0]
    assert slow_stage(costs) == 1
    found = {f.id: f for f in judge(measured(SLOW_MAP)) if hasattr(f, "id")}
    slow = found["data/slow-stage"]
    assert slow.severity == "info" and "`map` at p.py:1" in slow.title
    assert slow.evidence["share_of_time_per_element"] == pytest.approx(0.99, abs=0.01)


def test_a_stage_whose_count_is_unknown_is_not_compared_across():
    stages = [stage(0, "list_files", [50_000.0] * 5, None), stage(1, "interleave", [2_000.0] * 5, None),
              stage(2, "map", [500.0] * 5, 1.0)]
    costs = stage_costs(stages)
    assert costs[0]["ms_per_final_element"] is None  # files against records: no common unit
    assert slow_stage(costs) == 2


def rounds(a, b, n=5):
    return {"a_ms": [a] * n, "b_ms": [b * (1 + 0.01 * (i % 2)) for i in range(n)], "quads": 1,
            "calibration_ms": [a * (1 + 0.005 * (i % 2)) for i in range(n)]}


def test_a_parallel_map_that_pays_is_claimed_with_its_measured_saving():
    candidate = {"fix": "parallel", "stages": [1], "chunk": 3, "warm": 2, "rounds": rounds(120.0, 60.0), "ms_per_element": 40.0,
                 "decided": "faster"}
    found = {f.id: f for f in judge(measured(SLOW_MAP, [candidate])) if hasattr(f, "id")}
    claim = found["data/parallel-map"]
    assert claim.kind == "opportunity" and claim.confidence > 0.9
    assert claim.savings["latency_pct"].value == pytest.approx(50, abs=1)
    assert claim.savings["latency_ms"].value == pytest.approx(20, abs=0.5)  # of 40 ms per element
    assert "num_parallel_calls=tf.data.AUTOTUNE)" in claim.fix.code and "1.99×" in claim.title


def test_a_fix_that_does_not_pay_is_not_claimed_and_an_undecided_one_says_so():
    same = {"fix": "prefetch", "stages": [], "chunk": 3, "warm": 2, "rounds": rounds(100.0, 100.0), "ms_per_element": 1.0,
            "decided": "same"}
    noisy = {"fix": "parallel", "stages": [1], "chunk": 3, "warm": 2, "ms_per_element": 1.0, "decided": "undecided",
             "rounds": {"a_ms": [100, 80, 120, 90, 110], "b_ms": [90, 120, 85, 105, 95], "quads": 1}}
    found = {f.id: f for f in judge(measured(SLOW_MAP, [same, noisy])) if hasattr(f, "id")}
    assert "data/prefetch" not in found
    assert found["data/parallel-map"].kind == "undecided" and not found["data/parallel-map"].savings


def test_the_scope_says_where_the_first_pass_stopped():
    findings = {f.id: f for f in judge(measured(SLOW_MAP)) if hasattr(f, "id")}
    assert "first 2,000 elements (the quick budget's --take 2,000; the dataset goes on)" in findings["data/slow-stage"].summary
    whole = {f.id: f for f in judge(measured(SLOW_MAP, stopped_at="end of the dataset")) if hasattr(f, "id")}
    assert "one whole pass" in whole["data/slow-stage"].summary


def growing(per_element, elements=2000, readings=40, noise=200_000, start=500 * 2**20, seed=0):
    """(elements delivered, anonymous bytes) readings of a pass whose memory grows ``per_element`` (with allocator noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.linspace(1, elements, readings).round()
    return [[int(c), int(start + per_element * c + rng.normal(0, noise))] for c in counts]


def memory_finding(trace, **changes):
    m = measured(SLOW_MAP)
    m["first_pass"]["memory_trace"] = trace
    m.update({"available_memory_bytes": 8 * 2**30, "host_memory_bytes": 16 * 2**30, "memory_caches": [], "cardinality": "unknown"})
    for key, value in changes.items():
        (m["first_pass"] if key == "pass_end_bytes" else m)[key] = value
    found = {f.id: f for f in judge(m) if hasattr(f, "id")}
    metric = next(f for f in judge(m) if getattr(f, "name", "") == "memory_growth_bytes_per_1000_elements")
    return found.get("data/memory-growth"), metric


def test_memory_that_grows_with_every_element_is_priced_in_the_hours_it_lasts():
    found, metric = memory_finding(growing(16 * 1024))
    assert found is not None and found.evidence["bytes_per_element"] == pytest.approx(16 * 1024, rel=0.02)
    # 8 GiB at 16 KiB an element: 524,288 elements, at 2,000 elements/s 262 s.
    assert found.severity == "critical" and "lasts 4 minutes" in found.summary and "No stage of the pipeline" in found.summary
    assert "Whether it stops after one pass of the dataset was not measured: the first pass did not reach its end." in found.summary
    assert metric.value == pytest.approx(16 * 1024 * 1000, rel=0.02) and metric.low <= metric.value <= metric.high


def test_buffers_that_fill_and_stay_and_allocator_noise_are_not_growth():
    filled = [[c, b if c > 200 else b - 40 * 2**20] for c, b in growing(0)]  # a prefetch buffer filled early, then flat
    assert memory_finding(filled)[0] is None
    assert memory_finding(growing(0, noise=2**20))[0] is None
    assert memory_finding(growing(600))[0] is None  # under 1 KiB an element: not worth a finding


def test_growth_that_passes_again_do_not_repeat_is_held_once_and_one_that_they_repeat_is_not():
    trace = growing(16 * 1024, elements=1600)
    end = trace[-1][1]
    settling = [end, end + 13 * 2**20, end + 20 * 2**20, end + 20 * 2**20, end + 20 * 2**20]  # the allocator's arenas, then a step
    once, _ = memory_finding(trace, pass_end_bytes=settling)
    assert once.severity == "info" and "4 more passes over the same elements grew it no further" in once.summary
    assert "something kept once for each distinct element" in once.summary
    kept, _ = memory_finding(trace, pass_end_bytes=[end + i * 2000 * 16 * 1024 for i in range(5)])  # each pass of 2,000 elements
    assert kept.severity == "critical" and "grew again by 16.0 KiB an element a pass over the same elements (passes 3 to 5" in kept.summary


def test_an_in_memory_cache_of_a_known_length_says_what_it_holds_when_full():
    stages = [*SLOW_MAP[:2], stage(2, "cache", [100.0] * 5, 1.0, where="p.py:9"), stage(3, "batch", [6.25] * 5, 16.0)]
    caches = [{"index": 2, "elements": 160_000}]
    per_batch = 16 * 16 * 1024  # batches of 16 elements of 16 KiB
    found, _ = memory_finding(growing(per_batch), stages=stages, memory_caches=caches, cardinality=10_000)
    assert "`cache` at p.py:9" in found.summary and "after 10,000 elements" in found.summary
    assert found.severity == "medium"  # 2.4 GiB: over a tenth of the 16 GiB host
    endless, _ = memory_finding(growing(per_batch), stages=stages, memory_caches=caches, cardinality="infinite")
    assert "after 10,000 elements" in endless.summary  # the cache's own 160,000 elements, in batches of 16
    too_big, _ = memory_finding(growing(per_batch), stages=stages, memory_caches=[{"index": 2, "elements": 10_000_000}],
                                cardinality="infinite")
    assert too_big.severity == "high" and "the first epoch runs out of memory" in too_big.summary


def test_the_prefetch_tensorflow_ran_last_is_counted_with_autotunes_buffer_size():
    def with_prefetch(buffer_size, element_bytes, stages=SLOW_MAP):
        m = measured(stages)
        m["first_pass"].update(element_bytes=element_bytes, memory={"before_bytes": 0, "peak_bytes": 2**30, "after_bytes": 2**30},
                               tensorflow_ran={"nodes": [{"id": 1, "name": "Root", "inputs": [2], "tuned": {}},
                                                         {"id": 2, "name": "Prefetch", "inputs": [3], "tuned": {"buffer_size": buffer_size}},
                                                         {"id": 3, "name": "MapAndBatch", "inputs": [], "tuned": {}}]})
        m["host_memory_bytes"] = 16 * 2**30
        return {f.id: f for f in judge(m) if hasattr(f, "id")}.get("data/buffer-memory")

    injected = with_prefetch(16, 18 * 2**20)  # 16 batches of 32 decoded 224×224×3 images
    assert ("`prefetch` at the end (injected by TensorFlow) holds 16 elements of 18,874,368 bytes (its buffer_size after the "
            "first pass) = 288.0 MiB") in injected.summary
    assert injected.severity == "info" and "dataset.prefetch(2)" in injected.fix.code  # 1.8 % of the 16 GiB host
    assert with_prefetch(16, 6 * 2**20) is None  # 96 MiB: under a hundredth of the host's memory
    yours = [*SLOW_MAP, stage(3, "prefetch", [6.25] * 5, 1.0, where="p.py:7")]
    assert "`prefetch` at p.py:7" in with_prefetch(4, 2**28, yours).summary


def test_the_first_pass_says_whether_it_read_its_files_cold_or_warm():
    m = measured(SLOW_MAP)
    m["first_pass"]["reads"] = {"bytes": 100 * 2**20, "storage_bytes": 98 * 2**20}
    m["later_reads"] = {"bytes": 900 * 2**20, "storage_bytes": 0}
    slow = next(f for f in judge(m) if getattr(f, "id", "") == "data/slow-stage")
    assert ("The first pass read its files cold (98.0 MiB of 100.0 MiB from storage); the timings after it, warm, from the OS "
            "page cache (0.0 KiB of 900.0 MiB from storage).") in slow.summary
    m["first_pass"]["reads"] = {"bytes": 2**19, "storage_bytes": 2**19}  # half a MiB: nothing worth saying
    assert "read its files" not in next(f for f in judge(m) if getattr(f, "id", "") == "data/slow-stage").summary


# --- building the pipeline (TensorFlow, in this process) ----------------------------------------------------------------


def test_the_chain_is_walked_with_the_line_of_each_stage_and_rebuilt_parallel():
    import tensorflow as tf

    from tfaudit.engine.pipeline import build

    pipeline = build(f"{SHAPES}:sequential_io_map", {"n": 64})
    assert [s.kind for s in pipeline.stages] == ["range", "map", "batch"]
    assert pipeline.stages[1].where == f"shapes.py:{line_of(SHAPES, 'dataset.map(lambda x: tf.py_function')}"
    assert pipeline.stages[1].code.startswith("dataset = dataset.map(")
    inventory = pipeline.inventory()
    assert inventory["cardinality"] == 8 and inventory["options"]["inject_prefetch"] is True
    parallel = pipeline.rebuild({1: {"num_parallel_calls": tf.data.AUTOTUNE}})
    assert type(parallel._input_dataset).__name__ == "_ParallelMapDataset"
    assert [int(x) for x in parallel.unbatch()] == [2 * i for i in range(64)]  # the same elements, in order
    assert tf.data.Dataset.map.__name__ == "map"  # the recording is undone


@pytest.mark.parametrize("target, message", [
    (f"{SHAPES}:raises", "raised RuntimeError: the bucket is not reachable"),
    (f"{SHAPES}:not_a_dataset", "returned list, not a tf.data.Dataset"),
    (f"{SHAPES}:empty", "returned an empty dataset"),
    (f"{SHAPES}:missing", "has no missing"),
    (f"{PIPELINES}/does_not_import.py:make", "No module named 'a_module_nobody_installed'"),
    ("no_such_module:make", "cannot import no_such_module: ModuleNotFoundError: No module named 'no_such_module'"),
    ("no_colon", "give MODULE:FUNCTION or FILE.py:FUNCTION"),
])
def test_a_factory_that_cannot_be_audited_says_why_in_one_line(target, message):
    from tfaudit.engine.pipeline import PipelineError, build

    with pytest.raises(PipelineError, match=message):
        build(target, {})


# --- whole audits through the CLI -------------------------------------------------------------------------------------


def audited(tmp_path, target, *extra):
    out = tmp_path / "report.json"
    done = run_cli("data", target, "--headless", "--budget", "quick", "--json", str(out), *extra)
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    report = json.loads(out.read_text())
    return report, {f["id"]: f for f in report["findings"]}


@pytest.mark.slow
def test_a_sequential_io_map_is_named_at_its_line_and_its_parallel_rebuild_pays(tmp_path):
    report, found = audited(tmp_path, f"{SHAPES}:sequential_io_map", "--take", "100")
    slow = found["data/slow-stage"]
    assert f"shapes.py:{line_of(SHAPES, 'dataset.map(lambda x: tf.py_function')}" in slow["title"]
    assert slow["evidence"]["share_of_time_per_element"] > 0.9  # nearly all of each element's time
    parallel = found["data/parallel-map"]
    speedup = 100 / (100 - parallel["savings"]["latency_pct"]["value"])
    assert speedup >= 1.5 and parallel["savings"]["latency_pct"]["low"] > 10
    # The fused map-and-batch runs ahead in a thread of its own: a prefetch on top is timed, and does not pay without a model.
    assert found.get("data/prefetch", {}).get("kind") != "opportunity"
    assert report["model"]["kind"] == "pipeline" and report["metrics"]["data.elements_per_second"]["value"] > 0
    print(f"sequential io map: {speedup:.2f}x in parallel; {slow['title']}")


@pytest.mark.slow
def test_a_well_tuned_pipeline_gets_no_fix_claimed(tmp_path):
    _, found = audited(tmp_path, f"{SHAPES}:well_tuned")
    claimed = [i for i, f in found.items() if f["kind"] == "opportunity"]
    assert not claimed, claimed


@pytest.fixture(scope="module")
def busy_model(tmp_path_factory):
    return shapes_module().build_busy_model(str(tmp_path_factory.mktemp("busy") / "model"))  # ~6 ms a call here


@pytest.mark.slow
def test_a_model_fed_without_prefetch_is_input_bound_and_the_prefetch_is_measured_to_pay(tmp_path, busy_model):
    fixes = tmp_path / "fixes"
    report, found = audited(tmp_path, f"{SHAPES}:without_prefetch", "--arg", "batch=3", "--model", busy_model, "--fix-dir", str(fixes))
    bound = found["data/input-bound"]
    assert bound["evidence"]["wait_share"][1] >= 0.2 and bound["severity"] == "high"  # ~7 ms batches waited for in turn with ~6 ms steps
    prefetch = found["data/prefetch"]
    assert prefetch["kind"] == "opportunity" and prefetch["savings"]["latency_pct"]["low"] > 10
    assert report["model"]["feeds_model"]["path"] == busy_model
    written = (fixes / "data-pipeline" / "pipeline_options.py").read_text()
    assert "dataset = dataset.prefetch(tf.data.AUTOTUNE)" in written and "all of them together" in written
    namespace: dict = {}
    exec(compile(written, "pipeline_options.py", "exec"), namespace)  # it runs as written
    assert namespace["tuned_options"]().deterministic is None  # nothing but what was measured to pay
    assert prefetch["artifact"]["path"].endswith("data-pipeline")
    print(f"without prefetch: waits {bound['evidence']['wait_share']}; {prefetch['title']}")


@pytest.mark.slow
def test_an_endless_dataset_feeding_a_training_step_of_the_users_and_bad_targets_exit_2(tmp_path, busy_model):
    report, found = audited(tmp_path, f"{TRAINING}:examples", "--step", f"{TRAINING}:train_step", "--take", "200", "--arg", "batch=16")
    assert report["model"]["cardinality"] == "infinite" and report["model"]["arguments"] == {"batch": "16"}
    assert "first 200 elements (--take 200; the dataset goes on)" in found["data/slow-stage"]["summary"]
    verdict = found.get("data/model-bound") or found.get("data/input-bound")
    assert verdict is not None, sorted(found)
    assert f"(a step of yours): `{TRAINING}:train_step` waits" in verdict["title"]
    assert "A training step costs" not in verdict["summary"]  # said of inference steps only
    # In a worker, as an audit runs them: one line on stderr, exit 2 (the other causes: build's test above).
    runs = [["data", f"{SHAPES}:raises", "--headless"], ["data", f"{SHAPES}:endless", "--model", busy_model, "--headless"],
            ["data", f"{TRAINING}:examples", "--step", f"{TRAINING}:broken_step", "--headless"]]
    messages = ["raised RuntimeError: the bucket is not reachable",
                f"the dataset's ids is float32[], but serving_default of {busy_model} takes int64[?]",
                f"--step {TRAINING}:broken_step raised ValueError: labels missing on the dataset's first element"]
    for done, message in zip(run_clis(*runs), messages):
        errors = [line for line in done.stderr.splitlines() if line.startswith("tfaudit:")]
        assert done.returncode == EXIT_USAGE and len(errors) == 1 and message in errors[0], done.stderr[-2000:]
        assert "Traceback" not in done.stderr


def evicted(folder) -> bool:
    """Drop ``folder``'s files from the OS page cache (POSIX_FADV_DONTNEED, no root needed); whether reading one back
    then came from storage (not on tmpfs, nor where the kernel keeps no per-process I/O accounting)."""
    import psutil

    paths = [os.path.join(folder, name) for name in os.listdir(folder)]
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(descriptor)
    try:
        before = psutil.Process().io_counters().read_bytes
        with open(paths[0], "rb") as probe:
            probe.read()
        came_from_storage = psutil.Process().io_counters().read_bytes > before
    except (AttributeError, OSError):
        return False
    descriptor = os.open(paths[0], os.O_RDONLY)
    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(descriptor)
    return came_from_storage


@pytest.mark.slow
def test_files_read_cold_are_said_cold_and_memory_kept_once_per_record_is_held_once(tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    shapes_module().write_blobs(str(folder))  # 1,600 records of 8 KiB: 12.5 MiB
    cold = evicted(str(folder))
    report, found = audited(tmp_path, f"{SHAPES}:remembering_records", "--arg", f"folder={folder}")
    summary = found["data/slow-stage"]["summary"]
    assert ("The first pass read its files cold" if cold else "The first pass read its files") in summary, summary
    assert "the timings after it, warm, from the OS page cache" in summary
    growth = found["data/memory-growth"]  # a memo of every record read: 16 KiB a record (the record and its "decoding")
    assert 15 * 1024 < growth["evidence"]["bytes_per_element"] < 24 * 1024, growth["evidence"]
    assert growth["severity"] == "info" and "more passes over the same elements grew it no further" in growth["summary"]
    assert "(it holds 12.5 MiB)" in found["data/cache"]["title"]  # strings counted by their bytes
    print(f"cold={cold}: {summary[summary.index('The first pass read'):][:160]}; {growth['title']}")


def test_autotunes_cpu_budget_is_timed_only_beside_a_step_and_never_where_the_code_set_it():
    import tensorflow as tf

    from tfaudit.checks.data.gather import option_changes

    def slugs(options, consumed):
        return [slug for slug, _, _ in option_changes(options, [], consumed)]

    assert "autotune-cpu-budget" not in slugs(tf.data.Options(), consumed=False)
    if (os.cpu_count() or 1) >= 2:
        assert "autotune-cpu-budget" in slugs(tf.data.Options(), consumed=True)
    set_by_code = tf.data.Options()
    set_by_code.autotune.cpu_budget = 3
    assert "autotune-cpu-budget" not in slugs(set_by_code, consumed=True)


def test_a_stream_read_once_is_measured_over_its_first_pass_and_says_why_nothing_more():
    from tfaudit.api import Context, Finding, Measurements
    from tfaudit.budget import BUDGETS
    from tfaudit.checks.data import DataCheck
    from tfaudit.engine.pipeline import build

    pipeline = build(f"{SHAPES}:read_once", {})
    items = list(DataCheck().run(Context(model=None, inputs=None, budget=BUDGETS["quick"], pipeline=pipeline)))
    found = {i.id: i for i in items if isinstance(i, Finding)}
    measured = next(i for i in items if isinstance(i, Measurements)).data
    assert measured["read_once"] and measured["candidates"] == [] and measured["first_pass"]["elements"] == 300
    assert "one whole pass of the dataset's 300 elements" in found["data/read-once"].summary


def test_elements_are_sized_by_their_bytes_whatever_their_kind():
    import tensorflow as tf

    from tfaudit.checks.data.first_pass import element_bytes

    assert element_bytes({"text": tf.constant([b"abc", b"de"]), "ids": tf.zeros([4], tf.int32)}) == 5 + 16  # strings by length
    assert element_bytes(tf.ragged.constant([[1, 2, 3], [4]], dtype=tf.int64)) == 4 * 8 + 3 * 8  # values and row splits
    assert element_bytes(tf.sparse.SparseTensor([[0], [2]], tf.constant([1.0, 2.0]), [4])) == 2 * 8 + 2 * 4 + 8
    window = next(iter(tf.data.Dataset.range(10).window(5)))  # a nested dataset: no elements until read
    assert element_bytes(window) == 0


def test_a_shuffle_buffer_is_sized_from_its_input_elements():
    from tfaudit.checks.data.gather import buffer_of
    from tfaudit.engine.pipeline import build

    pipeline = build(f"{SHAPES}:shuffled_images", {"side": 8, "buffer": 50})
    shuffle = next(s for s in pipeline.stages if s.kind == "shuffle")
    assert buffer_of(shuffle) == {"buffer": {"elements": 50, "element_bytes": 8 * 8 * 3 * 4, "bytes": 50 * 8 * 8 * 3 * 4}}
    assert all(buffer_of(s) == {} for s in pipeline.stages if s.kind != "shuffle")


def test_files_interleaved_and_a_map_inside_apply_are_named_and_counted(tmp_path):
    from tfaudit.checks.data.gather import inputs_per_output
    from tfaudit.engine.pipeline import build

    folder = shapes_module().write_records(str(tmp_path))
    pipeline = build(f"{SHAPES}:records", {"folder": folder})
    assert [s.kind for s in pipeline.stages] == ["list_files", "interleave", "map", "batch"]
    interleave, mapped = pipeline.stages[1], pipeline.stages[2]
    assert interleave.sequential  # its second positional argument is cycle_length, not num_parallel_calls
    assert mapped.where == f"shapes.py:{line_of(SHAPES, 'dataset.apply(lambda d: d.map(parse))')}"  # inside apply's function
    assert inputs_per_output(interleave)["value"] == pytest.approx(1 / 10)  # ten records per file, counted
    assert inputs_per_output(pipeline.stages[3])["value"] == 4.0
    made_by_tf = build(f"{SHAPES}:csv_made_by_tf", {"path": shapes_module().write_csv(str(tmp_path))})
    assert [(s.kind, s.declared_ratio()) for s in made_by_tf.stages][-3:] == [  # known from TensorFlow's own stages
        ("Batch", (8.0, "batch_size 8")), ("Map", (1.0, "one element per element")), ("Prefetch", (1.0, "one element per element"))]


def shapes_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipeline_shapes", SHAPES)
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    return shapes


@pytest.mark.slow
def test_a_cache_after_the_slow_decode_is_filled_timed_and_warns_that_it_freezes_augmentation(tmp_path):
    augment = True
    from tfaudit.api import Context, Finding, Measurements
    from tfaudit.budget import BUDGETS
    from tfaudit.checks.data import DataCheck
    from tfaudit.engine.pipeline import build

    folder = shapes_module().write_records(str(tmp_path))
    # Parallel and prefetched already: the cache is the one fix left to time.
    pipeline = build(f"{SHAPES}:decoded_records", {"folder": folder, "augment": augment, "parallel": True})
    items = list(DataCheck().run(Context(model=None, inputs=None, budget=BUDGETS["quick"], pipeline=pipeline)))
    found = {i.id: i for i in items if isinstance(i, Finding)}
    measured = next(i for i in items if isinstance(i, Measurements)).data
    cache = found["data/cache"]
    assert cache.kind == "opportunity" and cache.savings["latency_pct"].low > 10, measured["not_timed"]
    assert "30 elements" in cache.summary and f"shapes.py:{line_of(SHAPES, 'tf.py_function(decode')}" in cache.title
    assert [c["fix"] for c in measured["candidates"]] == ["cache"]
    assert cache.risk.level == "medium" and "RandomUniform" in cache.risk.note


def test_random_ops_are_found_in_a_map_and_a_stateless_one_is_not(tmp_path):
    from tfaudit.engine.pipeline import build

    folder = shapes_module().write_records(str(tmp_path))
    plain = build(f"{SHAPES}:decoded_records", {"folder": folder})
    augmented = build(f"{SHAPES}:decoded_records", {"folder": folder, "augment": True})
    assert [s.random_ops() for s in plain.stages] == [[]] * len(plain.stages)
    assert [s.random_ops() for s in augmented.stages if s.random_ops()] == [["RandomUniformInt"]]
    images = build(f"{SHAPES}:shuffled_images", {"side": 4, "buffer": 2})
    assert all(s.random_ops() == [] for s in images.stages)  # stateless_uniform: the same every epoch


@pytest.mark.slow
def test_a_csv_through_keras_hubs_bert_preprocessing_feeds_a_keras_hub_bert(tmp_path, built_model):
    """Real parts: a CSV read by CsvDataset, keras-hub's BertTextClassifierPreprocessor row by row, a BERT classifier."""
    import importlib.util

    from tfaudit.checks.data.first_pass import first_pass
    from tfaudit.checks.data.gather import runs_in_parallel
    from tfaudit.engine.pipeline import attach_model, build

    spec = importlib.util.spec_from_file_location("pipeline_text", TEXT)
    text = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(text)
    pipeline = build(f"{TEXT}:bert_inputs", {"path": text.write_csv(str(tmp_path), rows=200)})
    assert [(s.kind, s.where) for s in pipeline.stages] == [
        ("CsvDataset", f"text.py:{line_of(TEXT, 'tf.data.experimental.CsvDataset(')}"),  # a reader of the library, named at its line
        ("map", f"text.py:{line_of(TEXT, 'preprocessor(text, label)')}"), ("map", f"text.py:{line_of(TEXT, 'padding_mask')}"),
        ("batch", f"text.py:{line_of(TEXT, 'dataset.batch(batch)')}"), ("prefetch", f"text.py:{line_of(TEXT, 'dataset.batch(batch)')}")]
    attach_model(pipeline, built_model("bert_classifier"), None, trusted=False, user_modules=())
    pipeline.consume(next(iter(pipeline.dataset)))  # (features, label): the features by the signature's names
    first = first_pass(pipeline.dataset, 20, 5.0)
    assert first["stopped_at"] == "end of the dataset" and first["elements"] == 13  # 200 rows in batches of 16
    # Neither map sets num_parallel_calls, yet keras-hub's tokenizer is stateless: TensorFlow runs both in parallel itself.
    assert "already runs each map" in runs_in_parallel(pipeline, first["tensorflow_ran"])

