"""nncore: a pure-NumPy neural-network core.

Feed-forward networks (dense, batchnorm, layernorm and dropout layers) on one flat
parameter buffer, every activation and cost of the lecture notes with its derivative,
backpropagation and finite-difference gradients, gradient descent in its batch /
mini-batch / stochastic forms with schedules, momentum and adaptive optimisers, and a
trainer with callbacks and checkpoints that resume bit-for-bit. It imports nothing of
the rest of trainyard.
"""
from .activations import ACTIVATIONS, Activation
from .callbacks import Checkpointer, EarlyStopping
from .checkpoint import load_checkpoint, save_checkpoint
from .gradcheck import check_gradients, numerical_gradient
from .hooks import Callback, Outcome, StepLog, TrainResult
from .initializers import INITIALIZERS
from .job import Job, Model
from .layers import LAYERS, BatchNorm, Dropout, Layer, LayerNorm
from .losses import LOSSES, Loss
from .network import Dense, Network
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, Schedule
from .spec import SpecError, validate_spec
from .trainer import LocalReducer, TrainData, Trainer

__all__ = [
    "ACTIVATIONS", "Activation", "Callback", "Checkpointer", "EarlyStopping", "StepLog", "load_checkpoint",
    "save_checkpoint", "check_gradients", "numerical_gradient", "INITIALIZERS", "Job", "Model", "LOSSES", "Loss",
    "Dense", "Network", "LAYERS", "Layer", "BatchNorm", "LayerNorm", "Dropout",
    "OPTIMIZERS", "Optimizer", "SCHEDULES", "Schedule", "SpecError", "validate_spec",
    "LocalReducer", "Outcome", "Trainer", "TrainData", "TrainResult",
]
__version__ = "0.1.0"
