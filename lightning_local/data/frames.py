"""Events -> binary frame tensors, the input representation of every DataModule.

A sample becomes ``frames: float32 [T, P*H*W]``: the recording's time span is cut
into ``T`` equal bins by :class:`tonic.transforms.ToFrame` (``n_time_bins=T``;
tonic's bins are half-open and ``(t_last - t_first) // T`` us wide, so the events
of the final remainder -- always including those stamped exactly ``t_last`` --
are dropped), events are counted per (bin, polarity, y, x),
the counts are clipped at 1 (a pixel is "on" in a bin if it fired at least once)
and each bin is flattened polarity-major: index ``p*H*W + y*W + x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tonic.transforms import Downsample, ToFrame

from lightning_local.data.errors import EventDataError


def downsampled_sensor_size(sensor_size: tuple[int, int, int], factor: int) -> tuple[int, int, int]:
    """Sensor size after spatial downsampling by an integer factor.

    tonic's ``Downsample(spatial_factor=1/factor)`` multiplies integer coordinates
    by ``1/factor`` and stores them back into integer fields, i.e. ``x // factor``
    (checked exact for factors up to 39 and coordinates up to 1023), so a sensor of
    width ``W`` becomes ``ceil(W / factor)`` wide.

    Args:
        sensor_size: ``(width, height, polarities)``.
        factor: Integer downsampling factor (1 keeps the size).

    Returns:
        ``(ceil(width / factor), ceil(height / factor), polarities)``.
    """
    width, height, polarities = sensor_size
    return (math.ceil(width / factor), math.ceil(height / factor), polarities)


#: Frame layouts: ``flat`` ``[T, P*H*W]`` for fully connected networks, ``image`` ``[T, P, H, W]`` for conv ones.
LAYOUTS = ("flat", "image")


@dataclass(frozen=True)
class EventsToFrames:
    """Convert a structured event array into a binary float32 tensor, ``[T, P*H*W]`` or ``[T, P, H, W]``.

    Args:
        sensor_size: ``(width, height, polarities)`` of the recording sensor.
        n_time_bins: Number of time bins ``T``.
        downsample: Integer spatial downsampling factor; 1 disables it.
        layout: ``flat`` (``[T, P*H*W]``, fully connected networks) or ``image``
            (``[T, P, H, W]``, convolutional networks); the values are the same.
    """

    sensor_size: tuple[int, int, int]
    n_time_bins: int
    downsample: int = 1
    layout: str = "flat"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} (got {self.layout!r}).")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one frame in this layout: ``(P*H*W,)`` or ``(P, H, W)``."""
        if self.layout == "flat":
            return (self.num_inputs,)
        width, height, polarities = self.frame_size
        return (polarities, height, width)

    def arrange(self, frames: torch.Tensor) -> torch.Tensor:
        """Flat ``[..., T, P*H*W]`` frames in this layout (a view; no copy)."""
        return frames if self.layout == "flat" else frames.unflatten(-1, self.input_shape)

    @property
    def frame_size(self) -> tuple[int, int, int]:
        """``(width, height, polarities)`` of the produced frames."""
        return downsampled_sensor_size(self.sensor_size, self.downsample)

    @property
    def num_inputs(self) -> int:
        """Length of one flattened frame, ``P*H*W``."""
        return math.prod(self.frame_size)

    def __call__(self, events: np.ndarray, source: str = "events") -> torch.Tensor:
        """Convert one recording.

        Args:
            events: Structured array with fields ``x``, ``y``, ``t``, ``p``.
            source: Where the events came from, used in error messages.

        Returns:
            ``float32`` tensor of shape ``[n_time_bins, *input_shape]`` with values in {0, 1}.

        Raises:
            EventDataError: The timestamps are NaN or infinite.
        """
        t = events["t"]
        if np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all():
            raise EventDataError(f"{source} has NaN or infinite timestamps.")
        if np.any(t[1:] < t[:-1]):  # tonic's time slicing needs sorted timestamps
            events = events[np.argsort(t, kind="stable")]
        if self.downsample > 1:
            events = Downsample(spatial_factor=1.0 / self.downsample)(events)
        frames = ToFrame(sensor_size=self.frame_size, n_time_bins=self.n_time_bins)(events)
        frames = np.minimum(frames, 1).reshape(self.n_time_bins, -1)
        return self.arrange(torch.from_numpy(frames.astype(np.float32)))
