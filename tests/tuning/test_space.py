"""The search space: what learners declare, what a --space file may say, and how values become fit flags."""

from __future__ import annotations

import math

import optuna
import pytest
from lightning_local.learners import NEURON_SPACE, Learner, learner_class
from lightning_local.learners.registry import LEARNER_GROUP, available
from lightning_local.benchmark.paper import TABLE_VII
from lightning_local.tuning.space import (
    SpaceError,
    check_keys,
    flags,
    learner_space,
    parse_space,
    settings,
    starting_point,
)

REGISTERED = sorted(available(LEARNER_GROUP))


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_learner_declares_a_space_that_parses(name):
    space = learner_space(learner_class(name))
    assert space and all(p.key.split(".")[0] in ("model", "data", "learner") for p in space)


@pytest.mark.parametrize("name", sorted({rule for _, rule, _ in TABLE_VII}))
def test_the_neuron_space_holds_every_table_vii_value_of_the_rule(name):
    """Ranges include Table VII: decays as time constants (tau = -1/ln a), V_th, lr and batch size."""
    space = {p.key: p for p in learner_space(learner_class(name))}
    for (_, rule, _), (a, b, v_th, lr, batch, _) in TABLE_VII.items():
        if rule != name:
            continue
        assert space["model.tau_syn"].contains(-1.0 / math.log(a)), (rule, a)
        assert space["model.tau_mem"].contains(-1.0 / math.log(b)), (rule, b)
        assert space["model.v_th"].contains(v_th) and space["model.lr"].contains(lr)
        assert space["data.init_args.batch_size"].contains(batch)


def test_a_learner_without_a_space_is_refused_in_one_sentence():
    class Bare(Learner):
        name = "bare"

    with pytest.raises(SpaceError, match=r"learner 'bare' declares no search space: .* --space FILE.yaml"):
        learner_space(Bare)


@pytest.mark.parametrize("raw, message", [
    ({"model.lr": {"low": 0.1, "high": 0.1}}, r"empty range \[0.1, 0.1\]"),
    ({"model.lr": {"low": 1.0, "high": 0.5}}, r"empty range"),
    ({"model.lr": {"choices": []}}, r"empty choices list"),
    ({"model.lr": {"low": 0.0, "high": 1.0, "log": True}}, r"log scale, so low must be positive"),
    ({"model.lr": {"low": "a", "high": 1.0}}, r"needs numeric low and high"),
    ({"model.lr": {"low": 0.1, "high": 1.0, "step": 2}}, r"unknown field\(s\) \['step'\]"),
    ({"model.lr": 0.1}, r"must be a mapping"),
    ({}, r"is empty"),
])
def test_bad_space_entries_are_refused(raw, message):
    with pytest.raises(SpaceError, match=message):
        parse_space(raw, "test.yaml")


def test_int_ranges_stay_int_and_mixed_ranges_become_float():
    batch, gain = parse_space({"b": {"low": 4, "high": 256, "log": True}, "g": {"low": 1, "high": 2.5}}, "t")
    assert isinstance(batch.distribution(), optuna.distributions.IntDistribution)
    assert isinstance(gain.distribution(), optuna.distributions.FloatDistribution)
    assert batch.contains(64) and not batch.contains(64.5) and not batch.contains(2)


def test_a_time_constant_clears_the_decay_it_replaces():
    space = parse_space({key: NEURON_SPACE[key] for key in ("model.tau_syn", "model.lr")}, "t")
    params = {"model.tau_syn": 3.0, "model.lr": 0.01}
    assert settings(params, space) == {"model.alpha": None, "model.tau_syn": 3.0, "model.lr": 0.01}
    assert flags(params, space) == ["--model.alpha", "null", "--model.tau_syn", "3.0", "--model.lr", "0.01"]


def test_keys_must_be_settings_of_the_resolved_config():
    config = {"model": {"lr": 0.001, "alpha": None, "tau_syn": 5.0}, "data": {"init_args": {"batch_size": 64}}}
    check_keys(parse_space({"model.tau_syn": NEURON_SPACE["model.tau_syn"]}, "t"), config, "c.yaml")
    with pytest.raises(SpaceError, match=r"unknown search parameter 'model.tau_sin': it is not a setting of c.yaml"):
        check_keys(parse_space({"model.tau_sin": {"low": 1, "high": 2}}, "t"), config, "c.yaml")


def test_the_starting_point_is_the_configs_own_values_inside_the_space():
    space = parse_space({"model.lr": NEURON_SPACE["model.lr"], "model.v_th": {"low": 0.1, "high": 0.5},
                         "learner.init_args.feedback": {"choices": ["symmetric", "random"]}}, "t")
    config = {"model": {"lr": 0.001, "v_th": 1.0}, "learner": {"init_args": {"feedback": "random"}}}
    assert starting_point(space, config) == {"model.lr": 0.001, "learner.init_args.feedback": "random"}
