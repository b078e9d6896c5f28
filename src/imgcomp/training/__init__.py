"""Training: objectives, the concurrent (E, D, Q) / P loop, checkpoints, DDP."""
