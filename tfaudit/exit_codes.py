"""The exit codes every front end returns (documented in the README), and the rule that picks one."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfaudit.report.audit import AuditState

EXIT_OK = 0
EXIT_FINDINGS = 1  # a finding at or above --fail-on
EXIT_USAGE = 2  # bad arguments, or a model / --inputs file that cannot be used
EXIT_CHECK_ERRORED = 3  # one or more checks errored; the reports hold everything else
EXIT_INTERRUPTED = 130  # Ctrl-C; the reports hold what finished


def exit_code(state: "AuditState", fail_on: str) -> int:
    if state.interrupted:
        return EXIT_INTERRUPTED
    if state.all_errored():
        return EXIT_CHECK_ERRORED  # nothing was measured: no gate can pass or fail
    if state.findings_at_or_above(fail_on) or state.gate_failures():
        return EXIT_FINDINGS  # a certain gate failure outranks an incomplete run
    if state.errored():
        return EXIT_CHECK_ERRORED
    return EXIT_OK
