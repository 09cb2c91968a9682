"""Offline batch scoring on Ray Data: input planning, a streaming datasource, predictor actors, the writer
(`batch_predict` loads on first use, so the datasource's read tasks import only what reading needs)."""

from mtrec.lazy import lazy_exports

_EXPORTS = {"BatchResult": "mtrec.batch.driver", "batch_predict": "mtrec.batch.driver"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
