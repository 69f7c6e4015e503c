"""Airside scenario simulator: seeded worlds, sensors, a privileged expert, bags and a harness.

numpy/OpenCV only (no rclpy, no torch). Entry points:

* ``vla_edge.sim.scenarios`` - :class:`ScenarioSpec`, :func:`suite`, :func:`make_scenario`;
* ``vla_edge.sim.bag_writer`` (or ``vla_edge.sim.bag``) - :func:`generate_scenario`,
  :func:`write_scenario_bag` (rosbag2 MCAP with the vehicle's topics);
* ``vla_edge.sim.harness`` - :func:`run_suite` (closed loop, PDMS-style scores),
  :class:`ExpertPlanner`, :class:`FrameBuilder`;
* ``vla-edge sim generate|evaluate`` on the command line.

See ``docs/simulator.md``.
"""
