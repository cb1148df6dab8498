"""Report writers. Every file is written atomically: readers never see half a report.

A report gets the permissions the user's umask gives any new file (mkstemp's 0600 would hide it
from a CI artifact uploader running as another user).
"""
from __future__ import annotations

import os
import tempfile


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_atomic(path: str, content: str | bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tfaudit-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w", **({} if isinstance(content, bytes) else {"encoding": "utf-8"})) as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable(path: str) -> str | None:
    """Why ``path`` cannot be written, or None, its missing folders made (as pytest's --junitxml makes them). Asked before the audit starts."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        return f"{path} is a directory"
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"cannot create directory {directory}: {exc.strerror or exc}"
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None
