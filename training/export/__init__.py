"""ONNX export with metadata and an ORT-vs-PyTorch parity check."""

from training.export._onnx import ExportReport, ParityError, export_onnx

__all__ = ["ExportReport", "ParityError", "export_onnx"]
