"""mtrec: multi-task recommendation with prompt tuning for new tasks, on TorchRec, FBGEMM and Ray.

The public names below load on first use (`mtrec.train`, `from mtrec import add_task`), so importing one small
submodule does not pull in torch, TorchRec and FBGEMM.
"""

from mtrec.errors import DataError, OutputError
from mtrec.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Schema": "mtrec.data.schema", "datasets": "mtrec.data.datasets:",
    "MultiTaskModel": "mtrec.model", "NotTrainedError": "mtrec.model",
    "CheckpointError": "mtrec.checkpoint", "TrainResult": "mtrec.train.loop",
    "build_model": "mtrec.api", "train": "mtrec.api", "evaluate": "mtrec.api", "save": "mtrec.api",
    "load": "mtrec.api", "remove_task": "mtrec.api",
    "add_task": "mtrec.tasks", "AddTaskResult": "mtrec.tasks",
    "quantize": "mtrec.quant", "QuantizedModel": "mtrec.quant", "Predictor": "mtrec.quant",
    "batch_predict": "mtrec.batch.driver", "BatchResult": "mtrec.batch.driver",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["DataError", "OutputError", *_EXPORTS]
