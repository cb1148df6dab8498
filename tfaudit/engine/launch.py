"""How tfaudit starts a Python process of its own, and the import rule every such process follows.

The rule: tfaudit, TensorFlow and their dependencies come from the installation that runs the
audit, whatever the current folder holds; the user's own code comes from the user's folders,
after the installation's.

- Each process runs this file by its path with Python's safe-path mode (``python -P
  .../tfaudit/engine/launch.py MODULE ARGS``): neither the current folder nor a script's folder
  goes first on ``sys.path``.
- ``PYTHONPATH`` is taken out of its environment. Its entries, then the folder tfaudit was started
  in, are *appended* to ``sys.path`` (``TFAUDIT_USER_PATH``): ``--import`` modules,
  ``TFAUDIT_EXTRA_CHECKS`` and the user's other code still import, while a ``tensorflow.py``, a
  ``keras/`` or a ``tfaudit/`` folder there cannot shadow what is installed.
- Before it takes the user's folders, the process imports tfaudit and checks that it is the one
  this file belongs to, at the parent's version. If not, it prints one line naming both and exits
  with ``WRONG_INSTALLATION``.

Covered: the zygote and the workers it forks, fresh workers, the conversion and LiteRT helpers,
serving's setting processes and cold starts, the demo builder. ``tfaudit watch`` runs the user's
program exactly as the user would; only the hook it injects follows the rule.

This file imports nothing from tfaudit at its top: as a script it runs before tfaudit is checked.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

USER_PATH_VARIABLE = "TFAUDIT_USER_PATH"
VERSION_VARIABLE = "TFAUDIT_PARENT_VERSION"
WRONG_INSTALLATION = 86  # the exit status of a process that would run another tfaudit than its parent's
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the tfaudit this file belongs to


def python_command(module: str, *args: str, python: str = sys.executable) -> list[str]:
    """The command that runs ``MODULE.main(args)`` in a new interpreter under the import rule."""
    return [python, "-P", os.path.abspath(__file__), module, *args]


def user_path(environ=os.environ) -> list[str]:
    """Where the user's own code is looked up, after the installation: PYTHONPATH's entries, then the current folder."""
    if USER_PATH_VARIABLE in environ:  # a process tfaudit started: its parent decided
        return [p for p in environ[USER_PATH_VARIABLE].split(os.pathsep) if p]
    entries = [os.path.abspath(p) for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([*entries, os.getcwd()]))


def child_environment(overrides: dict[str, str] | None = None, environ=os.environ) -> dict[str, str]:
    """The environment of a process tfaudit starts: this one's, under the import rule, with ``overrides``."""
    from tfaudit import __version__

    env = {key: value for key, value in environ.items() if key != "PYTHONPATH"}
    env[USER_PATH_VARIABLE] = os.pathsep.join(user_path(environ))
    env.setdefault(VERSION_VARIABLE, __version__)
    env.update(overrides or {})
    return env


def adopt_user_path() -> None:
    """Append the user's folders to ``sys.path`` (after the installation's paths)."""
    sys.path.extend(p for p in user_path() if p not in sys.path)


def origin_text(package_dir: str) -> str:
    """``package_dir``, and the ``sys.path`` entry it was found through when there is one."""
    entry = os.path.dirname(package_dir)
    through = next((p for p in sys.path if os.path.realpath(p or ".") == os.path.realpath(entry)), None)
    return f"{package_dir} (sys.path entry {through!r})" if through is not None else package_dir


def installation_problem() -> str:
    """"" when this process imports the tfaudit this file belongs to, at the parent's version; else why not."""
    spec = importlib.util.find_spec("tfaudit")
    if spec is None or not spec.origin:
        return f"a process tfaudit started cannot import tfaudit, which runs this audit from {PACKAGE_DIR}: install it (pip install)"
    found = os.path.dirname(spec.origin)
    if os.path.realpath(found) != os.path.realpath(PACKAGE_DIR):
        return (f"a process tfaudit started would import tfaudit from {origin_text(found)}, not the one running this audit "
                f"({PACKAGE_DIR}): run the installed tfaudit, or install this one")
    import tfaudit

    expected = os.environ.get(VERSION_VARIABLE)
    version = getattr(tfaudit, "__version__", "unknown")
    if expected and version != expected:
        return f"tfaudit in {PACKAGE_DIR} is version {version} here but {expected} in the process that started this one (reinstalled during the audit?)"
    return ""


def main(argv: list[str]) -> int:
    """In a new process: check the tfaudit it imports, take the user's folders, then run ``MODULE.main(args)``."""
    module, args = argv[0], argv[1:]
    # tfaudit is imported before the user's folders join sys.path: an editable install's finder is asked
    # only after every sys.path entry, so a tfaudit/ folder there would otherwise win.
    problem = installation_problem()
    if not problem:
        adopt_user_path()
        try:
            entry = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("tfaudit"):
                raise
            import tfaudit

            problem = f"cannot import {exc.name} (needed by {module}) from the tfaudit in {origin_text(os.path.dirname(tfaudit.__file__))}"
    if problem:
        print(f"tfaudit: {problem}", file=sys.stderr, flush=True)
        return WRONG_INSTALLATION
    return entry.main(args)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)  # skips TensorFlow's teardown at exit (about a second): everything is written
