"""A model's ONNX graph from its fp32 weights: torch's dynamo exporter (``torch.export``), or the
classic TorchScript exporter where the dynamo one fails; ONNX Runtime's dynamic int8
quantization of its MatMul, Gemm and LSTM nodes."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trainers.families import family_of
from trainers.families.base import Graph
from trainers.spec import ModelSpec

CLASSIC_OPSET = 17  # the classic exporter's opset; the dynamo exporter picks its own (20 here)
FOLD_LIMIT = 1 << 30  # elements: constants up to this size are folded into initializers


class ExportError(ValueError):
    """The model cannot be exported (its family has no graph, or both exporters failed)."""


@dataclass(frozen=True)
class OnnxGraph:
    """An exported graph: the ``.onnx`` file's bytes, which exporter made it, and why the
    dynamo exporter was not used, where it was not."""

    data: bytes
    exporter: str  # dynamo or classic
    opset: int
    inputs: dict[str, list]  # name -> shape, a name for each dynamic axis
    output: str
    meaning: dict[str, str] = field(default_factory=dict)
    fallback_reason: str = ""


def to_onnx(model: nn.Module, spec: ModelSpec) -> OnnxGraph:
    """The model's graph (its family's ``Export.graph``) as ONNX, with its dynamic axes."""
    export = family_of(spec.kind).export
    if export is None:
        raise ExportError(f"model.kind {spec.kind} has no ONNX graph")
    graph = export.graph(model.float().eval(), spec)
    reason = ""
    with _quiet():
        try:
            data = _dynamo(graph)
            exporter = "dynamo"
            fixed = _fixed_axes(graph, _input_shapes(data))
            if fixed:
                raise ExportError(f"it fixed the dynamic axes {fixed}")
        except Exception as exc:  # the dynamo exporter's failures have no one type
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            data = _classic(graph)
            exporter = "classic"
    import onnx

    proto = onnx.load_from_string(data)
    shapes = _input_shapes(data)
    opset = max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    return OnnxGraph(data, exporter, opset, shapes, graph.output, graph.meaning, reason)


def _input_shapes(data: bytes) -> dict[str, list]:
    """Each graph input's shape: a number, or the name of a dynamic axis."""
    import onnx

    return {
        tensor.name: [dim.dim_param or dim.dim_value for dim in tensor.type.tensor_type.shape.dim]
        for tensor in onnx.load_from_string(data).graph.input
    }


def _fixed_axes(graph: Graph, shapes: dict[str, list]) -> list[str]:
    """The axes meant to be dynamic that an exporter made a fixed size (``steps.time=3``)."""
    return [
        f"{name}.{label}={shapes[name][axis]}"
        for name, dims in graph.dynamic.items()
        for axis, label in dims.items()
        if not isinstance(shapes.get(name, [None] * (axis + 1))[axis], str)
    ]


def _dynamo(graph: Graph) -> bytes:
    from torch.export import Dim

    axes: dict[str, Dim] = {}
    shapes = {
        name: {axis: axes.setdefault(label, Dim(label)) for axis, label in dims.items()}
        for name, dims in graph.dynamic.items()
    }
    program = torch.onnx.export(
        graph.module,
        tuple(torch.from_numpy(value) for value in graph.inputs.values()),
        dynamo=True,
        input_names=list(graph.inputs),
        output_names=[graph.output],
        dynamic_shapes=tuple(shapes[name] for name in graph.inputs),
        optimize=True,
        verbose=False,
    )
    assert program is not None
    # Fold every constant, whatever its size: an LSTM's weights computed from initializers
    # (the exporter's default folds tensors of up to 8,192 elements) are not quantized.
    import onnxscript.optimizer

    proto = onnxscript.optimizer.optimize(
        program.model_proto, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT
    )
    return proto.SerializeToString()


def _classic(graph: Graph) -> bytes:
    with tempfile.TemporaryDirectory(prefix="redblue-onnx-") as scratch:
        path = Path(scratch) / "model.onnx"
        _classic_to(graph, path)
        return path.read_bytes()


def _classic_to(graph: Graph, path: Path) -> None:
    try:
        torch.onnx.export(
            graph.module,
            tuple(torch.from_numpy(value) for value in graph.inputs.values()),
            str(path),
            dynamo=False,
            input_names=list(graph.inputs),
            output_names=[graph.output],
            dynamic_axes=graph.dynamic,
            opset_version=CLASSIC_OPSET,
        )
    except Exception as exc:
        raise ExportError(f"neither ONNX exporter could export it: {exc}") from exc


def quantize_int8(data: bytes) -> bytes:
    """ONNX Runtime's dynamic quantization: int8 weights, activations quantized at run time,
    for MatMul, Gemm and LSTM nodes (others stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="redblue-int8-") as scratch, _quiet():
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(data)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def node_types(data: bytes) -> list[str]:
    """The graph's node types, each once, sorted (``MatMulInteger``: a quantized MatMul)."""
    import onnx

    return sorted({node.op_type for node in onnx.load_from_string(data).graph.node})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' and the quantizer's warnings and log lines kept off the user's console."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "root")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
