"""mtrec data layer: schema, vocabularies, validation, DataFrame -> KJT batches, built-in datasets (loaded on
first use, so `mtrec.data.io` alone stays light)."""

from mtrec.errors import DataError
from mtrec.lazy import lazy_exports

_EXPORTS = {
    "datasets": "mtrec.data.datasets:", "Batch": "mtrec.data.batches", "EncodedFrame": "mtrec.data.batches",
    "encode_frame": "mtrec.data.batches", "read_frame": "mtrec.data.io", "Schema": "mtrec.data.schema",
    "validate_frame": "mtrec.data.validation", "OOV_ID": "mtrec.data.vocab", "Vocabularies": "mtrec.data.vocab",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["DataError", *_EXPORTS]
