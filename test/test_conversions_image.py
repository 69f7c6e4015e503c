"""Image / CompressedImage <-> RGB with the real nuScenes camera frame."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HAVE_RCLPY

from vla_edge.conversions.image import (
    SUPPORTED_ENCODINGS,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_compressed,
    rgb_to_image,
    to_rgb,
)
from vla_edge.errors import ImageError
from vla_edge.msgfactory import RclpyFactory, RosbagsFactory

FACTORIES = ["rosbags", *(["rclpy"] if HAVE_RCLPY else [])]


@pytest.fixture(params=FACTORIES)
def factory(request):
    return RosbagsFactory() if request.param == "rosbags" else RclpyFactory()


@pytest.fixture(scope="module")
def camera(shared_data):
    """The real 1600x900 JPEG as a CompressedImage (bytes straight from the file) and RGB."""
    import cv2

    jpeg = (shared_data / "camera_nuscenes_cam_front.jpg").read_bytes()
    bgr = cv2.imread(str(shared_data / "camera_nuscenes_cam_front.jpg"), cv2.IMREAD_COLOR)
    return jpeg, bgr[:, :, ::-1].copy()


def _compressed(factory, data: bytes, fmt: str = "jpeg"):
    return factory.make(
        "sensor_msgs/msg/CompressedImage",
        header=factory.header(1.0, "camera_front"),
        format=fmt,
        data=factory.bytes_field(data),
    )


def test_real_jpeg_through_compressed_image(factory, camera):
    jpeg, rgb = camera
    out = compressed_to_rgb(_compressed(factory, jpeg))
    assert out.shape == (900, 1600, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    # image_transport-style format string works too, and to_rgb dispatches.
    np.testing.assert_array_equal(to_rgb(_compressed(factory, jpeg, "bgr8; jpeg compressed bgr8")), rgb)


def test_real_jpeg_cdr_roundtrip_rosbags(camera):
    jpeg, rgb = camera
    f = RosbagsFactory()
    msg = _compressed(f, jpeg)
    t = "sensor_msgs/msg/CompressedImage"
    back = f.typestore.deserialize_cdr(f.typestore.serialize_cdr(msg, t), t)
    np.testing.assert_array_equal(compressed_to_rgb(back), rgb)


def test_reencode_jpeg_quality_and_png(factory, camera):
    _, rgb = camera
    small = rgb[::4, ::4].copy()
    hi = rgb_to_compressed(small, factory, 2.0, "camera_front", "jpeg", quality=95)
    lo = rgb_to_compressed(small, factory, 2.0, "camera_front", "jpeg", quality=20)
    assert "jpeg" in hi.format
    assert len(bytes(np.asarray(lo.data, np.uint8))) < len(bytes(np.asarray(hi.data, np.uint8)))
    err_hi = np.abs(compressed_to_rgb(hi).astype(int) - small).mean()
    err_lo = np.abs(compressed_to_rgb(lo).astype(int) - small).mean()
    assert err_hi < 3.0 and err_lo > err_hi
    png = rgb_to_compressed(small, factory, 2.0, "camera_front", "png")
    np.testing.assert_array_equal(compressed_to_rgb(png), small)  # lossless


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("row_padding", [0, 13])
def test_color_encodings_exact(factory, camera, encoding, row_padding):
    _, rgb = camera
    img = rgb[::5, ::5].copy()
    msg = rgb_to_image(img, factory, 1.0, "camera_front", encoding, row_padding=row_padding)
    assert msg.step == img.shape[1] * (4 if "a" in encoding else 3) + row_padding
    np.testing.assert_array_equal(image_to_rgb(msg), img)


def test_hand_built_bgr_with_padding(factory):
    # Independent of rgb_to_image: raw BGR bytes with 5 padding bytes per row.
    h, w = 3, 4
    rgb = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    raw = np.full((h, w * 3 + 5), 0xEE, np.uint8)
    raw[:, : w * 3] = rgb[:, :, ::-1].reshape(h, -1)
    msg = factory.make(
        "sensor_msgs/msg/Image",
        header=factory.header(0.0, "cam"),
        height=h,
        width=w,
        encoding="bgr8",
        is_bigendian=0,
        step=w * 3 + 5,
        data=factory.bytes_field(raw),
    )
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono(factory, camera, encoding):
    _, rgb = camera
    img = rgb[::8, ::8].copy()
    out = image_to_rgb(rgb_to_image(img, factory, 0.0, "cam", encoding))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    gray = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(out[..., 0] - gray).max() <= 1.0


def test_mono16_big_endian(factory):
    px = np.array([[0x1234, 0xFF00], [0x0100, 0x00FF]], dtype=">u2")
    msg = factory.make(
        "sensor_msgs/msg/Image",
        header=factory.header(0.0, "cam"),
        height=2,
        width=2,
        encoding="mono16",
        is_bigendian=1,
        step=4,
        data=factory.bytes_field(px.view(np.uint8).reshape(-1)),
    )
    np.testing.assert_array_equal(image_to_rgb(msg)[..., 0], [[0x12, 0xFF], [0x01, 0x00]])


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "yuyv", "yuv422_yuy2"])
def test_yuv422_real_image(factory, camera, encoding):
    _, rgb = camera
    img = rgb[::4, ::4].copy()
    out = image_to_rgb(rgb_to_image(img, factory, 0.0, "cam", encoding, row_padding=6))
    assert out.shape == img.shape
    # 4:2:2 chroma subsampling + BT.601 rounding: small mean error, bounded worst case.
    err = np.abs(out.astype(int) - img)
    assert err.mean() < 4.0 and np.percentile(err, 99) < 40


def test_yuv_byte_order_matters(factory):
    # A pure red pair: UYVY read as YUYV must give a different colour.
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255
    msg = rgb_to_image(img, factory, 0.0, "cam", "uyvy")
    assert image_to_rgb(msg)[0, 0, 0] > 200
    msg.encoding = "yuyv"
    assert image_to_rgb(msg)[0, 0, 0] < 200


def test_output_does_not_alias(factory):
    img = np.full((2, 2, 3), 7, np.uint8)
    msg = rgb_to_image(img, factory, 0.0, "cam", "rgb8")
    out = image_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(image_to_rgb(msg), img)


def test_supported_list_covers_issue():
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "uyvy", "yuyv"):
        assert enc in SUPPORTED_ENCODINGS


# ------------------------------------------------------------------ bad input


def _image(factory, encoding="rgb8", h=2, w=2, step=6, nbytes=12):
    return factory.make(
        "sensor_msgs/msg/Image",
        header=factory.header(0.0, "cam"),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=factory.bytes_field(np.zeros(nbytes, np.uint8)),
    )


def test_unknown_encoding_named(factory):
    with pytest.raises(ImageError, match=r"unsupported Image encoding 'bayer_rggb8'; supported: .*rgb8"):
        image_to_rgb(_image(factory, "bayer_rggb8"))


def test_short_data(factory):
    with pytest.raises(ImageError, match=r"has 10 B but 2x2 'rgb8' with step=6 needs 12 B"):
        image_to_rgb(_image(factory, nbytes=10))


def test_step_too_small(factory):
    with pytest.raises(ImageError, match=r"step=5 B is smaller than width\*bytes_per_pixel = 2\*3 = 6 B"):
        image_to_rgb(_image(factory, step=5))


def test_empty_and_odd_yuv(factory):
    with pytest.raises(ImageError, match="is empty"):
        image_to_rgb(_image(factory, h=0, nbytes=0))
    with pytest.raises(ImageError, match="needs an even width, got 3"):
        image_to_rgb(_image(factory, "uyvy", h=1, w=3, step=6, nbytes=6))
    with pytest.raises(ImageError, match="needs an even width, got 3"):
        rgb_to_image(np.zeros((2, 3, 3), np.uint8), factory, 0.0, "cam", "yuyv")


def test_compressed_bad_inputs(factory):
    with pytest.raises(ImageError, match="unsupported CompressedImage format 'tiff'"):
        compressed_to_rgb(_compressed(factory, b"abc", "tiff"))
    with pytest.raises(ImageError, match="unsupported CompressedImage format"):
        compressed_to_rgb(_compressed(factory, b"abc", "16UC1; compressedDepth png"))
    with pytest.raises(ImageError, match="has no data"):
        compressed_to_rgb(_compressed(factory, b"", "jpeg"))
    with pytest.raises(ImageError, match=r"\(jpeg, 9 B\) could not be decoded"):
        compressed_to_rgb(_compressed(factory, b"not jpeg!", "jpeg"))


def test_builder_bad_inputs(factory):
    with pytest.raises(ImageError, match=r"H x W x 3 uint8 RGB array, got float64 \(2, 2, 3\)"):
        rgb_to_image(np.zeros((2, 2, 3)), factory, 0.0, "cam")
    with pytest.raises(ImageError, match="cannot build Image with encoding 'nv12'"):
        rgb_to_image(np.zeros((2, 2, 3), np.uint8), factory, 0.0, "cam", "nv12")
    with pytest.raises(ImageError, match="cannot encode CompressedImage as 'webp'"):
        rgb_to_compressed(np.zeros((2, 2, 3), np.uint8), factory, 0.0, "cam", "webp")
    with pytest.raises(ImageError, match=r"quality must be in 1\.\.100, got 0"):
        rgb_to_compressed(np.zeros((2, 2, 3), np.uint8), factory, 0.0, "cam", quality=0)
    with pytest.raises(ImageError, match="neither a sensor_msgs/Image nor a CompressedImage"):
        to_rgb(object())
