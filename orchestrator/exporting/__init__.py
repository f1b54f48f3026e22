"""``redblue export``: a registered model as an ONNX graph, checked on its test data, logged and
registered beside the original."""
