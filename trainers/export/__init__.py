"""A trained model as an ONNX graph (``redblue export``, ``serve.runtime: onnxruntime``): the
graph its family declares (``Family.export``), exported from the fp32 weights
(``onnx_graph``), optionally quantized to int8, and run by ONNX Runtime (``runtime``, which needs
numpy and onnxruntime only)."""
