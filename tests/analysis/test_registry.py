"""The analyses registry: built-ins by key in report order, each an Analysis whose key is its entry point's."""

from __future__ import annotations

import pytest

from lightning_local.analysis import registry
from lightning_local.analysis.base import Analysis
from lightning_local.analysis.fisher_information import FisherInformation


def test_built_in_analyses_are_registered_in_report_order():
    found = registry.registered_analyses()
    assert list(found)[:7] == ["accuracy", "fgsm", "backdoor", "cost", "cka", "adversarial_cka", "fisher"]
    for key, analysis in found.items():
        assert issubclass(analysis.cls, Analysis) and analysis.cls.key == key
    assert found["fgsm"].class_path == "lightning_local.analysis.FGSMTransfer"  # what run configs name


def test_an_entry_point_that_is_no_analysis_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "available", lambda group: {"broken": "lightning_local.analysis.base:STAGES"})
    with pytest.raises(TypeError, match="must name an Analysis subclass whose key is 'broken'"):
        registry.registered_analyses()


def test_fisher_rows_travel_in_the_callback_state():
    recorded = FisherInformation(num_samples=4)
    recorded.rows = [{"epoch": 0, "t": 0, "layer": "output", "weights": "LW", "fisher": 1.0, "fisher_normalized": 1.0}]
    resumed = FisherInformation(num_samples=4)
    resumed.load_state_dict(recorded.state_dict())
    assert resumed.rows == recorded.rows and resumed.rows is not recorded.rows


def test_default_option_check_names_the_callback_arguments():
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['sample'\] for analysis 'fisher': allowed are .*num_samples"):
        FisherInformation.check_options({"sample": 3}, ["ff"])
    assert FisherInformation.check_options({"num_samples": 3}, ["ff"]) == {"num_samples": 3}
