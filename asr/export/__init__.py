"""Deployment: export of a trained transducer to ONNX (sherpa-onnx's layout, fp32 and int8) and TorchScript."""

from asr.export.onnx import ExportError, check_model_dir, export_onnx, quantize_int8

__all__ = ["ExportError", "check_model_dir", "export_onnx", "quantize_int8"]
