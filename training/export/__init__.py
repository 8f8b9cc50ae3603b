"""ONNX export with metadata and an ORT-vs-PyTorch parity check."""

from training.export._onnx import ExportReport, ParityError, export_onnx, restamp_metadata

__all__ = ["ExportReport", "ParityError", "export_onnx", "restamp_metadata"]
