"""``tfaudit data``: audit a tf.data input pipeline, the dataset a user's factory returns.

Argument parsing and dispatch only, as ``tfaudit.cli``: the factory is imported and called in the audit's workers
(``tfaudit.engine.pipeline``), and nowhere else; the same front ends, reports and gates as a model's audit.
"""
from __future__ import annotations

import argparse
import os

from tfaudit.budget import BUDGETS
from tfaudit.report.profiles import Profile
from tfaudit.usage import Parser, UsageError, check_outputs, checked_fix_dir, loaded_baseline, run_front_end

DATA_CHECK = "data"
EPILOG = """TARGET is package.module:function (imported from the current folder, after the installation) or
path/to/file.py:function; the function returns a tf.data.Dataset. Exit codes are tfaudit's (tfaudit --help): a
TARGET that does not import, raises or returns no dataset exits 2 with one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tfaudit data", description="Audit a tf.data input pipeline: elements/s, GetNext latency, the slow "
                    "stage at its line of your code, and each fix timed against the pipeline as it is.", epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="TARGET", help="MODULE:FUNCTION or FILE.py:FUNCTION returning a tf.data.Dataset")
    parser.add_argument("--arg", dest="arguments", action="append", default=[], metavar="NAME=VALUE",
                        help="a keyword argument of the function (a Python literal, else text; repeatable)")
    parser.add_argument("--take", type=int, metavar="N",
                        help="time the first pass over at most N elements (default: the budget's; an infinite dataset stops there)")
    parser.add_argument("--model", metavar="MODEL", help="the SavedModel (or .keras) the elements feed: times the loop and says whether "
                        "the model waits for its input (an inference step)")
    parser.add_argument("--step", metavar="MODULE:FUNCTION", help="your step function (a training step), called with each element "
                        "in place of --model: the same verdict for that loop")
    parser.add_argument("--signature", metavar="NAME", help="with --model: the signature the elements feed (default serving_default)")
    parser.add_argument("--trust-model", action="store_true", help="with --model: load a model that holds file, Python or network ops")
    parser.add_argument("--fix-dir", metavar="DIR", help="write pipeline_options.py: the fixes measured to pay, applied together and timed again")
    parser.add_argument("--headless", action="store_true", help="no TUI: progress on stderr, ranked table on stdout")
    parser.add_argument("--report", metavar="FILE.md", help="write the Markdown report")
    parser.add_argument("--json", metavar="FILE.json", help="write the JSON report")
    parser.add_argument("--html", metavar="FILE.html", help="one self-contained HTML report")
    parser.add_argument("--junit", metavar="FILE.xml", help="JUnit XML: a failure per finding at or above --fail-on")
    parser.add_argument("--record", metavar="FILE.jsonl", help="record the event stream (replayable without TensorFlow)")
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE", help="import MODULE first (custom ops; repeatable)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="standard", help="time per measurement (quick is for CI)")
    parser.add_argument("--fail-on", choices=["critical", "high", "medium", "low", "never"], default="never",
                        help="exit 1 when a finding is at or above this severity")
    parser.add_argument("--profile", choices=("pipeline", "batch"), default="pipeline",
                        help="what the ranking prices in: the share of the pipeline's time a fix saves, or hours per 1e9 elements")
    parser.add_argument("--baseline", metavar="OLD.json", help="compare with an earlier JSON report; regressions beyond noise exit 1")
    parser.add_argument("--check-timeout", type=float, metavar="S", help="time limit (default: the budget's)")
    parser.add_argument("--isolate", choices=("fork", "fresh"), default="fork", help="how the workers start (as for a model)")
    return parser


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from tfaudit.engine.pipeline import PipelineError, parse_arguments
    from tfaudit.engine.registry import DATA_ENTRY_POINT_GROUP, discover_checks

    try:
        arguments = parse_arguments(args.arguments)
    except PipelineError as exc:
        raise UsageError(str(exc)) from None
    if args.take is not None and args.take < 2:
        raise UsageError("--take must be at least 2 elements")
    if args.check_timeout is not None and args.check_timeout <= 0:
        raise UsageError("--check-timeout must be a positive number of seconds")
    if ":" not in args.target:
        raise UsageError(f"{args.target!r}: give MODULE:FUNCTION or FILE.py:FUNCTION")
    if args.model and not os.path.exists(args.model):
        raise UsageError(f"--model: no such file or directory: {args.model}")
    if (args.signature or args.trust_model) and not args.model:
        raise UsageError("--signature and --trust-model go with --model")
    if args.step and args.model:
        raise UsageError("--model and --step each give the step the elements feed; give one of them")
    if args.step and ":" not in args.step:
        raise UsageError(f"--step {args.step!r}: give MODULE:FUNCTION or FILE.py:FUNCTION")
    check_outputs(args)
    fix_dir = checked_fix_dir(args.fix_dir, args.model or os.path.join(os.getcwd(), "-")) if args.fix_dir else None
    specs = [s for s in discover_checks(DATA_ENTRY_POINT_GROUP) if s.id == DATA_CHECK]
    if not specs:
        raise UsageError("the data check is not installed (reinstall tfaudit)")
    baseline = loaded_baseline(args.baseline)

    from tfaudit.engine.runner import AuditJob, default_memory_limit_mb

    job = AuditJob(
        model=args.target,
        budget=args.budget,
        options={
            "pipeline": {"target": args.target, "arguments": arguments,
                         **({"model": os.path.abspath(args.model), "signature": args.signature} if args.model else {}),
                         **({"step": args.step} if args.step else {})},
            **({"take": args.take} if args.take else {}),
            **({"trust_model": True} if args.trust_model else {}),
            **({"fix_dir": fix_dir} if fix_dir else {}),
        },
        memory_limit_mb=default_memory_limit_mb(),
        check_timeout_s=args.check_timeout,
        imports=list(dict.fromkeys(args.imports or [])),
        isolate=args.isolate,
    )
    outputs = dict(report=args.report, json_path=args.json, record=args.record, junit=args.junit, html=args.html,
                   fail_on=args.fail_on, budgets={}, baseline=baseline, fix_dir=fix_dir,
                   profile=Profile("batch" if args.profile == "batch" else "server", subject="pipeline"))
    return run_front_end(specs, job, args.headless, **outputs)
