"""Training: the loop (trainer), checkpoints and exported weights, metrics logs, DDP.

``sdmtalk train --data CACHE --config tiny|base|FILE [--out RUN_DIR] [--resume]``, or
``torchrun --nproc_per_node N -m sdmtalk.train ...`` for data-parallel training.
"""

from sdmtalk.train.checkpoint import export_weights
from sdmtalk.train.trainer import TrainResult, add_train_arguments, fit, run_train, train

__all__ = ["TrainResult", "add_train_arguments", "export_weights", "fit", "run_train", "train"]
