"""Sphinx configuration: MyST Markdown, the Furo theme; the finding pages are written from the checks' catalogues."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from tfaudit.explain import catalogues, families, write_pages  # noqa: E402

project = "tfaudit"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
html_theme = "furo"
html_title = "tfaudit"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # the finding pages start at the id, a single top heading

# One page per finding, the text `tfaudit explain ID` prints (generated here: never edited by hand, not committed).
write_pages(os.path.join(os.path.dirname(__file__), "findings"), families(catalogues()))
