"""The safety check's findings: what each says, why it matters, how to fix and verify it."""
from __future__ import annotations

from tfaudit.api import Effort, Risk, Rule, catalogue

EXECUTED = "Serving (or auditing) this model executes them with this process's permissions."
ASSETS = "These usually read the SavedModel's own assets; check the paths if the model is untrusted."


def ops_rule(slug: str, severity: str, verb: str, consequence: str) -> Rule:
    return Rule(
        id=f"safety/{slug}",
        kind="fact",
        severity=severity,
        title=f"The serving graph holds ops that {verb}",
        summary=f"`$signature` contains $listed. {consequence}",
        why="A SavedModel is a program: ops that touch files, Python or the network give whoever made the model a way "
            "into the machine that serves it.",
        fix="Keep file, Python and network work out of the serving function: do it in the server around the model, "
            "and export only tensor math. Audit untrusted models in a sandbox (no network, read-only filesystem, "
            "unprivileged user).",
        example=(
            "# list where they are in the exported graph:\n"
            "import tensorflow as tf\n"
            "fn = tf.saved_model.load(PATH).signatures[$signature_repr]\n"
            "graph = fn.graph.as_graph_def()\n"
            "wanted = $wanted\n"
            "for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def]:\n"
            "    if node.op in wanted:\n"
            "        print(node.op, node.name)"
        ),
        verify="Re-export and re-run `tfaudit MODEL --checks safety`: no finding.",
        effort=Effort("hours", 2, "Find where the ops come from in the export code and remove or replace them."),
        risk=Risk("none", "Removing these ops changes no numeric output of the model."),
        severity_rule=f"{severity}: a fact of the graph, whatever it costs",
    )


RULES = catalogue(
    ops_rule("python-ops", "high", "call into Python", EXECUTED),
    ops_rule("file-write-ops", "high", "write files", EXECUTED),
    ops_rule("network-ops", "high", "reach other machines", EXECUTED),
    ops_rule("file-read-ops", "medium", "read or list files", EXECUTED),
    ops_rule("asset-read-ops", "info", "read text files into lookup tables", ASSETS),
)
