"""Event-camera datasets as Lightning DataModules.

Every DataModule yields ``(frames, labels)``: ``frames`` is ``float32
[B, T, num_inputs]`` (per time bin the flattened polarity x height x width grid of
event counts clipped at 1, values {0, 1}) and ``labels`` is ``int64 [B]``.
"""

from lightning_local.data.base import EventDataModule, EventFrameDataset, Record
from lightning_local.data.dvsgesture import DVSGesture
from lightning_local.data.errors import DatasetNotFoundError, EventDataError
from lightning_local.data.events import read_nmnist_bin, write_nmnist_bin
from lightning_local.data.frames import EventsToFrames
from lightning_local.data.nmnist import NMNIST
from lightning_local.data.saccade_digits import SaccadeDigits

__all__ = [
    "DVSGesture",
    "DatasetNotFoundError",
    "EventDataError",
    "EventDataModule",
    "EventFrameDataset",
    "EventsToFrames",
    "NMNIST",
    "Record",
    "SaccadeDigits",
    "read_nmnist_bin",
    "write_nmnist_bin",
]
