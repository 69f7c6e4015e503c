"""Offline training code (torch): student model, export, dataset, teachers, distillation.

The runtime (``vla_edge/``) never imports this package.
"""
