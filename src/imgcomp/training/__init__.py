"""Training infrastructure shared by every system: the loop (:mod:`.trainer`: named optimisers,
checkpoints, exact resume, DDP, logging), checkpoints, distributed setup and training batches.
A system's own steps live in its package (``imgcomp.systems.<name>.training``)."""
