"""An exported model in ONNX Runtime: one session built once, the family's feeds and answer
around it (``Family.export``). Needs numpy and onnxruntime only (no torch), so a replica or a
pyfunc model that serves an exported model runs without torch."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from trainers.families import family_of
from trainers.spec import CONFIG_FILE, ModelSpec

ONNX_FILE = "model.onnx"  # an exported model's graph, beside its weights and model config
EXPORT_FILE = "export.json"  # what the graph takes and gives, how it was made and checked


class OnnxModel:
    """A model's ONNX graph in an ONNX Runtime session: ``threads`` intra-op threads (the CPUs
    its process reserves) and one inter-op thread, so processes on a node do not
    oversubscribe its cores."""

    def __init__(self, data: bytes, spec: ModelSpec, threads: int = 1) -> None:
        import onnxruntime as ort

        export = family_of(spec.kind).export
        if export is None:
            raise ValueError(f"model.kind {spec.kind} has no ONNX graph")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.spec, self.export = spec, export
        # An input the graph does not read (an unconditional GAN's label) is not in it.
        self.input_names = {node.name for node in self.session.get_inputs()}

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """The graph's output for every sample of ``features``, in their order."""
        answer: np.ndarray | None = None
        for feed in self.export.feeds(self.spec, features):
            inputs = {k: v for k, v in feed.inputs.items() if k in self.input_names}
            out = self.session.run(None, inputs)[0]
            if feed.rows is None:
                return out
            if answer is None:
                answer = np.empty((len(features), *out.shape[1:]), dtype=out.dtype)
            answer[feed.rows] = out
        return answer if answer is not None else np.zeros((0,), dtype=np.float32)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What ``Family.predict`` answers: (labels, probabilities) or (values, None)."""
        return self.export.answer(self.spec, features, self.outputs(features))


Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def load_predictor(directory: Path, threads: int = 1) -> tuple[Predict, ModelSpec]:
    """A saved model folder's prediction and spec: in ONNX Runtime where the folder holds an
    exported graph (``model.onnx``: an exported model runs as it was checked, int8 included),
    else in torch from its weights."""
    directory = Path(directory)
    spec = ModelSpec.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    graph = directory / ONNX_FILE
    if graph.is_file():
        return OnnxModel(graph.read_bytes(), spec, threads).predict, spec
    from trainers.models import load_model, predict

    model, _ = load_model(directory)
    return partial(predict, model, spec), spec
