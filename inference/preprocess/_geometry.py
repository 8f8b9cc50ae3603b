"""Where the original image sits inside the square model input, and maps between the two."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _resize


@dataclass(frozen=True)
class Geometry:
    """Letterbox geometry between the original image and the S x S model input.

    Always refers to the ORIGINAL Rows x Columns of the header, even when the pixels were decoded at
    reduced resolution, so maps go back to full-resolution coordinates.

    Attributes:
        original_shape: ``(rows, columns)`` of the original image.
        scale: Model pixels per original pixel (``S / max(rows, columns)``).
        pad_top: Rows of padding above the image in the model input.
        pad_left: Columns of padding left of the image.
        content_shape: ``(rows, columns)`` the image occupies inside the model input.
        input_size: S.
    """

    original_shape: tuple[int, int]
    scale: float
    pad_top: int
    pad_left: int
    content_shape: tuple[int, int]
    input_size: int

    @classmethod
    def letterbox(cls, original_shape: tuple[int, int], input_size: int) -> Geometry:
        """Fit the longer side to ``input_size``, keep the aspect ratio and centre the image."""
        rows, columns = int(original_shape[0]), int(original_shape[1])
        if rows < 1 or columns < 1:
            raise ValueError(f"The original shape must be positive, not {original_shape}.")
        scale = input_size / max(rows, columns)
        content = (
            min(input_size, max(1, round(rows * scale))),
            min(input_size, max(1, round(columns * scale))),
        )
        return cls(
            original_shape=(rows, columns),
            scale=scale,
            pad_top=(input_size - content[0]) // 2,
            pad_left=(input_size - content[1]) // 2,
            content_shape=content,
            input_size=input_size,
        )

    def to_original(self, model_map: np.ndarray) -> np.ndarray:
        """Map a 2-D map covering the S x S input (e.g. an h x w CAM) to ``(rows, columns)``.

        The map is sampled bilinearly at the centre of each original pixel; padding is cropped out.

        Args:
            model_map: Any 2-D map whose extent is the whole model input.

        Returns:
            float32 array of shape ``original_shape``.
        """
        src = np.asarray(model_map, dtype=np.float32)
        if src.ndim != 2:
            raise ValueError(f"Expected a 2-D map, got shape {src.shape}.")
        rows, columns = self.original_shape
        per_model_row = src.shape[0] / self.input_size
        per_model_col = src.shape[1] / self.input_size
        # Centre of original pixel r in model pixels, then in map pixels (half-pixel convention).
        y = (self.pad_top + (np.arange(rows) + 0.5) * (self.content_shape[0] / rows)) * per_model_row - 0.5
        x = (
            self.pad_left + (np.arange(columns) + 0.5) * (self.content_shape[1] / columns)
        ) * per_model_col - 0.5
        return _sample_bilinear(src, y, x)

    def to_model(self, original_map: np.ndarray) -> np.ndarray:
        """Map a ``(rows, columns)`` map or mask to S x S model geometry (zero padding).

        Boolean masks use nearest neighbour and stay boolean; other maps use area averaging (bilinear
        where the model is finer than the original) and come back as float32.
        """
        src = np.asarray(original_map)
        if src.shape != self.original_shape:
            raise ValueError(f"Expected a map of shape {self.original_shape}, got {src.shape}.")
        size = self.input_size
        top, left = self.pad_top, self.pad_left
        h, w = self.content_shape
        if src.dtype == np.bool_:
            mask = np.zeros((size, size), dtype=np.bool_)
            mask[top : top + h, left : left + w] = _resize.nearest(src, self.content_shape)
            return mask
        out = np.zeros((size, size), dtype=np.float32)
        out[top : top + h, left : left + w] = _resize.resize(src.astype(np.float32), self.content_shape)
        return out

    def model_to_original_point(self, row: float, column: float) -> tuple[float, float]:
        """Convert a point in model pixel coordinates (continuous, pixel centres at +0.5) to original ones."""
        return (
            (row - self.pad_top) * self.original_shape[0] / self.content_shape[0],
            (column - self.pad_left) * self.original_shape[1] / self.content_shape[1],
        )


def _sample_bilinear(src: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    y = np.clip(y, 0.0, src.shape[0] - 1)
    x = np.clip(x, 0.0, src.shape[1] - 1)
    y0 = np.floor(y).astype(np.intp)
    x0 = np.floor(x).astype(np.intp)
    y1 = np.minimum(y0 + 1, src.shape[0] - 1)
    x1 = np.minimum(x0 + 1, src.shape[1] - 1)
    wy = (y - y0).astype(np.float32)[:, None]
    wx = (x - x0).astype(np.float32)[None, :]
    rows = src[y0] * (1 - wy) + src[y1] * wy  # (rows, w): interpolate along y on the small map first
    return np.asarray(rows[:, x0] * (1 - wx) + rows[:, x1] * wx, dtype=np.float32)
