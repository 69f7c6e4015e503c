"""``sensor_msgs/Image`` and ``CompressedImage`` <-> H x W x 3 uint8 RGB.

Hand-written because ``cv_bridge`` (and ``sensor_msgs_py``) cannot be installed from any
registry reachable here; they ship only as ROS distro packages. OpenCV (``python3-opencv``
/ ``opencv-python``) does the JPEG/PNG codec and the YUV 4:2:2 colour conversion. Reading
duck-types on the message fields, so rclpy and rosbags messages both work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_edge.errors import ImageError
from vla_edge.msgfactory import MessageFactory

# encoding -> (bytes per pixel, channels, numpy dtype)
_RAW: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 3, "u1"),
    "bgr8": (3, 3, "u1"),
    "rgba8": (4, 4, "u1"),
    "bgra8": (4, 4, "u1"),
    "mono8": (1, 1, "u1"),
    "8uc1": (1, 1, "u1"),
    "8uc3": (3, 3, "u1"),  # OpenCV convention: BGR
    "mono16": (2, 1, "u2"),
    "16uc1": (2, 1, "u2"),
    "uyvy": (2, 2, "u1"),
    "yuv422": (2, 2, "u1"),  # ROS name for UYVY
    "yuyv": (2, 2, "u1"),
    "yuv422_yuy2": (2, 2, "u1"),  # ROS name for YUYV
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_RAW))
SUPPORTED_COMPRESSED: tuple[str, ...] = ("jpeg", "png")
_UYVY = ("uyvy", "yuv422")
_YUYV = ("yuyv", "yuv422_yuy2")


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ImageError(
            "OpenCV is needed for compressed and YUV images: pip install opencv-python-headless "
            "(or apt install python3-opencv)"
        ) from None
    return cv2


def _buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to H x W x 3 uint8 RGB (a new array).

    Supported encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8/8UC1, 8UC3 (BGR),
    mono16/16UC1 (high byte kept, i.e. ``v >> 8``), uyvy/yuv422 and yuyv/yuv422_yuy2
    (BT.601). Row padding (``step > width * bytes_per_pixel``) is skipped.

    Raises:
        ImageError: Unknown encoding, ``step`` too small, data shorter than
            ``height * step``, or odd width for a 4:2:2 encoding.
    """
    enc = str(msg.encoding).lower()
    if enc not in _RAW:
        raise ImageError(
            f"unsupported Image encoding '{msg.encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}. "
            "Republish in one of those (e.g. image_proc debayer for bayer_* encodings)"
        )
    bpp, ch, np_type = _RAW[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageError(f"Image '{enc}' is empty ({w}x{h})")
    if step < w * bpp:
        raise ImageError(
            f"Image step={step} B is smaller than width*bytes_per_pixel = {w}*{bpp} = {w * bpp} B"
        )
    buf = _buffer(msg.data)
    need = (h - 1) * step + w * bpp  # the last row's padding may be omitted
    if buf.size < need:
        raise ImageError(
            f"Image data has {buf.size} B but {w}x{h} '{enc}' with step={step} needs {need} B; "
            "truncated message"
        )
    rows = np.ndarray((h, w * bpp), dtype=np.uint8, buffer=buf, strides=(step, 1))
    if enc in _UYVY or enc in _YUYV:
        if w % 2:
            raise ImageError(f"Image '{enc}' (4:2:2) needs an even width, got {w}")
        cv2 = _cv2()
        code = cv2.COLOR_YUV2RGB_UYVY if enc in _UYVY else cv2.COLOR_YUV2RGB_YUYV
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(h, w, 2), code)
    if np_type == "u2":
        big = bool(getattr(msg, "is_bigendian", False))
        px = np.ascontiguousarray(rows).view(">u2" if big else "<u2").reshape(h, w)
        gray = (px >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    px = rows.reshape(h, w, ch)
    if ch == 1:
        return np.repeat(px, 3, axis=2)
    if enc in ("bgr8", "bgra8", "8uc3"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return px[:, :, :3].copy()  # never alias the message buffer


# JPEG start-of-frame markers (baseline, progressive, lossless...; not DHT C4, JPG C8, DAC CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_dimensions(data: Any) -> tuple[int, int] | None:
    """``(width, height)`` declared by a PNG IHDR or JPEG SOF header, without decoding.

    Returns None when neither a PNG nor a JPEG header with a frame size is found.
    """
    b = bytes(_buffer(data)[:65536])  # the SOF segment sits in the first few kB
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24 and b[12:16] == b"IHDR":
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(b):
            if b[i] != 0xFF:
                i += 1  # padding / entropy-coded bytes: resync on the next marker
                continue
            marker = b[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2  # markers without a length
                continue
            seg_len = int.from_bytes(b[i + 2 : i + 4], "big")
            if marker in _JPEG_SOF and i + 9 <= len(b):
                return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
            if seg_len < 2:
                break
            i += 2 + seg_len
    return None


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to H x W x 3 uint8 RGB.

    ``format`` may be a bare ``"jpeg"``/``"png"`` or image_transport's
    ``"<enc>; jpeg compressed bgr8"`` form. The size declared by the header is checked
    against ``max_pixels`` *before* decoding, so a hostile header (65500 x 65500) cannot
    make OpenCV allocate gigabytes or raise; any decoder error becomes an ImageError.

    Raises:
        ImageError: Unsupported format (e.g. compressedDepth), empty data, a declared size
            above ``max_pixels`` or of zero, or undecodable data.
    """
    fmt = str(msg.format).lower()
    kind = next((k for k in ("jpeg", "jpg", "png") if k in fmt), None)
    if kind is None or "compresseddepth" in fmt.replace(" ", ""):
        raise ImageError(
            f"unsupported CompressedImage format '{msg.format}'; supported: "
            f"{', '.join(SUPPORTED_COMPRESSED)} (image_transport 'compressed')"
        )
    buf = _buffer(msg.data)
    if buf.size == 0:
        raise ImageError(f"CompressedImage ({msg.format}) has no data")
    dims = compressed_dimensions(buf)
    if dims is None:
        raise ImageError(
            f"CompressedImage ({msg.format}, {buf.size} B) could not be decoded: no PNG/JPEG header "
            "declaring its size; data is corrupt or not the declared format"
        )
    w, h = dims
    if w == 0 or h == 0 or (max_pixels is not None and w * h > max_pixels):
        raise ImageError(
            f"CompressedImage ({msg.format}) declares {w}x{h} pixels; allowed 1..{max_pixels} "
            "(frame.yaml images.max_decoded_pixels); not decoded"
        )
    cv2 = _cv2()
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits and codec failures
        raise ImageError(
            f"CompressedImage ({msg.format}, {buf.size} B) could not be decoded: {str(exc).strip()}"
        ) from None
    if bgr is None:
        raise ImageError(
            f"CompressedImage ({msg.format}, {buf.size} B) could not be decoded; data is corrupt or "
            "not the declared format"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Convert an Image or a CompressedImage (told apart by ``encoding``/``format``).

    ``max_pixels`` bounds the declared width x height (ImageError above it).
    """
    if hasattr(msg, "encoding"):
        w, h = int(msg.width), int(msg.height)
        if max_pixels is not None and w * h > max_pixels:
            raise ImageError(
                f"Image declares {w}x{h} pixels; allowed up to {max_pixels} "
                "(frame.yaml images.max_decoded_pixels)"
            )
        return image_to_rgb(msg)
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, max_pixels)
    raise ImageError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a CompressedImage")


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f"expected an H x W x 3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    return arr


def _rgb_to_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """BT.601 limited-range 4:2:2, chroma averaged over each horizontal pixel pair."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u2 = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v2 = 0.5 * (v[:, 0::2] + v[:, 1::2])
    h, w = y.shape
    out = np.empty((h, w // 2, 4), dtype=np.float32)
    if uyvy:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u2, y[:, 0::2], v2, y[:, 1::2]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u2, y[:, 1::2], v2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w * 2)


def rgb_to_image(
    rgb: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    encoding: str = "rgb8",
    *,
    row_padding: int = 0,
) -> Any:
    """Build a ``sensor_msgs/Image`` from H x W x 3 uint8 RGB.

    Args:
        rgb: The image.
        factory: Message factory (rclpy or rosbags).
        stamp: Header stamp in seconds.
        frame_id: Header frame id (e.g. ``camera_front``).
        encoding: rgb8, bgr8, rgba8, bgra8, mono8, mono16, uyvy/yuv422 or yuyv/yuv422_yuy2.
        row_padding: Extra bytes per row (``step`` padding), filled with 0.

    Raises:
        ImageError: Bad array, unsupported encoding, or odd width for 4:2:2.
    """
    arr = _check_rgb(rgb)
    enc = encoding.lower()
    h, w, _ = arr.shape
    if enc in ("rgb8",):
        px = arr
    elif enc == "bgr8":
        px = arr[:, :, ::-1]
    elif enc in ("rgba8", "bgra8"):
        px = np.concatenate(
            [arr if enc == "rgba8" else arr[:, :, ::-1], np.full((h, w, 1), 255, np.uint8)], 2
        )
    elif enc in ("mono8", "mono16"):
        gray = np.rint(arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        px = gray if enc == "mono8" else (gray.astype("<u2") * 257).view(np.uint8).reshape(h, w, 2)
    elif enc in _UYVY or enc in _YUYV:
        if w % 2:
            raise ImageError(f"encoding '{encoding}' (4:2:2) needs an even width, got {w}")
        px = _rgb_to_yuv422(arr, uyvy=enc in _UYVY)
    else:
        raise ImageError(
            f"cannot build Image with encoding '{encoding}'; use one of rgb8, bgr8, rgba8, bgra8, mono8, "
            "mono16, uyvy, yuv422, yuyv, yuv422_yuy2"
        )
    rows = np.ascontiguousarray(px).reshape(h, -1)
    step = rows.shape[1] + row_padding
    data = np.zeros((h, step), dtype=np.uint8)
    data[:, : rows.shape[1]] = rows
    return factory.make(
        "sensor_msgs/msg/Image",
        header=factory.header(stamp, frame_id),
        height=h,
        width=w,
        encoding=enc,
        is_bigendian=0,
        step=step,
        data=factory.bytes_field(data),
    )


def rgb_to_compressed(
    rgb: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    fmt: str = "jpeg",
    quality: int = 90,
) -> Any:
    """Encode H x W x 3 uint8 RGB as a ``sensor_msgs/CompressedImage`` (image_transport style).

    Args:
        rgb: The image.
        factory: Message factory.
        stamp: Header stamp in seconds.
        frame_id: Header frame id.
        fmt: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality 1..100 (ignored for PNG).

    Raises:
        ImageError: Bad array, unknown format, quality out of range, or encoder failure.
    """
    arr = _check_rgb(rgb)
    kind = fmt.lower()
    if kind not in ("jpeg", "jpg", "png"):
        raise ImageError(f"cannot encode CompressedImage as '{fmt}'; use jpeg or png")
    if not 1 <= int(quality) <= 100:
        raise ImageError(f"JPEG quality must be in 1..100, got {quality}")
    cv2 = _cv2()
    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if kind == "png":
        ok, enc = cv2.imencode(".png", bgr)
        fmt_str = "rgb8; png compressed bgr8"
    else:
        ok, enc = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
        fmt_str = "rgb8; jpeg compressed bgr8"
    if not ok:
        raise ImageError(f"OpenCV failed to encode a {arr.shape} image as {kind}")
    return factory.make(
        "sensor_msgs/msg/CompressedImage",
        header=factory.header(stamp, frame_id),
        format=fmt_str,
        data=factory.bytes_field(enc.reshape(-1)),
    )
