"""Loading our own torch files (`model.pt`, `checkpoint.pt`, `oracle.pt`) without running code.

`torch.load(..., weights_only=False)` unpickles arbitrary objects, so a planted file would run
code when the workflow reruns. Our files hold tensors, containers and plain Python values, which
torch's weights-only unpickler reads; anything else is refused with an error naming the file.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# What numpy's legacy RNG state (a uint32 key array, in the trainer's checkpoint) pickles with:
# the array reconstructor, the array and dtype classes, and the uint32 dtype only.
NUMPY_RNG_STATE: tuple[Any, ...] = (np.zeros(1, np.uint32).__reduce__()[0], np.ndarray, np.dtype,
                                    type(np.dtype(np.uint32)))


class TorchFileError(ValueError):
    """A torch file that holds something other than weights and plain data."""


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu", *,
                    allow: Sequence[Any] = ()) -> Any:
    """The contents of one of our torch files, read by torch's weights-only unpickler; `allow`
    lets exactly these further globals through, for this load only."""
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is paragraphs of advice; keep only the phrase naming what was refused.
        found = re.search(r"[Uu]nsupported [^\n]*", str(err))
        detail = f" ({found.group(0).split('. ')[0].rstrip('.')})" if found else ""
        raise TorchFileError(f"{path}: holds something other than weights and plain data"
                             f"{detail}, so it is not loaded (unpickling it could run code)"
                             ) from None
