"""Training: one engine for proxy runs and full training (torch; no Ray).

``recipe`` (the settings, torch-free), ``feeder`` (batches), ``device``, ``optim``,
``engine`` (the one training step), ``proxy`` (a short run, no checkpoints), ``fit`` (a full
run: checkpoints, early stopping, test, export) and ``checkpoint``. Importing this package
does not import torch; its modules do.
"""
