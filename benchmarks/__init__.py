"""dxassist benchmarks: speed of the imaging path, measured against baselines taken in the same run.

``python -m benchmarks [--quick]`` (``make bench``) builds a model and DICOM files of one synthetic
2048 x 2048 radiograph in every lossless transfer syntax the venv can encode, measures the bare pieces
(ONNX Runtime, PyTorch eager, decode, preprocess) and the real server end to end, prints the ratios with
their targets and writes ``benchmarks/results/latest.json`` and the figures in ``benchmarks/README.md``.
Nothing here asserts a time: targets are printed as met or missed, never enforced.
"""
