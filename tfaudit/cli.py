"""Command line: argument parsing and dispatch only.

Imports neither TensorFlow nor Textual: ``tfaudit --help`` and
``--list-checks`` must answer at once, and the audit itself runs in workers.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from tfaudit import __version__
from tfaudit.api import SEVERITIES
from tfaudit.budget import BUDGETS
from tfaudit.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tfaudit.report.profiles import DEFAULT_PROFILE, DEFAULT_TRAFFIC_RPS, PROFILES, EdgeWeights, Prices, Profile
from tfaudit.usage import Parser, UsageError, check_outputs, checked_fix_dir, loaded_baseline, run_front_end


EPILOG = """other commands:
  tfaudit data MODULE:FUNCTION [...]    audit a tf.data input pipeline (tfaudit data --help)
  tfaudit watch [options] -- COMMAND…   name the retracing in your own program (tfaudit watch --help)
  tfaudit rejudge REPORT.json [...]     judge a JSON report's stored measurements again, without TensorFlow
  tfaudit explain ID                    a finding's page: what it detects, why, the fix, how it is decided

exit codes:
  0    done, nothing at or above --fail-on
  1    a finding at or above --fail-on
  2    usage error, a model or --inputs file that cannot be used, an untrusted model refused (--trust-model),
       or another tfaudit in the processes it starts
  3    one or more checks errored (reports still hold everything else; all errored: nothing was measured)
  130  interrupted with Ctrl-C (reports hold what finished)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tfaudit",
        description="Lighthouse for TensorFlow models: measure, rank and fix what makes a SavedModel slow, big or leaky.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="SavedModel directory, tf_keras SavedModel, or .keras file")
    parser.add_argument("--demo", action="store_true", help="audit the embedded demo model (built once into the user cache)")
    parser.add_argument("--headless", action="store_true", help="no TUI: progress on stderr, ranked table on stdout")
    parser.add_argument("--checks", metavar="ID,ID", help="run only these checks")
    parser.add_argument("--skip", metavar="ID,ID", help="run all checks but these")
    parser.add_argument("--list-checks", action="store_true", help="list the installed checks and exit")
    parser.add_argument("--report", metavar="FILE.md", help="write the Markdown report")
    parser.add_argument("--json", metavar="FILE.json", help="write the JSON report")
    parser.add_argument("--html", metavar="FILE.html", help="one self-contained HTML report (charts inlined)")
    parser.add_argument("--fix-dir", metavar="DIR", help="write the fixed artifacts the checks can make (TFLite variants, pruned models, serving config) and measure them again")
    parser.add_argument("--junit", metavar="FILE.xml", help="JUnit XML: a testcase per check, a failure per finding at or above --fail-on (default high)")
    parser.add_argument("--record", metavar="FILE.jsonl", help="record the event stream (replayable without TensorFlow)")
    parser.add_argument("--signature", metavar="NAME", help="signature to audit (default: serving_default, else the only one)")
    parser.add_argument(
        "--function", metavar="NAME",
        help="audit the SavedModel's restored tf.function NAME (e.g. encode, or a dotted path) as if it were the serving "
        "signature: for modules saved without signatures",
    )
    parser.add_argument(
        "--inputs", metavar="FILE|DIR",
        help="real sample inputs: .npz (keys = input names), .tfrecord[.gz] of tf.Examples, a TF Serving REST .json body "
        "(instances, inputs or examples; bytes as {\"b64\": ...}), or a folder of images",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", metavar="MODULE",
        help="import MODULE in every worker before loading (registers custom ops; repeatable). "
        "TF Text, Addons, IO, Decision Forests and Recommenders-Addons ops are found without it",
    )
    parser.add_argument(
        "--trust-model", action="store_true", default=None,
        help="audit a model that holds ops writing files, calling Python or reaching the network, ops of an unknown "
        "library, or a tf_keras Lambda saved as bytecode (refused by default: auditing runs the model)",
    )
    parser.add_argument("--budget", choices=sorted(BUDGETS), help="repetitions and time per check (quick is for CI; default standard)")
    parser.add_argument(
        "--max-fidelity-loss", type=float, metavar="X",
        help="compression bound: relative L2 error of outputs (and 1 - top-1 agreement for class scores) at most X (default 0.01)",
    )
    parser.add_argument(
        "--latency-budget-ms", type=float, metavar="MS",
        help="serving check: the p99 latency a batch may reach (default: the p50 may reach 2x the batch-1 p50)",
    )
    parser.add_argument("--device", metavar="CPU|GPU:N|all", help="serving check: sweep only this device (default all that TensorFlow sees)")
    parser.add_argument("--check-timeout", type=float, metavar="S", help="time limit per check (default: the budget's)")
    parser.add_argument(
        "--memory-limit", type=int, metavar="MB",
        help="kill a check's worker above this resident memory (default: 75%% of RAM)",
    )
    parser.add_argument(
        "--isolate", choices=("fork", "fresh"),
        help="how check workers start: fork (default on Linux) forks each from one interpreter that imported "
        "TensorFlow once; fresh starts a new interpreter per check (~2.5 s each; for models whose custom code is not fork-safe)",
    )
    parser.add_argument("--profile", choices=PROFILES, help="what the ranking prices savings in: server ($/month at --traffic), edge (a device's download, latency, RAM) or batch (core-hours per 1e9 rows); default server")
    parser.add_argument("--traffic", type=float, metavar="RPS", help=f"server profile: requests a second (default {DEFAULT_TRAFFIC_RPS:g})")
    parser.add_argument("--fail-on", choices=[*SEVERITIES[:-1], "never"], help="exit 1 when a finding is at or above this severity (default never)")
    parser.add_argument("--config", metavar="FILE.toml", help="options and metric budgets (default: [tool.tfaudit] in ./pyproject.toml)")
    parser.add_argument("--baseline", metavar="OLD.json", help="compare with an earlier JSON report; metric regressions beyond noise exit 1")
    parser.add_argument(
        "--baseline-model", metavar="OLD_MODEL",
        help="time an earlier export alternately with MODEL in one run; a slowdown beyond noise exits 1",
    )
    parser.add_argument("--version", action="version", version=f"tfaudit {__version__}")
    return parser


def parse_ids(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def select_checks(specs, only: list[str], skip: list[str]):
    known = {spec.id for spec in specs}
    unknown = sorted(set(only + skip) - known)
    if unknown:
        raise UsageError(f"unknown check id {', '.join(unknown)}; installed: {', '.join(sorted(known)) or 'none'}")
    by_id = {spec.id: spec for spec in specs}
    chosen = [by_id[i] for i in dict.fromkeys(only)] if only else list(specs)  # --checks order is run order
    chosen = [spec for spec in chosen if spec.id not in skip]
    if not chosen:
        raise UsageError("no checks left to run after --checks/--skip")
    return chosen


def list_checks(specs) -> int:
    width = max([len(s.id) for s in specs] + [2])
    for spec in specs:
        note = f"  [cannot import: {spec.load_error}]" if spec.load_error else ""
        print(f"{spec.id:<{width}}  {spec.title}  ({spec.origin}){note}")
    return EXIT_OK


def ensure_demo_model() -> str:
    """Build the demo model once, in a worker interpreter (the CLI never imports TensorFlow)."""
    from tfaudit.engine.demo import demo_path

    path = demo_path()
    if os.path.exists(path):
        return path
    print(f"tfaudit: building the demo model into {path} (once)…", file=sys.stderr)
    from tfaudit.engine.launch import child_environment, python_command

    done = subprocess.run(python_command("tfaudit.engine.demo", path), capture_output=True, text=True, env=child_environment())
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise UsageError(f"cannot build the demo model: {last}")
    return path


DEFAULTS = {"budget": "standard", "fail_on": "never", "isolate": "fork", "trust_model": False, "profile": DEFAULT_PROFILE,
            "traffic": DEFAULT_TRAFFIC_RPS}


def apply_config(args: argparse.Namespace):
    """Fill options the command line left out from the configuration, then from DEFAULTS."""
    from tfaudit.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    for key, value in config.options.items():
        if key == "import":
            args.imports = [*(args.imports or []), *value]
        elif getattr(args, key) is None:
            setattr(args, key, ",".join(value) if key in ("checks", "skip") else value)
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return config


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from tfaudit.engine.registry import discover_checks

    specs = discover_checks()
    if args.list_checks:
        return list_checks(specs)
    if bool(args.model) == bool(args.demo):
        raise UsageError("give a MODEL path or --demo (one of them)")
    config = apply_config(args)
    chosen = select_checks(specs, parse_ids(args.checks), parse_ids(args.skip))
    if args.function and args.signature:
        raise UsageError("--function and --signature each choose what is audited; give one of them")
    if args.max_fidelity_loss is not None and not 0 < args.max_fidelity_loss < 1:
        raise UsageError("--max-fidelity-loss must be between 0 and 1")
    if args.latency_budget_ms is not None and args.latency_budget_ms <= 0:
        raise UsageError("--latency-budget-ms must be a positive number of milliseconds")
    if args.device is not None and not re.fullmatch(r"(?i)cpu|all|gpu:\d+", args.device):
        raise UsageError(f"--device must be CPU, GPU:N or all, not {args.device!r}")
    if args.traffic <= 0:
        raise UsageError("--traffic must be a positive number of requests a second")
    if args.check_timeout is not None and args.check_timeout <= 0:
        raise UsageError("--check-timeout must be a positive number of seconds")
    if args.memory_limit is not None and args.memory_limit <= 0:
        raise UsageError("--memory-limit must be a positive number of MB")
    if args.model and not os.path.exists(args.model):
        raise UsageError(f"no such file or directory: {args.model}")
    if args.baseline_model and not os.path.exists(args.baseline_model):
        raise UsageError(f"--baseline-model: no such file or directory: {args.baseline_model}")
    check_outputs(args)
    model = ensure_demo_model() if args.demo else args.model
    fix_dir = checked_fix_dir(args.fix_dir, model) if args.fix_dir else None
    baseline = loaded_baseline(args.baseline)

    from tfaudit.engine.runner import AuditJob, default_memory_limit_mb

    job = AuditJob(
        model=os.path.abspath(model),
        budget=args.budget,
        signature=args.signature,
        function=args.function,
        inputs=args.inputs,
        options={
            **({} if args.max_fidelity_loss is None else {"max_fidelity_loss": args.max_fidelity_loss}),
            **({"baseline_model": os.path.abspath(args.baseline_model)} if args.baseline_model else {}),
            **({} if args.latency_budget_ms is None else {"latency_budget_ms": args.latency_budget_ms}),
            **({} if args.device is None else {"device": args.device}),
            **({"fix_dir": fix_dir} if fix_dir else {}),
            **({"trust_model": True} if args.trust_model else {}),
        },
        memory_limit_mb=args.memory_limit or default_memory_limit_mb(),
        check_timeout_s=args.check_timeout,
        imports=list(dict.fromkeys(args.imports or [])),
        isolate=args.isolate,
    )
    outputs = dict(
        report=args.report, json_path=args.json, record=args.record, junit=args.junit, html=args.html, fail_on=args.fail_on,
        budgets=config.budgets, baseline=baseline, fix_dir=fix_dir,
        profile=Profile(args.profile, args.traffic, Prices(**config.prices), EdgeWeights(**config.edge_weights)),
    )
    return run_front_end(chosen, job, args.headless, **outputs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["watch"]:
            from tfaudit.watch.cli import run as watch

            return watch(argv[1:])
        if argv[:1] == ["data"]:
            from tfaudit.data import run as data

            return data(argv[1:])
        if argv[:1] == ["explain"]:
            from tfaudit.explain import main as explain

            return explain(argv[1:])
        if argv[:1] == ["rejudge"]:
            from tfaudit.rejudge import main as rejudge

            return rejudge(argv[1:])
        return run(argv)
    except UsageError as exc:
        print(f"tfaudit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tfaudit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
