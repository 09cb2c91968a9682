"""Offline batch scoring on Ray Data: input planning, a streaming datasource, predictor actors, the writer."""

from mtrec.batch.driver import BatchResult, batch_predict

__all__ = ["BatchResult", "batch_predict"]
