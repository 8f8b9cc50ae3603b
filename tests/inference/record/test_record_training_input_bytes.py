"""A kept model input reads back as the float16 tensor it was, from the bytes written now and before.

The bytes are an ``npz`` that NumPy itself loads (retraining reads them years later), now written with
libdeflate and the zip's own headers; inputs kept before (``np.savez_compressed``'s bytes) are still read
by the same reader.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from inference.record import decode_input, encode_input


def _tensor() -> np.ndarray:
    rng = np.random.default_rng(5)
    tensor = rng.normal(0.0, 1.5, size=(1, 160, 160)).astype(np.float32)
    tensor[0, :20] = -2.0  # letterbox padding: (0 - mean) / std
    return tensor


def test_a_kept_input_reads_back_as_its_float16_tensor_and_parameters() -> None:
    tensor = _tensor()
    data = encode_input(tensor, mean=0.5, std=0.25, window_percentiles=(0.5, 99.5))
    pixels, mean, std = decode_input(data)
    assert pixels.dtype == np.float32 and pixels.shape == (160, 160)
    assert pixels.tobytes() == tensor[0].astype(np.float16).astype(np.float32).tobytes()
    assert (mean, std) == (0.5, 0.25)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:  # a plain npz, as any NumPy reads it
        assert sorted(npz.files) == ["mean", "std", "tensor", "window_percentiles"]
        assert npz["tensor"].dtype == np.float16
        assert npz["window_percentiles"].tolist() == [0.5, 99.5]
    assert len(data) < tensor[0].astype(np.float16).nbytes  # deflated, not stored
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None  # every member's CRC checks out
        assert {member.compress_type for member in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert encode_input(tensor, mean=0.5, std=0.25, window_percentiles=(0.5, 99.5)) == data


def test_inputs_kept_by_the_previous_writer_still_read() -> None:
    tensor = _tensor()
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        tensor=tensor[0].astype(np.float16),
        mean=np.float64(0.5),
        std=np.float64(0.25),
        window_percentiles=np.asarray((0.5, 99.5), dtype=np.float64),
    )
    old = decode_input(buffer.getvalue())
    new = decode_input(encode_input(tensor, mean=0.5, std=0.25, window_percentiles=(0.5, 99.5)))
    assert old[0].tobytes() == new[0].tobytes() and old[1:] == new[1:]
