"""Export (torch, onnx): sparse top-k ONNX/TFLite students, int8 quantization, model bundles."""
