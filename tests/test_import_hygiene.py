"""The UI process never imports TensorFlow; the CLI does not import Textual either."""
import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import tfaudit.cli",
        "import tfaudit.headless, tfaudit.engine.runner, tfaudit.report.audit, tfaudit.report.markdown, tfaudit.report.json",
        "import tfaudit.engine.demo, tfaudit.engine.resources, tfaudit.engine.inputs, tfaudit.engine.measure",
        "from tfaudit.cli import main\ntry:\n    main(['--list-checks'])\nexcept SystemExit:\n    pass",
    ],
)
def test_front_end_modules_do_not_import_tensorflow(code):
    loaded = modules_after(code)
    assert "tensorflow" not in loaded
    assert "keras" not in loaded and "tf_keras" not in loaded


def test_cli_does_not_import_textual():
    loaded = modules_after("from tfaudit.cli import main\ntry:\n    main(['--list-checks'])\nexcept SystemExit:\n    pass")
    assert "textual" not in loaded
    assert "tfaudit.checks.retracing" in loaded  # the check classes were loaded, TensorFlow was not


@pytest.mark.parametrize(
    "front_end, others",
    [
        ("tfaudit.headless", {"tfaudit.cli", "tfaudit.tui"}),
        ("tfaudit.tui", {"tfaudit.cli", "tfaudit.headless"}),
        ("tfaudit.engine.runner", {"tfaudit.cli", "tfaudit.headless", "tfaudit.tui"}),
    ],
)
def test_front_ends_and_the_engine_do_not_import_each_other(front_end, others):
    """Exit codes live in tfaudit.exit_codes, so no front end needs another, and the engine needs none."""
    assert not others & modules_after(f"import {front_end}")
