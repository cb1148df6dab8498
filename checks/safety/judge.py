"""Which ops reach beyond the tensors: one finding per kind found (pure: no TensorFlow)."""
from __future__ import annotations

from typing import Any, Iterator

from tfaudit.api import Finding

from .catalogue import RULES

OPS_BY_FINDING = {
    "safety/python-ops": {"PyFunc", "PyFuncStateless", "EagerPyFunc"},
    "safety/file-write-ops": {
        "WriteFile", "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "DatasetToTFRecord", "SaveDataset",
        "SaveDatasetV2", "SnapshotDataset", "SnapshotDatasetV2", "CreateSummaryFileWriter", "WriteSummary",
        "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
        "WriteRawProtoSummary", "WriteGraphSummary", "DebugIdentityV2", "DebugIdentityV3",
    },
    "safety/network-ops": {
        "RpcClient", "RpcCall", "RpcServer", "RpcServerStart", "RpcServerRegister", "RemoteCall", "GcsConfigureCredentials",
        "GcsConfigureBlockCache",
    },
    "safety/file-read-ops": {
        "ReadFile", "MatchingFiles", "MatchingFilesDataset", "ImmutableConst", "Restore", "RestoreV2", "RestoreSlice",
        "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "TextLineDatasetV2", "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2", "WholeFileReader", "WholeFileReaderV2", "ReaderReadV2", "LoadAndRemapMatrix",
        "LoadDataset",
    },
    "safety/asset-read-ops": {"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"},
}


def judge(measured: dict[str, Any]) -> Iterator[Finding]:
    ops, signature = measured["ops"], measured["signature"]
    for finding_id, names in OPS_BY_FINDING.items():
        found = {op: ops[op] for op in sorted(names & set(ops))}
        if found:
            yield RULES[finding_id].finding(
                {"signature": signature, "ops": found},
                signature=signature, listed=", ".join(f"`{op}` ×{count}" for op, count in found.items()),
                signature_repr=repr(signature), wanted=repr(set(found)),
            )
