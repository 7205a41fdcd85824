"""Small ONNX models with the real input and output shapes of DeepFace's attribute models.

DeepFace's ONNX backend loads `gender_model_weights.onnx` ((n, 224, 224, 3) to
(n, 2)) and `race_model_single_batch.onnx` ((n, 224, 224, 3) to (n, 6)) from
`$DEEPFACE_HOME/.deepface/weights`. These stand-ins average the colour
channels and map them through a fixed matrix and a softmax, so DeepFace's own
loading, preprocessing and post-processing code runs unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODELS = {"gender_model_weights.onnx": 2, "race_model_single_batch.onnx": 6}


def _model(classes: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.linspace(-1.0, 1.0, 3 * classes, dtype=np.float32).reshape(3, classes)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["output"], axis=-1),
        ],
        "attribute",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 224, 224, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", classes])],
        initializer=[
            numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_models(deepface_home: Path) -> Path:
    """Write the stand-in models where DeepFace looks for them; return the weights folder."""
    weights = deepface_home / ".deepface" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for name, classes in MODELS.items():
        (weights / name).write_bytes(_model(classes))
    return weights
