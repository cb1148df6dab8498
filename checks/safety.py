"""Safety: ops in the serving graph that reach beyond the tensors it is given.

Auditing (and serving) a model executes its graph. A graph can hold ops that read or
write files, call back into Python, or talk to other machines; a model from an untrusted
source can use them. This check reads the op histogram of the serving graph (nested
functions included) from the inventory; it runs nothing.

Findings, one per kind of op found:

- ``safety/python-ops`` (**high**): ``PyFunc``-like ops run Python registered in the
  process that serves the model.
- ``safety/file-write-ops`` (**high**): ops that write files (checkpoints, summaries,
  arbitrary paths).
- ``safety/network-ops`` (**high**): RPC and remote-call ops.
- ``safety/file-read-ops`` (**medium**): ops that read or list files at paths the graph
  chooses (file paths may also be gs://, s3://, hdfs:// URLs).
- ``safety/asset-read-ops`` (**info**): lookup tables initialised from text files, which
  normally read the SavedModel's own assets.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import Check, CheckMeta, Effort, Finding, Fix, Risk

CHECK = "safety"

OP_KINDS = {
    "python-ops": ("high", "call into Python", {"PyFunc", "PyFuncStateless", "EagerPyFunc"}),
    "file-write-ops": (
        "high",
        "write files",
        {
            "WriteFile", "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "DatasetToTFRecord", "SaveDataset",
            "SaveDatasetV2", "SnapshotDataset", "SnapshotDatasetV2", "CreateSummaryFileWriter", "WriteSummary",
            "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
            "WriteRawProtoSummary", "WriteGraphSummary", "DebugIdentityV2", "DebugIdentityV3",
        },
    ),
    "network-ops": (
        "high",
        "reach other machines",
        {"RpcClient", "RpcCall", "RpcServer", "RpcServerStart", "RpcServerRegister", "RemoteCall", "GcsConfigureCredentials", "GcsConfigureBlockCache"},
    ),
    "file-read-ops": (
        "medium",
        "read or list files",
        {
            "ReadFile", "MatchingFiles", "MatchingFilesDataset", "ImmutableConst", "Restore", "RestoreV2", "RestoreSlice",
            "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "TextLineDatasetV2", "FixedLengthRecordDataset",
            "FixedLengthRecordDatasetV2", "WholeFileReader", "WholeFileReaderV2", "ReaderReadV2", "LoadAndRemapMatrix",
            "LoadDataset",
        },
    ),
    "asset-read-ops": ("info", "read text files into lookup tables", {"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"}),
}


class SafetyCheck(Check):
    meta = CheckMeta(
        id=CHECK,
        title="File, Python and network ops",
        description="Ops in the serving graph that read or write files, run Python or reach the network.",
    )

    def run(self, ctx) -> Iterator[Finding]:
        ops = ctx.inventory.get("ops", {})
        signature = ctx.inventory.get("signature", "serving_default")
        for slug, (severity, verb, names) in OP_KINDS.items():
            found = {op: ops[op] for op in sorted(names & set(ops))}
            if found:
                yield finding(slug, severity, verb, found, signature)


def finding(slug: str, severity: str, verb: str, found: dict[str, int], signature: str) -> Finding:
    listed = ", ".join(f"`{op}` ×{count}" for op, count in found.items())
    informational = severity == "info"
    return Finding(
        id=f"{CHECK}/{slug}",
        check=CHECK,
        severity=severity,
        title=f"The serving graph holds ops that {verb}",
        summary=(
            f"`{signature}` contains {listed}. "
            + ("These usually read the SavedModel's own assets; check the paths if the model is untrusted."
               if informational else "Serving (or auditing) this model executes them with this process's permissions.")
        ),
        evidence={"signature": signature, "ops": found},
        effort=Effort("hours", 2, "Find where the ops come from in the export code and remove or replace them."),
        fix=Fix(
            "Keep file, Python and network work out of the serving function: do it in the server around the model, "
            "and export only tensor math. Audit untrusted models in a sandbox (no network, read-only filesystem, "
            "unprivileged user).",
            "# list where they are in the exported graph:\n"
            "import tensorflow as tf\n"
            f"fn = tf.saved_model.load(PATH).signatures[{signature!r}]\n"
            "graph = fn.graph.as_graph_def()\n"
            f"wanted = {set(found)!r}\n"
            "for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def]:\n"
            "    if node.op in wanted:\n"
            "        print(node.op, node.name)",
        ),
        risk=Risk("none", "Removing these ops changes no numeric output of the model."),
        confidence=1.0,
        why="A SavedModel is a program: ops that touch files, Python or the network give whoever made the model a way into the machine that serves it.",
        verify="Re-export and re-run `tfaudit MODEL --checks safety`: no finding.",
    )
