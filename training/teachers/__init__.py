"""Teachers that write labels in the ``vla_edge.labels/1`` schema (:mod:`training.labels`).

* :mod:`training.teachers.expert` — (a) the simulator's privileged expert, read from the bags'
  ``/sim/expert_trajectory`` and ``/sim/reasoning`` topics (kept in the dataset shards);
* :mod:`training.teachers.learned` — (b) a trained model (the large ``teacher`` preset);
* :mod:`training.teachers.external` — (c) labels produced elsewhere (e.g. a VLA such as
  Alpamayo run offline), imported from JSON Lines or a schema ``.npz``.
"""
