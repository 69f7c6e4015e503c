"""Student model: PointPillars BEV encoder + DiffusionDrive-style truncated diffusion head.

One job per file: ``config`` (typed config from ``config/model.yaml``), ``pillars`` (torch
pillarization, pillar feature net, scatter), ``backbone`` (BEV CNN + neck), ``ego_encoder``,
``scheduler`` (DDIM, x0-prediction), ``decoder`` (cascade decoder layer), ``head``
(truncated diffusion head), ``model`` (the whole student), ``loss``, ``anchors``, ``presets``.
"""

from training.model.config import ModelConfig
from training.model.model import StudentModel
from training.model.presets import build_model

__all__ = ["ModelConfig", "StudentModel", "build_model"]
