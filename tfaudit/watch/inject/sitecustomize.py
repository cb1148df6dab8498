"""Put first on PYTHONPATH by `tfaudit watch`: hooks tf.function tracing in the watched program
(and in the Python programs it starts), then runs the sitecustomize this one shadows."""
import os
import sys


def _tfaudit_watch() -> None:
    directory = os.environ.get("TFAUDIT_WATCH_DIR")
    if not directory:
        return
    root = os.environ.get("TFAUDIT_WATCH_ROOT", "")  # the folder holding the tfaudit package
    # The hook is tfaudit's own code: it comes from the installation that watches, never from a tfaudit/
    # folder on the program's PYTHONPATH (tfaudit.engine.launch's import rule); the program's path is its own.
    added = bool(root)
    if added:
        sys.path.insert(0, root)
    try:
        from tfaudit.watch import child

        child.begin(directory)
    except Exception as exc:  # never stop the program; tell the watcher
        import json

        message = f"cannot load tfaudit's watch into {sys.executable}: {type(exc).__name__}: {exc}"
        try:
            with open(os.path.join(directory, f"events-{os.getpid()}.jsonl"), "a", encoding="utf-8") as out:
                out.write(json.dumps({"event": "hook_error", "pid": os.getpid(), "message": message}) + "\n")
        except OSError:
            pass
    finally:
        if added:
            sys.path.remove(root)


def _chain() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.origin and os.path.abspath(spec.origin) != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_tfaudit_watch()
_chain()
