"""tfaudit.engine.trust: what a SavedModel could run, read from its graph alone (tests/test_safety.py refuses a real one)."""
from tensorflow.core.protobuf import meta_graph_pb2

from tfaudit.engine.trust import refusal


def node(graph, name: str, op: str, *inputs: str, calls: str = ""):
    made = graph.node.add() if hasattr(graph, "node") else graph.node_def.add()
    made.name, made.op = name, op
    made.input.extend(inputs)
    if calls:
        made.attr["f"].func.name = calls
    return made


def function(meta_graph, name: str, *ops: str):
    made = meta_graph.graph_def.library.function.add()
    made.signature.name = name
    for i, op in enumerate(ops):
        node(made, f"n{i}", op)


def meta_graph(serving_op: str = "MatMul") -> meta_graph_pb2.MetaGraphDef:
    """A signature through a function holding ``serving_op``, and a checkpoint save function nothing calls but the saver."""
    graph = meta_graph_pb2.MetaGraphDef()
    node(graph.graph_def, "x", "Placeholder")
    function(graph, "serve_fn", serving_op)
    node(graph.graph_def, "call", "StatefulPartitionedCall", "x", calls="serve_fn")
    graph.signature_def["serving_default"].outputs["y"].name = "call:0"
    function(graph, "save_fn", "SaveV2", "MergeV2Checkpoints")
    node(graph.graph_def, "save", "StatefulPartitionedCall", "x", calls="save_fn")
    graph.saver_def.save_tensor_name = "save:0"
    return graph


def test_the_checkpoint_save_function_is_never_a_reason_to_refuse():
    assert refusal("/m", meta_graph()) is None


def test_refused_ops_are_named_with_where_they_run():
    line = refusal("/m", meta_graph("WriteFile"))
    assert line.startswith("refused to load: it holds ops that write files: WriteFile (signature serving_default)")
    assert "--trust-model" in line and line.endswith(": /m")
    graph = meta_graph()
    function(graph, "orphan_fn", "EagerPyFunc")  # named by nothing: still kept, under "other functions"
    assert "ops that call Python: EagerPyFunc (other functions)" in refusal("/m", graph)


def test_ops_of_unknown_libraries_are_refused_and_the_users_import_is_named():
    assert "AcmeBlend (signature serving_default)" in refusal("/m", meta_graph("AcmeBlend"))
    assert refusal("/m", meta_graph("AcmeBlend"), known_library_ops=frozenset({"AcmeBlend"})) is None
    line = refusal("/m", meta_graph("AcmeBlend"), user_modules=("acme_ops",))
    assert "come from a library tfaudit does not know (--import acme_ops): AcmeBlend" in line


def test_what_runs_at_load_is_read_too():
    graph = meta_graph()
    node(graph.graph_def, "init", "WriteFile", "x")
    graph.signature_def["__saved_model_init_op"].outputs["__saved_model_init_op"].name = "init"
    assert "WriteFile (loading)" in refusal("/m", graph)
