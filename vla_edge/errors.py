"""Typed exceptions shared by the runtime core.

Each subsystem raises a subclass of :class:`VlaEdgeError` so that nodes can turn any
core failure into a skipped frame plus a diagnostic instead of a crash.
"""

from __future__ import annotations


class VlaEdgeError(Exception):
    """Base class of every error raised by vla_edge."""


class ConfigError(VlaEdgeError):
    """A configuration file is missing, unreadable or has invalid values."""


class ConversionError(VlaEdgeError):
    """A ROS message cannot be converted to numpy (or back)."""


class PointCloudError(ConversionError):
    """A PointCloud2 is malformed: missing fields, short data, bad layout."""


class ImageError(ConversionError):
    """An Image/CompressedImage has an unknown encoding or inconsistent size."""


class FrameError(VlaEdgeError):
    """A frame cannot be assembled (unknown frame id, no odometry, ...)."""


class StampError(FrameError):
    """A header stamp is too far from the receiving node's clock to be trusted."""


class ModelError(VlaEdgeError):
    """A model file is unknown, corrupt, truncated or does not match its manifest."""


class ManifestError(ModelError):
    """A model manifest is missing, malformed or disagrees with the model file."""


class BackendUnavailableError(ModelError):
    """The requested inference backend cannot run on this machine."""


class PlanningError(VlaEdgeError):
    """The planner or arbiter got inputs it cannot use."""


class RecorderError(VlaEdgeError):
    """The recorder cannot write (disk full, unwritable directory, ...)."""


class BagError(VlaEdgeError):
    """A rosbag2 cannot be read or written."""
