"""mtrec data layer: schema, vocabularies, validation, DataFrame -> KJT batches, built-in datasets."""

from mtrec.data import datasets
from mtrec.data.batches import Batch, EncodedFrame, encode_frame
from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.data.validation import validate_frame
from mtrec.data.vocab import OOV_ID, Vocabularies
from mtrec.errors import DataError

__all__ = ["Batch", "DataError", "EncodedFrame", "OOV_ID", "Schema", "Vocabularies", "datasets", "encode_frame",
           "read_frame", "validate_frame"]
