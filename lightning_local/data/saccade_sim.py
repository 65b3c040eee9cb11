"""Simulate N-MNIST-style recordings of still images: sensor saccades + a DVS pixel model.

Recipe (after Orchard et al. 2015, who filmed MNIST digits on a monitor with an
ATIS sensor moved by a pan-tilt unit):

* Scene: each image (``digit_size`` square, intensities in [0, 1], bright digit on
  a dark background like MNIST) sits in a dark scene so that it stays inside the
  ``sensor`` x ``sensor`` field of view for every sensor offset of the path.
* Saccades: the sensor offset ``(ox, oy)`` in pixels moves along a triangle
  ``(0, 0) -> (A/2, A) -> (A, 0) -> (0, 0)`` with ``A = amplitude``, three
  straight saccades of ``saccade_ms`` each, sampled every ``step_us``
  microseconds. Sensor pixel ``(y, x)`` sees the scene at ``(y + oy, x + ox)``;
  sub-pixel positions are bilinearly interpolated.
* DVS pixels: each pixel keeps a reference log intensity ``log(I + log_eps)``,
  initialised from the first view (no events at t = 0). At every step a pixel
  emits ``n = trunc((L - ref) / theta)`` events -- ON if positive, OFF if
  negative, several per step allowed, all stamped with that step's time -- and
  moves its reference by ``n * theta`` (so the reference is updated per event).
  ``theta`` is per pixel: ``threshold * (1 + threshold_mismatch * N(0, 1))``
  from a seeded generator (fixed-pattern mismatch shared by all recordings),
  clipped below at ``threshold / 2``.

Everything is vectorised over images and pixels with numpy; Python only loops
over the time steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIM_DTYPE = np.dtype([("x", np.uint8), ("y", np.uint8), ("t", np.int32), ("p", np.uint8)])
"""Compact structured dtype of simulated events (same field names as tonic's N-MNIST)."""


@dataclass(frozen=True)
class SaccadeConfig:
    """Parameters of the saccade + DVS simulation (defaults give ~3-4k events per digit).

    Args:
        sensor: Sensor width and height in pixels (N-MNIST: 34).
        amplitude: Saccade amplitude ``A`` in pixels; ``digit_size + amplitude`` must not exceed ``sensor``.
        saccade_ms: Duration of each of the three saccades in milliseconds.
        step_us: Simulation time step in microseconds (the event timestamp resolution).
        threshold: Mean contrast threshold ``theta`` in log-intensity units.
        threshold_mismatch: Relative standard deviation of the per-pixel thresholds.
        log_eps: Offset added to intensities before the log (dark-pixel floor).
        seed: Seed of the per-pixel threshold mismatch.
    """

    sensor: int = 34
    amplitude: float = 6.0
    saccade_ms: int = 100
    step_us: int = 1000
    threshold: float = 0.45
    threshold_mismatch: float = 0.05
    log_eps: float = 0.1
    seed: int = 0


def saccade_path(config: SaccadeConfig) -> np.ndarray:
    """Sensor offsets ``(ox, oy)`` in pixels at every time step after t = 0.

    Args:
        config: Simulation parameters.

    Returns:
        ``float64 [3 * steps_per_saccade, 2]``; row ``k`` is the offset at time ``(k + 1) * step_us``.
    """
    amp = config.amplitude
    corners = np.array([[0.0, 0.0], [amp / 2, amp], [amp, 0.0], [0.0, 0.0]])
    steps = config.saccade_ms * 1000 // config.step_us
    frac = np.arange(1, steps + 1)[:, None] / steps
    return np.concatenate([a + (b - a) * frac for a, b in zip(corners[:-1], corners[1:])])


def make_scenes(images: np.ndarray, config: SaccadeConfig) -> np.ndarray:
    """Embed images in dark scenes large enough for every sensor offset of the path.

    Args:
        images: ``[N, D, D]`` intensities in [0, 1], with ``D + amplitude <= sensor``.
        config: Simulation parameters.

    Returns:
        ``float32 [N, S + pad + 1, S + pad + 1]`` with ``pad = ceil(amplitude)``; the
        image occupies rows and columns ``[pad, pad + D)``, so at offset (0, 0) it sits in the
        sensor's bottom-right corner and at offset (A, A) in its top-left corner.
    """
    n, size, _ = images.shape
    pad = math.ceil(config.amplitude)
    if size + config.amplitude > config.sensor:
        raise ValueError(f"Images of {size} px plus a {config.amplitude} px saccade exceed the {config.sensor} px sensor.")
    scenes = np.zeros((n, config.sensor + pad + 1, config.sensor + pad + 1), dtype=np.float32)
    scenes[:, pad:pad + size, pad:pad + size] = images
    return scenes


def sensor_view(scenes: np.ndarray, ox: float, oy: float, sensor: int) -> np.ndarray:
    """What the sensor sees at offset ``(ox, oy)``: bilinear interpolation of the scenes.

    Args:
        scenes: ``[N, H, W]`` scenes from :func:`make_scenes`.
        ox: Horizontal offset in pixels (>= 0).
        oy: Vertical offset in pixels (>= 0).
        sensor: Sensor size in pixels.

    Returns:
        ``float32 [N, sensor, sensor]``.
    """
    ix, iy = int(ox), int(oy)
    fx, fy = np.float32(ox - ix), np.float32(oy - iy)
    top = scenes[:, iy:iy + sensor, ix:ix + sensor + 1]
    bottom = scenes[:, iy + 1:iy + 1 + sensor, ix:ix + sensor + 1]
    rows = (1 - fy) * top + fy * bottom
    return (1 - fx) * rows[:, :, :-1] + fx * rows[:, :, 1:]


def pixel_thresholds(config: SaccadeConfig) -> np.ndarray:
    """Per-pixel contrast thresholds ``float32 [sensor, sensor]`` (seeded fixed-pattern mismatch)."""
    rng = np.random.default_rng(config.seed)
    noise = rng.standard_normal((config.sensor, config.sensor))
    theta = config.threshold * (1 + config.threshold_mismatch * noise)
    return np.maximum(theta, config.threshold / 2).astype(np.float32)


def _run_pixels(scenes: np.ndarray, config: SaccadeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step the DVS pixels along the path.

    Returns:
        ``(flat_index, count, step)`` per (step, pixel) that fired: the index into the
        flattened ``[N, S, S]`` array, the signed event count (int8) and the 1-based step.
    """
    sensor, eps = config.sensor, np.float32(config.log_eps)
    theta = pixel_thresholds(config)
    reference = np.log(sensor_view(scenes, 0.0, 0.0, sensor) + eps)
    indices, counts, steps = [], [], []
    for step, (ox, oy) in enumerate(saccade_path(config), start=1):
        log_intensity = np.log(sensor_view(scenes, ox, oy, sensor) + eps)
        n = np.trunc((log_intensity - reference) / theta).astype(np.int8)
        reference += n * theta
        fired = np.flatnonzero(n.ravel() != 0)
        indices.append(fired.astype(np.int32))
        counts.append(n.ravel()[fired])
        steps.append(np.full(len(fired), step, dtype=np.int32))
    return np.concatenate(indices), np.concatenate(counts), np.concatenate(steps)


def simulate_saccades(images: np.ndarray, config: SaccadeConfig | None = None) -> list[np.ndarray]:
    """Simulate one N-MNIST-style recording per image.

    Args:
        images: ``[N, D, D]`` intensities in [0, 1] (bright digit on dark background).
        config: Simulation parameters (defaults: :class:`SaccadeConfig`).

    Returns:
        ``N`` structured arrays of dtype :data:`SIM_DTYPE` (x, y, t in us, p with 1 = ON),
        each sorted by time.
    """
    config = config or SaccadeConfig()
    sensor = config.sensor
    flat, count, step = _run_pixels(make_scenes(np.asarray(images, np.float32), config), config)
    repeats = np.abs(count).astype(np.int64)
    flat, step, polarity = (np.repeat(a, repeats) for a in (flat, step, count > 0))
    image = flat // (sensor * sensor)
    order = np.argsort(image, kind="stable")  # keeps time order within each image
    events = np.empty(len(order), dtype=SIM_DTYPE)
    pixel = flat[order] % (sensor * sensor)
    events["x"], events["y"] = pixel % sensor, pixel // sensor
    events["t"] = step[order] * config.step_us
    events["p"] = polarity[order]
    bounds = np.searchsorted(image[order], np.arange(len(images) + 1))
    return [events[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
