"""Speed by design must not change the answer: reduced-resolution JPEG 2000 decode vs full decode.

The server decodes JPEG 2000 at a reduced wavelet level when the model needs far fewer pixels than the
radiograph has. On the same study, through the served champion, both paths give probabilities within
0.02 of each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.dicom import Limits, read_instance
from inference.preprocess import PreprocessParams, prepare

# The first test to ask for `bootstrapped_home` pays for a whole quick bootstrap (minutes on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(2700)]


def _j2k_radiograph(size: int, findings: dict[str, bool], index: int) -> bytes:
    from io import BytesIO

    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from training.data import generate_phantom, study_bytes

    phantom = generate_phantom(np.random.default_rng(index), findings=findings, size_range=(size, size + 1))
    ds = pydicom.dcmread(BytesIO(study_bytes(phantom, index=index, seed=7)))
    # Pillow's reduced JPEG 2000 decode refuses some odd sizes (the server then decodes in full):
    # crop to whole 16-pixel blocks so this test exercises the reduced path.
    pixels = ds.pixel_array
    rows, columns = (pixels.shape[0] // 16) * 16, (pixels.shape[1] // 16) * 16
    ds.PixelData = np.ascontiguousarray(pixels[:rows, :columns]).tobytes()
    ds.Rows, ds.Columns = rows, columns
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("index", "findings"),
    [
        (1, {"pleural_effusion": True, "cardiomegaly": True}),
        (2, {"pneumothorax": True}),
        (3, {}),
    ],
)
def test_reduced_jpeg2000_decode_gives_the_same_probabilities(
    bootstrapped_home: Path, index: int, findings: dict[str, bool]
) -> None:
    import onnxruntime as ort

    champion = json.loads((bootstrapped_home / "models" / "cxr-findings" / "aliases.json").read_text())[
        "champion"
    ]
    session = ort.InferenceSession(
        str(bootstrapped_home / "models" / "cxr-findings" / champion / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    meta = session.get_modelmeta().custom_metadata_map
    params = PreprocessParams.from_metadata(json.loads(meta["dxassist.preprocess"]))
    temperature = float(meta["dxassist.temperature"])

    data = _j2k_radiograph(2048, dict(findings), index)
    limits = Limits(max_instance_bytes=64 << 20, max_pixels=64 << 20, max_instances=8)
    reduced = read_instance(data, limits=limits, target_size=params.input_size)
    full = read_instance(data, limits=limits, target_size=None)
    assert reduced.reduction > 1 and full.reduction == 1

    def probabilities(instance: object) -> np.ndarray:
        tensor = prepare(instance, params).tensor[None]  # type: ignore[arg-type]
        logits = session.run(["logits"], {"image": tensor})[0][0]
        return 1.0 / (1.0 + np.exp(-logits / temperature))

    pr, pf = probabilities(reduced), probabilities(full)
    assert np.max(np.abs(pr - pf)) <= 0.02
