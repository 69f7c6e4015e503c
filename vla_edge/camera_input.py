"""The camera student's image input and camera geometry (numpy + OpenCV, no torch).

One preprocessing for the runtime and for training (``docs/model.md``, "Camera branch"):
:func:`image_tensor` turns a decoded RGB image (H x W x 3 uint8, as ``Frame.images`` holds
it) into the model's ``image`` tensor: the whole image resized with ``cv2.INTER_AREA`` to the
preset's input size (no crop), scaled to [0, 1], normalised per channel with the preset's
mean/std and laid out CHW float32. :func:`camera_geometry` gives what the lift needs: the
intrinsics scaled to that input size and the camera -> ``base_link`` transform, both from the
:class:`~vla_edge.calibration.Calibration`. The exporter builds the lift's projection matrix
from that geometry and writes it to the manifest's ``camera`` block; the runtime checks its
calibration against it.

:func:`frame_image_input` applies the runtime policy for a bad camera: a missing, stale,
undecodable, corrupt or wrong-size image gives a zero image and ``camera_valid = 0``, which
gates the camera's BEV features to exactly zero in the graph (LiDAR-only); the reason code is
returned so the runner can count it. :func:`image_tensor` itself raises typed errors
(:class:`CameraInputError` and subclasses of :class:`~vla_edge.pillarize.ModelInputError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.calibration import Calibration, Intrinsics
from vla_edge.pillarize import ModelInputError

#: Reason codes of :func:`frame_image_input` (``ok`` = the image was used).
REASONS = ("ok", "missing", "stale", "undecodable", "corrupt", "wrong_size")


class CameraInputError(ModelInputError):
    """A camera image cannot be turned into the model's image input (reason in ``reason``)."""

    reason = "corrupt"


class ImageMissingError(CameraInputError):
    """No image (None) where one is needed."""

    reason = "missing"


class ImageCorruptError(CameraInputError):
    """Not an H x W x 3 uint8 array (wrong type, dtype, rank or channel count, empty)."""

    reason = "corrupt"


class ImageSizeError(CameraInputError):
    """The image is not the size the calibration's intrinsics belong to."""

    reason = "wrong_size"


@dataclass(frozen=True)
class CameraSpec:
    """The camera input of a camera preset (``presets.<name>.camera`` of ``config/model.yaml``).

    Attributes:
        name: Calibration sensor name and ``Frame.images`` key (``"camera_front"``).
        height: Model input height [px].
        width: Model input width [px].
        mean: Per-channel (R, G, B) mean of the [0, 1] image, subtracted.
        std: Per-channel (R, G, B) std, divided by.
    """

    name: str
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CameraSpec:
        """From a preset's ``camera`` section or a manifest's ``camera`` block.

        Raises:
            CameraInputError: Missing or malformed keys.
        """
        try:
            h, w = (int(v) for v in raw["image_size"])
            spec = cls(
                name=str(raw["name"]),
                height=h,
                width=w,
                mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in raw["std"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraInputError(
                f"camera block needs name, image_size [h, w], mean [3], std [3]: {exc!r}"
            ) from None
        if h < 1 or w < 1 or len(spec.mean) != 3 or len(spec.std) != 3 or min(spec.std) <= 0:
            raise CameraInputError(f"camera block {dict(raw)!r}: bad size, mean or std")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the manifest's ``camera`` block holds this plus the geometry)."""
        return {
            "name": self.name,
            "image_size": [self.height, self.width],
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": "1x3xHxW float32 RGB, cv2.INTER_AREA resize of the whole image, (x/255 - mean) / std",
        }


@dataclass(frozen=True)
class CameraGeometry:
    """What the lift needs: intrinsics at the model input size and the extrinsics.

    Attributes:
        intrinsics: Intrinsics scaled to the model input (``width`` x ``height`` of the spec).
        source: Intrinsics of the full-resolution image (the size a frame's image must have).
        cam_to_base: 4 x 4 transform, optical frame (z forward, x right, y down) -> ``base_link``.
    """

    intrinsics: Intrinsics
    source: Intrinsics
    cam_to_base: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the manifest (``K`` of the input size, ``source_size``, ``cam_to_base``)."""
        k = self.intrinsics
        return {
            "K": np.round(k.matrix(), 6).tolist(),
            "source_size": [self.source.height, self.source.width],
            "source_K": np.round(self.source.matrix(), 6).tolist(),
            "cam_to_base": np.round(self.cam_to_base, 6).tolist(),
        }


def camera_geometry(calib: Calibration, spec: CameraSpec) -> CameraGeometry:
    """Scaled intrinsics and camera -> ``base_link`` extrinsics of ``spec.name``.

    Raises:
        FrameError: The camera is not in the calibration or has no intrinsics.
    """
    src = calib.camera_intrinsics(spec.name)
    return CameraGeometry(
        intrinsics=src.scaled(spec.width, spec.height),
        source=src,
        cam_to_base=calib.matrix(calib.sensor_frame(spec.name)),
    )


def resized_image(image: Any, spec: CameraSpec, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """The first half of :func:`image_tensor`: checks, then the ``cv2.INTER_AREA`` resize.

    Returns ``[spec.height, spec.width, 3]`` uint8 RGB. On-policy training stores exactly this
    array per frame (46 KB at 96 x 160) and applies :func:`normalise_image` (or its constants,
    :func:`image_normalisation`, on the GPU) per batch, so training sees the runtime's tensor.

    Raises:
        ImageMissingError: ``image`` is None.
        ImageCorruptError: Not an H x W x 3 uint8 numpy array.
        ImageSizeError: Size differs from ``source_size``.
    """
    import cv2

    if image is None:
        raise ImageMissingError(f"no image from camera '{spec.name}'")
    if not isinstance(image, np.ndarray):
        raise ImageCorruptError(
            f"camera '{spec.name}' image must be a numpy array, got {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageCorruptError(
            f"camera '{spec.name}' image must be H x W x 3 (RGB), got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ImageCorruptError(f"camera '{spec.name}' image must be uint8, got {image.dtype}")
    if source_size is not None and tuple(image.shape[:2]) != tuple(source_size):
        raise ImageSizeError(
            f"camera '{spec.name}' image is {image.shape[0]} x {image.shape[1]} but its calibrated "
            f"intrinsics belong to {source_size[0]} x {source_size[1]} (calibration.yaml "
            f"sensors.{spec.name}.intrinsics)"
        )
    if image.shape[:2] != (spec.height, spec.width):
        image = cv2.resize(
            np.ascontiguousarray(image), (spec.width, spec.height), interpolation=cv2.INTER_AREA
        )
    return np.ascontiguousarray(image)


def image_normalisation(spec: CameraSpec) -> tuple[np.float32, np.ndarray, np.ndarray]:
    """``(scale, mean [3], inv_std [3])`` float32: the tensor is ``(x * scale - mean) * inv_std``."""
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
    return scale, mean, inv_std


def normalise_image(resized: np.ndarray, spec: CameraSpec) -> np.ndarray:
    """The second half of :func:`image_tensor`: ``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32."""
    scale, mean, inv_std = image_normalisation(spec)
    out = (resized.astype(np.float32) * scale - mean) * inv_std
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def image_tensor(image: Any, spec: CameraSpec, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """The model's image input ``[3, H, W]`` float32 of a decoded RGB image.

    The one preprocessing of runtime and training: whole image, ``cv2.INTER_AREA`` resize to
    ``(spec.height, spec.width)``, ``(x / 255 - mean) / std`` per channel, CHW
    (:func:`resized_image` then :func:`normalise_image`).

    Args:
        image: H x W x 3 uint8 RGB (``Frame.images[name]``).
        spec: The camera input spec of the model.
        source_size: ``(height, width)`` the image must have (the calibration's intrinsics
            belong to that size); None skips the check.

    Raises:
        ImageMissingError: ``image`` is None.
        ImageCorruptError: Not an H x W x 3 uint8 numpy array.
        ImageSizeError: Size differs from ``source_size``.
    """
    return normalise_image(resized_image(image, spec, source_size), spec)


def frame_resized_image(
    frame: Any, spec: CameraSpec, source_size: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, str]:
    """``(resized uint8 [H, W, 3] or None, reason)`` of a frame: :func:`frame_image_input`'s policy.

    None (with the reason code) where the runtime would run LiDAR-only.
    """
    img = frame.images.get(spec.name)
    stale = spec.name in frame.stale
    if img is None:
        return None, "undecodable" if stale else "missing"
    if stale:
        return None, "stale"
    try:
        return resized_image(img, spec, source_size), "ok"
    except CameraInputError as exc:
        return None, exc.reason


def frame_image_input(
    frame: Any, spec: CameraSpec, source_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, float, str]:
    """``(image [3, H, W], camera_valid, reason)`` of a :class:`~vla_edge.types.Frame`.

    A usable image gives ``(tensor, 1.0, "ok")``. Otherwise the model runs LiDAR-only: a
    zero image, ``camera_valid = 0.0`` (the graph multiplies the camera's BEV features by it)
    and the reason: ``missing`` (no image for the camera), ``stale`` (older than
    ``frame.yaml max_age_s``), ``undecodable`` (the assembler could not decode it),
    ``corrupt`` (not H x W x 3 uint8) or ``wrong_size`` (not the calibrated size).
    """
    resized, reason = frame_resized_image(frame, spec, source_size)
    if resized is not None:
        return normalise_image(resized, spec), 1.0, "ok"
    return np.zeros((3, spec.height, spec.width), np.float32), 0.0, reason
