"""The import contract, read from the files on disk (checks/ installs as tfaudit.checks, which path-based tools miss).

- Every check is a package under checks/ (gather/judge/catalogue/fix); it, and the libraries the checks
  share, import tfaudit only through ``tfaudit.api`` (the door plugins use); judges and catalogues import no
  TensorFlow.
- The front ends (command line, headless, TUI, reports) import neither TensorFlow nor the checks.
"""
import ast
import os
import shutil

ROOT = os.path.join(os.path.dirname(__file__), "..")
TENSORFLOW_SIDE = {"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert"}
FRONT_ENDS = ["tfaudit/cli.py", "tfaudit/headless.py", "tfaudit/usage.py", "tfaudit/exit_codes.py", "tfaudit/rejudge.py", "tfaudit/data.py", "tfaudit/tui", "tfaudit/report"]


def imported(path: str) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in the file, inside functions too."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def python_files(path: str) -> list[str]:
    if path.endswith(".py"):
        return [path] if os.path.exists(path) else []
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names if name.endswith(".py"))


def split_checks(checks_dir: str) -> list[str]:
    """Every package under checks/: the checks and the libraries they share (``_compression``)."""
    return sorted(os.path.join(checks_dir, d) for d in os.listdir(checks_dir) if os.path.exists(os.path.join(checks_dir, d, "__init__.py")))


def loose_modules(checks_dir: str) -> list[str]:
    """Modules beside the packages: one check is one folder."""
    return sorted(name for name in os.listdir(checks_dir) if name.endswith(".py") and name != "__init__.py")


def check_violations(checks_dir: str) -> list[str]:
    violations = []
    for package in split_checks(checks_dir):
        for path in python_files(package):
            pure = os.path.basename(path) in ("judge.py", "catalogue.py")
            for line, module in imported(path):
                top = module.split(".")[0]
                if top == "tfaudit" and module != "tfaudit.api":
                    violations.append(f"{path}:{line} imports {module}: a check imports tfaudit only through tfaudit.api")
                if pure and top in TENSORFLOW_SIDE:
                    violations.append(f"{path}:{line} imports {module}: a judge or catalogue runs without TensorFlow")
    return violations


def front_end_violations(root: str) -> list[str]:
    violations = []
    for entry in FRONT_ENDS:
        for path in python_files(os.path.join(root, entry)):
            for line, module in imported(path):
                if module.split(".")[0] in TENSORFLOW_SIDE or module.startswith("tfaudit.checks"):
                    violations.append(f"{path}:{line} imports {module}: front ends never import TensorFlow or the checks")
    return violations


def test_split_checks_import_only_the_api_and_front_ends_no_tensorflow():
    assert len(split_checks(os.path.join(ROOT, "checks"))) >= 7, "the contract sees no check package"
    assert loose_modules(os.path.join(ROOT, "checks")) == []
    assert [e for e in FRONT_ENDS if not os.path.exists(os.path.join(ROOT, e))] == []
    assert check_violations(os.path.join(ROOT, "checks")) == []
    assert front_end_violations(ROOT) == []


def test_a_planted_forbidden_import_breaks_the_contract(tmp_path):
    checks = tmp_path / "checks"
    shutil.copytree(os.path.join(ROOT, "checks", "safety"), checks / "safety")
    judge = checks / "safety" / "judge.py"
    judge.write_text(judge.read_text() + "\n\ndef timed():\n    from tfaudit.engine.measure import time_call\n    import tensorflow as tf\n")
    violations = check_violations(str(checks))
    assert len(violations) == 2
    assert "imports tfaudit.engine.measure" in violations[0] and "imports tensorflow" in violations[1]

    front = tmp_path / "tfaudit" / "tui"
    front.mkdir(parents=True)
    (front / "widget.py").write_text("def draw():\n    import tfaudit.checks.memory\n")
    assert [v.split(": ", 1)[1] for v in front_end_violations(str(tmp_path))] == ["front ends never import TensorFlow or the checks"]
