"""Adding a task to a trained model: frozen-backbone prompt tuning (MPT-Rec stage 2) and the new-task baselines."""

from mtrec.tasks.add import METHODS, AddTaskResult, add_task

__all__ = ["METHODS", "AddTaskResult", "add_task"]
