"""`tfaudit explain ID`: a finding's page from its catalogue, found from the ids reports show; no TensorFlow."""
import subprocess
import sys

from tfaudit.explain import catalogues, families, page_for, render


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfaudit", "explain", *args], capture_output=True, text=True, timeout=60)


def test_a_findings_page_says_what_why_fix_and_how_it_is_decided():
    done = explain("retracing/fixed-batch-dim")
    assert done.returncode == 0, done.stderr
    page = done.stdout
    for heading in ("# retracing/fixed-batch-dim", "## What it detects", "## Why it matters", "## How to fix it",
                    "## How to verify", "## How it is decided"):
        assert heading in page
    assert "<signature>" in page and "$" not in page.split("```")[0]  # placeholders named, not left as templates
    assert "Practical minimum: " in page and "Effort (an estimate)" in page


def test_ids_with_a_parameter_find_their_familys_page():
    pages = families(catalogues())
    assert page_for("pruning/magnitude-33", pages) == "pruning/magnitude-N"
    assert page_for("watch/shape-varies/predict", pages) == "watch/shape-varies"
    assert page_for("serving/batch-size", pages) == "serving/batch-size"
    assert page_for("nothing/here", pages) is None


def test_every_rule_renders_and_an_unknown_id_lists_the_known_ones():
    pages = families(catalogues())
    assert len(pages) >= 40 and {"safety/python-ops", "watch/python-loop", "quantization/float16"} <= set(pages)
    for page, rules in pages.items():
        assert render(page, rules).startswith(f"# {page}\n")
    done = explain("retracing/nope")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no finding 'retracing/nope'; known: " in done.stderr and "serving/cold-start" in done.stderr
