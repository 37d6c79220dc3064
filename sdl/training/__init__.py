"""Training: the loop (``loop``: build, resume, train_epoch, end_epoch over a small
``TrainState``) for either model family, what a run is built from (``setup``: the model, the
optimiser's groups, the datasets), the lr schedules (``schedules``), Epsilon's token cache
(``token_cache``), sampling, checkpoints, the device side of the step, and data-parallel
training with torchrun (``distributed``)."""
