"""Sequence data for the pretraining recipes: MovieLens-100k user histories, splits and batches."""

from pretrain_stack.data.sequences import (PAD, Batch, Objective, SequenceTask, Split, UserSequences, Vocab,
                                           build_sequences, load_ratings, lm_batch, mlm_batch, pad_right,
                                           seq2seq_batch, windows)

__all__ = [
    "PAD", "Batch", "Objective", "SequenceTask", "Split", "UserSequences", "Vocab", "build_sequences",
    "load_ratings", "lm_batch", "mlm_batch", "pad_right", "seq2seq_batch", "windows",
]
