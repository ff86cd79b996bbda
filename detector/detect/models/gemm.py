"""Tree ensembles as matrix products, so that they run on a GPU.

skl2onnx exports gradient boosting as one ``ai.onnx.ml.TreeEnsembleClassifier`` node. onnxruntime's
CUDA execution provider has no kernel for that operator: asked for CUDA, a session places the whole
model on the CPU (and still reports CUDA as its first provider). ``to_gemm`` rewrites the same trees in
standard operators that the CUDA provider does run (the GEMM strategy of Hummingbird, Nakandala et al.,
OSDI 2020)::

    go_left = gather(x, split_features) <= thresholds              # (n, internal nodes)
    reached = (go_left @ paths) == left_turns                       # (n, leaves)
    score   = reached @ leaf_values + base;  p = sigmoid(score)     # LOGISTIC post-transform

``paths[i, l]`` is +1 when leaf ``l`` lies under the true branch of node ``i``, -1 under its false
branch, 0 otherwise; ``left_turns[l]`` counts the +1s of leaf ``l``. A leaf is reached exactly when all
its ancestors' tests go its way. Features are gathered, not multiplied, so a missing value (NaN) fails
its own test only (``nodes_missing_value_tracks_true`` 0, as skl2onnx writes it), as in the tree node.
The outputs keep the original's names and shapes (``label``, ``probabilities`` as ``[1 - p, p]``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from detector.errors import DetectorError

#: Standard-operator opset of the rewritten model (LessOrEqual needs 16).
OPSET = 17


class GemmConversionError(DetectorError, ValueError):
    """The model is not a tree ensemble this rewrite covers."""


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def to_gemm(model_bytes: bytes) -> bytes:
    """The binary ``TreeEnsembleClassifier`` in ``model_bytes`` as standard matrix operators."""
    model = onnx.load_from_string(model_bytes)
    trees = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(trees) != 1:
        raise GemmConversionError("expected exactly one TreeEnsembleClassifier node")
    a = _attrs(trees[0])
    if a.get("post_transform", b"NONE") != b"LOGISTIC" or len(a.get("classlabels_int64s", [])) != 2:
        raise GemmConversionError("only binary classifiers with a LOGISTIC post-transform are rewritten")
    if any(a.get("nodes_missing_value_tracks_true", [])):
        raise GemmConversionError("missing values that follow the true branch are not rewritten")
    if set(a.get("class_ids", [0])) != {0}:
        raise GemmConversionError("leaf weights for more than one class are not rewritten")

    node_key = list(zip(a["nodes_treeids"], a["nodes_nodeids"], strict=True))
    modes = [m.decode() for m in a["nodes_modes"]]
    if set(modes) - {"BRANCH_LEQ", "LEAF"}:
        raise GemmConversionError(f"unsupported node modes {sorted(set(modes) - {'BRANCH_LEQ', 'LEAF'})}")
    index = {k: i for i, k in enumerate(node_key)}
    internal = [i for i, m in enumerate(modes) if m == "BRANCH_LEQ"]
    leaves = [i for i, m in enumerate(modes) if m == "LEAF"]
    col_of_internal = {n: j for j, n in enumerate(internal)}
    col_of_leaf = {n: j for j, n in enumerate(leaves)}

    paths = np.zeros((len(internal), len(leaves)), dtype=np.float32)

    def walk(node: int, ancestors: list[tuple[int, float]]) -> None:
        if modes[node] == "LEAF":
            for anc, sign in ancestors:
                paths[col_of_internal[anc], col_of_leaf[node]] = sign
            return
        tree = node_key[node][0]
        walk(index[(tree, a["nodes_truenodeids"][node])], [*ancestors, (node, 1.0)])
        walk(index[(tree, a["nodes_falsenodeids"][node])], [*ancestors, (node, -1.0)])

    for root in (i for i, (_, nid) in enumerate(node_key) if nid == 0):
        walk(root, [])
    left_turns = (paths > 0).sum(axis=0).astype(np.float32)

    weights: dict[int, float] = defaultdict(float)
    for tree, nid, w in zip(a["class_treeids"], a["class_nodeids"], a["class_weights"], strict=True):
        weights[col_of_leaf[index[(tree, nid)]]] += w
    leaf_values = np.zeros((len(leaves), 1), dtype=np.float32)
    for j, w in weights.items():
        leaf_values[j, 0] = w

    features = np.array([a["nodes_featureids"][i] for i in internal], dtype=np.int64)
    thresholds = np.array([a["nodes_values"][i] for i in internal], dtype=np.float32)
    base = np.array(a.get("base_values", [0.0])[:1], dtype=np.float32)

    inp = model.graph.input[0]
    label_out, prob_out = trees[0].output[0], _probability_name(model, trees[0])
    consts = [
        numpy_helper.from_array(features, "split_features"),
        numpy_helper.from_array(thresholds, "thresholds"),
        numpy_helper.from_array(paths, "paths"),
        numpy_helper.from_array(left_turns, "left_turns"),
        numpy_helper.from_array(leaf_values, "leaf_values"),
        numpy_helper.from_array(base, "base"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([0.5], dtype=np.float32), "half"),
    ]
    nodes = [
        helper.make_node("Gather", [inp.name, "split_features"], ["split_x"], axis=1),
        helper.make_node("LessOrEqual", ["split_x", "thresholds"], ["go_left"]),
        helper.make_node("Cast", ["go_left"], ["go_left_f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["go_left_f", "paths"], ["turns"]),
        helper.make_node("Equal", ["turns", "left_turns"], ["reached"]),
        helper.make_node("Cast", ["reached"], ["reached_f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["reached_f", "leaf_values"], ["raw"]),
        helper.make_node("Add", ["raw", "base"], ["score"]),
        helper.make_node("Sigmoid", ["score"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], [prob_out], axis=1),
        helper.make_node("Greater", ["p1", "half"], ["is_pos"]),
        helper.make_node("Cast", ["is_pos"], ["label_2d"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["label_2d", "axis1"], [label_out]),
    ]
    consts.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    graph = helper.make_graph(
        nodes,
        f"{model.graph.name}_gemm",
        [inp],
        [
            helper.make_tensor_value_info(label_out, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(prob_out, TensorProto.FLOAT, [None, 2]),
        ],
        initializer=consts,
    )
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    blob: bytes = out.SerializeToString()
    return blob


def _probability_name(model: onnx.ModelProto, tree: onnx.NodeProto) -> str:
    """The graph output that carries the tree node's probabilities (skl2onnx adds an Identity)."""
    produced: str = tree.output[1]
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] == produced:
            produced = node.output[0]
    return produced
