"""2D CNN backbone and neck on the scattered pillar canvas -> BEV feature map."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU; padding keeps ``H / stride``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2 if k % 2 else 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BevBackbone(nn.Module):
    """Stages of 3x3 conv blocks, then a neck that resamples every stage to one resolution.

    Args:
        in_channels: Pillar feature channels.
        stages: ``(channels, blocks, stride)`` per stage.
        out_channels: BEV feature channels.
        neck_stride: Output cell size in grid cells (product of strides up to that level).
    """

    def __init__(
        self, in_channels: int, stages: Sequence[Sequence[int]], out_channels: int, neck_stride: int
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        self.laterals = nn.ModuleList()
        c_prev, total = in_channels, 1
        for ch, blocks, stride in stages:
            layers = [conv_bn_relu(c_prev, ch, 3, stride)]
            layers += [conv_bn_relu(ch, ch, 3, 1) for _ in range(blocks - 1)]
            self.stages.append(nn.Sequential(*layers))
            total *= stride
            self.laterals.append(self._lateral(ch, out_channels, total, neck_stride))
            c_prev = ch
        self.fuse = conv_bn_relu(out_channels, out_channels, 3, 1)

    @staticmethod
    def _lateral(c_in: int, c_out: int, stage_stride: int, neck_stride: int) -> nn.Module:
        if stage_stride == neck_stride:
            return conv_bn_relu(c_in, c_out, 1, 1)
        if stage_stride < neck_stride:  # finer than the output: strided conv down
            f = neck_stride // stage_stride
            return conv_bn_relu(c_in, c_out, f, f)
        f = stage_stride // neck_stride  # coarser: transposed conv up
        return nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, f, stride=f, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, canvas: Tensor) -> Tensor:
        """``[B, Cp, H, W]`` -> ``[B, out_channels, H / neck_stride, W / neck_stride]``."""
        x, fused = canvas, None
        for stage, lateral in zip(self.stages, self.laterals):
            x = stage(x)
            y = lateral(x)
            fused = y if fused is None else fused + y
        return self.fuse(fused)
