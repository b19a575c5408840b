"""Training AnimateAnything, apart from the product: not in the extension zip, never imported by it.

- data.py: the training data format (one folder per clip) and its dataset.
- losses.py: the losses of both stages, their batch types, what trains.
- train.py: the CLI, `python -m backend.training.train --stage 1|2 ...` (accelerate).
"""
