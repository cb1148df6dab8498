"""``tfaudit explain ID``: one finding's page, from its check's catalogue (like ``ruff rule``); the docs' finding pages
are the same text (``docs/findings/``, written by ``python -m tfaudit.explain --write DIR``).

No TensorFlow: the catalogues are data. Ids with a parameter (``pruning/magnitude-90``, ``watch/shape-varies/predict``)
find their family's page.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Iterable

from tfaudit.api import Rule
from tfaudit.exit_codes import EXIT_OK, EXIT_USAGE
from tfaudit.usage import Parser, UsageError

PLACEHOLDER = re.compile(r"\$(\w+)|\$\{(\w+)\}")
NUMBERED = re.compile(r"^(.*-)\d+$")  # pruning/magnitude-90: one page for every sparsity


def catalogues() -> dict[str, Rule]:
    """Every finding rule: the installed checks' catalogues (``<check package>.catalogue.RULES``: a model's, then an input
    pipeline's), then watch's."""
    from tfaudit.engine.registry import DATA_ENTRY_POINT_GROUP, ENTRY_POINT_GROUP, discover_checks

    specs = [spec for group in (ENTRY_POINT_GROUP, DATA_ENTRY_POINT_GROUP) for spec in discover_checks(group)]
    modules = [spec.target.split(":")[0] + ".catalogue" for spec in specs if not spec.load_error]
    rules: dict[str, Rule] = {}
    for name in [*modules, "tfaudit.watch.catalogue"]:
        try:
            rules.update(getattr(importlib.import_module(name), "RULES", {}))
        except ImportError:  # a plugin without a catalogue module
            continue
    return rules


def families(rules: dict[str, Rule]) -> dict[str, list[Rule]]:
    """Pages: one per rule, the numbered ones of a family (``pruning/magnitude-N``) on one page."""
    pages: dict[str, list[Rule]] = {}
    for rule in rules.values():
        numbered = NUMBERED.match(rule.id)
        pages.setdefault(f"{numbered.group(1)}N" if numbered else rule.id, []).append(rule)
    return pages


def page_for(finding_id: str, pages: dict[str, list[Rule]]) -> str | None:
    """The page an id a report shows belongs to: itself, its numbered family, or the rule it extends (watch's)."""
    if finding_id in pages:
        return finding_id
    numbered = NUMBERED.match(finding_id)
    if numbered and f"{numbered.group(1)}N" in pages:
        return f"{numbered.group(1)}N"
    parts = finding_id.split("/")
    for cut in range(len(parts) - 1, 1, -1):
        if "/".join(parts[:cut]) in pages:
            return "/".join(parts[:cut])
    return None


def generic(template: str) -> str:
    """A template with its placeholders shown as what they stand for: ``$signature`` → ``<signature>``."""
    return PLACEHOLDER.sub(lambda m: f"<{m.group(1) or m.group(2)}>", template).strip()


def render(page: str, rules: list[Rule]) -> str:
    """The page as Markdown: what it detects, why it matters, the fix with its example, how to verify, how it is
    measured (its minimum and severity rule), effort and risk."""
    rule = rules[0]
    lines = [f"# {page}", "", f"**{generic(rule.title)}**", ""]
    if len(rules) > 1:
        lines += [f"One of a family: {', '.join(f'`{r.id}`' for r in rules)}.", ""]
    kind = {"opportunity": "an opportunity (a measured saving)", "fact": "a fact of the model (no saving is claimed)",
            "advice": "advice about the code around the model"}[rule.kind]
    lines += [f"Check `{rule.check}` · default severity **{rule.severity}** · {kind}", "",
              "## What it detects", "", generic(rule.summary), ""]
    if rule.applies_if:
        lines += [f"It applies when {generic(rule.applies_if)}", ""]
    lines += ["## Why it matters", "", rule.why.strip(), "", "## How to fix it", "", generic(rule.fix), ""]
    if rule.example:
        lines += ["```python", generic(rule.example), "```", ""]
    if rule.fix_writer:
        command = "tfaudit data TARGET --fix-dir DIR" if rule.check == "data" else "tfaudit MODEL --fix-dir DIR"
        lines += [f"`{command}` writes {rule.fix_writer}, and measures it again.", ""]
    if rule.verify:
        lines += ["## How to verify", "", generic(rule.verify), ""]
    lines += ["## How it is decided", ""]
    lines += [f"- Practical minimum: {rule.minimum}" if rule.minimum else "- No minimum: it is reported whenever it is found."]
    if rule.severity_rule:
        lines.append(f"- Severity: {rule.severity_rule}")
    lines.append(f"- Effort (an estimate): {rule.effort.level}, about {rule.effort.hours:g} h. {rule.effort.note}".rstrip())
    lines.append(f"- Risk: {rule.risk.level}" + (f". {rule.risk.note}" if rule.risk.note else ""))
    return "\n".join(lines).rstrip() + "\n"


def write_pages(folder: str, pages: dict[str, list[Rule]]) -> list[str]:
    """One Markdown file per page (``safety/python-ops`` → ``safety.python-ops.md``) and an index; the files written."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for page, rules in sorted(pages.items()):
        path = os.path.join(folder, page.replace("/", ".") + ".md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(render(page, rules))
        written.append(path)
    with open(os.path.join(folder, "index.md"), "w", encoding="utf-8") as f:
        f.write(index(pages))
    return written


def index(pages: dict[str, list[Rule]]) -> str:
    lines = ["# Findings", "", "Every finding tfaudit reports, one page each (`tfaudit explain ID` prints the same page).", "",
             "```{toctree}", ":maxdepth: 1", ""]
    lines += [page.replace("/", ".") for page in sorted(pages)]
    return "\n".join(lines + ["```", ""])


def listed(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids))


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="tfaudit explain", description="Print a finding's page: what it detects, why, the fix, how it is decided.")
    parser.add_argument("finding", nargs="?", help="a finding id as a report shows it, e.g. retracing/fixed-batch-dim")
    parser.add_argument("--list", action="store_true", help="list every finding id")
    parser.add_argument("--write", metavar="DIR", help=argparse.SUPPRESS)  # the docs' pages
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    pages = families(catalogues())
    if args.write:
        write_pages(args.write, pages)
        return EXIT_OK
    if args.list:
        print("\n".join(sorted(pages)))
        return EXIT_OK
    if not args.finding:
        raise UsageError("give a finding id (tfaudit explain --list lists them)")
    page = page_for(args.finding, pages)
    if page is None:
        raise UsageError(f"no finding {args.finding!r}; known: {listed(pages)}")
    print(render(page, pages[page]), end="")
    return EXIT_OK


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UsageError as exc:
        print(f"tfaudit explain: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
