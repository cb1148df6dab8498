"""One self-contained HTML file (``--html``): the Markdown report rendered, its charts inlined as data URIs."""
from __future__ import annotations

import base64
import html

from tfaudit.report import write_atomic
from tfaudit.report.audit import AuditState
from tfaudit.report.markdown import model_name, render_markdown

STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; background: #f6f8fa; }
pre { padding: 0.8em; overflow-x: auto; }
blockquote { border-left: 4px solid #0969da; margin: 0 0 1em; padding: 0.2em 1em; background: #f6f8fa; }
img { max-width: 100%; }
"""


def render_html(state: AuditState) -> str:
    from markdown_it import MarkdownIt

    from tfaudit.report.images import png_images

    images = [(title, "data:image/png;base64," + base64.b64encode(data).decode("ascii")) for _, title, data in png_images(state)]
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(render_markdown(state, images))
    title = html.escape(f"tfaudit report: {model_name(state.model_path)}")
    return f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"


def write_html(state: AuditState, path: str) -> None:
    write_atomic(path, render_html(state))
