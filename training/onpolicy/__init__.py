"""On-policy distillation (DAgger) from the simulator's privileged expert."""
