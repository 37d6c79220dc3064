"""Training: the loop (``loop``: build, resume, train_epoch, end_epoch over a small
``TrainState``), sampling, checkpoints, the device side of the step, and data-parallel
training with torchrun (``distributed``)."""
