"""Offline explanation of logged drives: rebuild frames, run a teacher, write aligned rows.

Entry points: ``vla-edge explain`` (``vla_edge/cli/explain.py``) and
:func:`vla_edge.explain.run.explain`. Teachers: :mod:`vla_edge.explain.teachers`.
See ``docs/recording.md``.
"""

from __future__ import annotations

from vla_edge.explain.teachers import (
    ENTRY_POINT_GROUP,
    ExternalVLAAdapter,
    Teacher,
    TeacherContext,
    TeacherError,
    TeacherOutput,
    load_teacher,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExternalVLAAdapter",
    "Teacher",
    "TeacherContext",
    "TeacherError",
    "TeacherOutput",
    "load_teacher",
]
