"""Events -> frames conversion and the stratified splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_local.data.errors import EventDataError
from lightning_local.data.frames import EventsToFrames, downsampled_sensor_size
from lightning_local.data.splits import stratified_split


def test_event_lands_at_documented_index(make_events):
    # t spans 0..1000 us in 10 bins of 100 us; probe event in bin 3 at (p=1, y=5, x=7)
    events = make_events(x=[0, 7, 7, 33], y=[0, 5, 5, 33], t=[0, 350, 360, 1000], p=[0, 1, 1, 0])
    frames = EventsToFrames((34, 34, 2), n_time_bins=10)(events)
    assert frames.shape == (10, 2 * 34 * 34) and frames.dtype == torch.float32
    assert frames[3, 1 * 34 * 34 + 5 * 34 + 7] == 1.0  # two events in one bin are clipped at 1
    assert frames[0, 0] == 1.0
    assert frames.sum() == 2  # the t=1000 event is in tonic's dropped remainder


@pytest.mark.parametrize("factor, side", [(1, 34), (2, 17), (3, 12), (4, 9)])
def test_downsampled_size_matches_frames(make_events, factor, side):
    assert downsampled_sensor_size((34, 34, 2), factor) == (side, side, 2)
    # three corner probes, then a filler at t=100 that falls in tonic's dropped remainder
    corner = make_events(x=[33, 33, 0, 16], y=[33, 0, 0, 16], t=[0, 10, 20, 100], p=[1, 1, 0, 1])
    to_frames = EventsToFrames((34, 34, 2), n_time_bins=2, downsample=factor)
    frames = to_frames(corner)
    assert to_frames.num_inputs == 2 * side * side == frames.shape[1]
    image = frames.sum(0).reshape(2, side, side)
    assert image[1, side - 1, side - 1] == 1 and image[1, 0, side - 1] == 1 and image[0, 0, 0] == 1
    assert image.sum() == 3


def test_frames_are_binary_and_unsorted_input_is_sorted(make_events):
    events = make_events(n=2000)
    to_frames = EventsToFrames((34, 34, 2), n_time_bins=20)
    sorted_frames = to_frames(events)
    shuffled = events[np.random.default_rng(1).permutation(len(events))]
    assert torch.equal(to_frames(shuffled), sorted_frames)
    assert set(sorted_frames.unique().tolist()) == {0.0, 1.0}


def test_nan_timestamps_raise():
    events = np.zeros(3, dtype=[("x", int), ("y", int), ("t", float), ("p", int)])
    events["t"] = [0.0, np.nan, 5.0]
    with pytest.raises(EventDataError, match="NaN or infinite timestamps"):
        EventsToFrames((34, 34, 2), n_time_bins=2)(events, source="sample.bin")


def test_stratified_split_is_disjoint_stratified_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    kept, carved = stratified_split(labels, 0.2, seed=5)
    assert sorted(kept + carved) == list(range(100)) and not set(kept) & set(carved)
    assert [sum(labels[i] == c for i in carved) for c in range(3)] == [10, 6, 4]
    assert stratified_split(labels, 0.2, seed=5) == (kept, carved)
    assert stratified_split(labels, 0.2, seed=6) != (kept, carved)


def test_stratified_split_keeps_one_and_carves_one_of_tiny_classes():
    kept, carved = stratified_split([0, 0, 1, 2, 2, 2], 0.1, seed=0)
    assert sorted(carved) == carved and len(carved) == 2  # classes 0 and 2 give one each
    assert 2 in kept  # the single sample of class 1 is never carved
    assert stratified_split([0, 1], 0.0, seed=0) == ([0, 1], [])
