"""mtrec: multi-task recommendation with prompt tuning for new tasks, on TorchRec, FBGEMM and Ray."""

from mtrec.errors import DataError
from mtrec.data.schema import Schema
from mtrec.data import datasets
from mtrec.model import MultiTaskModel, NotTrainedError
from mtrec.train.checkpoint import CheckpointError
from mtrec.train.loop import TrainResult
from mtrec.api import build_model, evaluate, load, save, train
from mtrec.tasks import AddTaskResult, add_task
from mtrec.quant import Predictor, QuantizedModel, quantize
from mtrec.batch import BatchResult, batch_predict

__version__ = "0.1.0"

__all__ = [
    "DataError", "Schema", "datasets", "MultiTaskModel", "NotTrainedError", "CheckpointError", "TrainResult",
    "build_model", "train", "evaluate", "save", "load",
    "add_task", "AddTaskResult",
    "quantize", "QuantizedModel", "Predictor",
    "batch_predict", "BatchResult",
]
