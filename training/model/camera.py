"""Optional camera branch: image encoder -> per-column depth-bin features -> fixed lift -> BEV.

A simple lift-splat with a FIXED depth distribution (docs/model.md, "Camera branch"):

1. :class:`ImageEncoder`: 3x3 conv stages (Conv + BatchNorm + ReLU; BN folds into the Conv at
   export) down to ``[B, Cf, H/s, W/s]``.
2. A conv spanning the whole feature height turns every feature column into ``C x D``
   channels: ``C`` features for each of ``D`` depth bins (image row carries depth on a
   flat apron, so the conv can learn where along the ray a feature belongs).
3. The lift: one MatMul with a constant matrix ``[D * W', Hb * Wb]`` built here from the
   intrinsics and extrinsics (:func:`lift_matrix`): entry ``((d, w), cell)`` is the share of
   the frustum cell (column ``w``, depth bin ``d``) that falls into BEV cell ``cell``, and
   every BEV cell's row of weights is normalised to sum 1 (a mean over what covers it).
4. A 3x3 conv on the camera BEV, then a multiplication by ``camera_valid`` (0 = LiDAR-only).

Only Conv / Relu / Reshape / MatMul / Mul in the graph: no GridSample, no data-dependent
shapes (TensorRT op audit: ``vla_edge.backends.trt_audit``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from training.model.backbone import conv_bn_relu
from training.model.config import CameraPresetConfig
from vla_edge.camera_input import CameraGeometry
from vla_edge.pillarize import PillarSpec


def bev_cells(spec: PillarSpec, neck_stride: int) -> tuple[int, int, float, float]:
    """``(Hb, Wb, cell_x, cell_y)`` of the backbone's BEV output (rows are y, columns x)."""
    h, w = spec.grid_size
    return (
        h // neck_stride,
        w // neck_stride,
        spec.voxel_size[0] * neck_stride,
        spec.voxel_size[1] * neck_stride,
    )


def lift_matrix(
    geometry: CameraGeometry, cam: CameraPresetConfig, spec: PillarSpec, neck_stride: int
) -> np.ndarray:
    """The constant lift ``[D * W', Hb * Wb]`` float32 (row ``d * W' + w``, column ``r * Wb + c``).

    Frustum cell (column ``w``, depth bin ``d``) is sampled on a ``samples x samples`` grid of
    (u within the column, depth within the bin) on the principal row (``Y_cam = 0``), mapped
    to ``base_link`` and binned into the BEV cells of the LiDAR grid; each BEV cell's weights
    are then normalised to sum 1. Cells the camera does not see get zero.
    """
    k = geometry.intrinsics.matrix()
    fx, cx = k[0, 0], k[0, 2]
    w_feat = cam.image_size[1] // cam.stride
    n_bins, n = cam.depth_bins, cam.samples
    hb, wb, cell_x, cell_y = bev_cells(spec, neck_stride)
    x_min, y_min = spec.point_cloud_range[0], spec.point_cloud_range[1]
    edges = np.linspace(cam.depth_range[0], cam.depth_range[1], n_bins + 1)
    frac = (np.arange(n) + 0.5) / n
    u = (np.arange(w_feat)[:, None] + frac[None, :]) * cam.stride  # [W', n] pixel u
    z = edges[:-1, None] + frac[None, :] * np.diff(edges)[:, None]  # [D, n] depth
    # p_cam of every sample: [D, W', n_z, n_u, 3]
    zz = z[:, None, :, None]
    xc = (u[None, :, None, :] - cx) / fx * zz
    shape = (n_bins, w_feat, n, n)
    p_cam = np.stack([np.broadcast_to(xc, shape), np.zeros(shape), np.broadcast_to(zz, shape)], -1)
    rot, trans = geometry.cam_to_base[:3, :3], geometry.cam_to_base[:3, 3]
    p = p_cam @ rot.T + trans
    col = np.floor((p[..., 0] - x_min) / cell_x).astype(np.int64)
    row = np.floor((p[..., 1] - y_min) / cell_y).astype(np.int64)
    inside = (col >= 0) & (col < wb) & (row >= 0) & (row < hb)
    src = np.broadcast_to(
        (np.arange(n_bins)[:, None] * w_feat + np.arange(w_feat)[None, :])[..., None, None], shape
    )
    mat = np.zeros((n_bins * w_feat, hb * wb), np.float64)
    np.add.at(mat, (src[inside], row[inside] * wb + col[inside]), 1.0)
    total = mat.sum(0, keepdims=True)
    mat = np.divide(mat, total, out=np.zeros_like(mat), where=total > 0)
    return mat.astype(np.float32)


class ImageEncoder(nn.Module):
    """Strided 3x3 conv stages: ``[B, 3, H, W]`` -> ``[B, C_last, H / s, W / s]``."""

    def __init__(self, stages: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        layers, c_prev = [], 3
        for ch, stride in stages:
            layers.append(conv_bn_relu(c_prev, ch, 3, stride))
            c_prev = ch
        self.layers = nn.Sequential(*layers)
        self.out_channels = c_prev

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class CameraBranch(nn.Module):
    """Image -> camera BEV ``[B, C, Hb, Wb]`` on the LiDAR BEV grid, gated by ``camera_valid``.

    Args:
        cam: The preset's camera config.
        geometry: Intrinsics (at the input size) and extrinsics the lift is built from.
        spec: The LiDAR pillar grid.
        neck_stride: BEV output cell size in grid cells.
    """

    def __init__(
        self, cam: CameraPresetConfig, geometry: CameraGeometry, spec: PillarSpec, neck_stride: int
    ) -> None:
        super().__init__()
        self.cam = cam
        h, w = cam.image_size
        self.hb, self.wb, _, _ = bev_cells(spec, neck_stride)
        self.encoder = ImageEncoder(cam.stages)
        h_feat, self.w_feat = h // cam.stride, w // cam.stride
        c, d = cam.bev_channels, cam.depth_bins
        self.columns = nn.Sequential(nn.Conv2d(self.encoder.out_channels, c * d, (h_feat, 1)), nn.ReLU())
        self.post = conv_bn_relu(c, c, 3, 1)
        # Training-only auxiliary head (issue 18; never in forward / the export): the column
        # features, averaged over the columns, classify the distance to the next stop line
        # (cam.stop_line_bins + "none / beyond"). The painted line is camera-only and braking for
        # it is rare; this gives the image encoder and the column conv the lift reads a dense
        # signal on every frame. None without ``stop_line_bins``.
        self.stop_line_head: nn.Linear | None = None
        if cam.stop_line_classes:
            with torch.random.fork_rng(devices=[]):  # the rest of a seeded model inits as without it
                self.stop_line_head = nn.Linear(c * d, cam.stop_line_classes)
        # Persistent: a checkpoint carries the geometry it was trained with; the exporter
        # writes it to the manifest and the runtime checks its calibration against it.
        self.register_buffer("lift", torch.from_numpy(lift_matrix(geometry, cam, spec, neck_stride)))
        self.register_buffer("K", torch.as_tensor(geometry.intrinsics.matrix(), dtype=torch.float64))
        self.register_buffer("cam_to_base", torch.as_tensor(geometry.cam_to_base, dtype=torch.float64))
        self.register_buffer("source_K", torch.as_tensor(geometry.source.matrix(), dtype=torch.float64))
        self.register_buffer(
            "source_size", torch.tensor([geometry.source.height, geometry.source.width], dtype=torch.int64)
        )

    def column_features(self, image: Tensor) -> Tensor:
        """``image [B, 3, H, W]`` -> per-column depth-bin features ``[B, C * D, 1, W']`` (before the lift)."""
        return self.columns(self.encoder(image))

    def forward(self, image: Tensor, camera_valid: Tensor, cols: Tensor | None = None) -> Tensor:
        """``image [B, 3, H, W]``, ``camera_valid [B, 1]`` -> ``[B, C, Hb, Wb]``.

        ``cols``: :meth:`column_features` of ``image`` when the caller already has them.
        """
        c = self.cam.bev_channels
        cols = self.column_features(image) if cols is None else cols  # [B, C * D, 1, W']
        flat = cols.reshape(-1, c, self.cam.depth_bins * self.w_feat)  # index d * W' + w
        bev = torch.matmul(flat, self.lift).reshape(-1, c, self.hb, self.wb)
        return self.post(bev) * camera_valid.reshape(-1, 1, 1, 1)

    def stop_line_logits(self, cols: Tensor) -> Tensor:
        """:meth:`column_features` ``[B, C * D, 1, W']`` -> stop-line distance logits ``[B, K]``."""
        assert self.stop_line_head is not None, "preset without camera.stop_line_bins"
        return self.stop_line_head(cols.mean(dim=(2, 3)))

    def geometry_dict(self) -> dict[str, object]:
        """The geometry the lift was built from (manifest ``camera`` block)."""
        return {
            "K": np.round(self.K.detach().cpu().numpy(), 6).tolist(),
            "source_size": [int(v) for v in self.source_size.tolist()],
            "source_K": np.round(self.source_K.detach().cpu().numpy(), 6).tolist(),
            "cam_to_base": np.round(self.cam_to_base.detach().cpu().numpy(), 6).tolist(),
        }
