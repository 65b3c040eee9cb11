"""Analyses of trained spiking networks, as Lightning callbacks (see the "Analyses" section of the project README).

* :class:`Accuracy` - Table III: the test accuracy every run logs.
* :class:`CKAComparison` - layer x layer linear CKA against reference checkpoints.
* :class:`AdversarialCKA` - per-layer CKA between clean and FGSM inputs.
* :class:`FGSMTransfer` - SNN accuracy under FGSM crafted on the ReLU ANN counterpart (or other attack models).
* :class:`FisherInformation` - per-layer, per-step Fisher information of LW / RW weights.
* :class:`BackdoorEvaluation` / :class:`AttackSuccessRate` - backdoor attack success rate.
* :class:`Cost` - training memory and time over T, and NeuroBench's inference metrics.

Every analysis subclasses :class:`Analysis` (:mod:`.base`); the benchmark finds them by key through the
``lightning_local.analyses`` entry points (:mod:`.registry`). The exports are lazy (PEP 562), so the light
modules (:mod:`.io`, :mod:`.base`) import without the analyses, which import the benchmark's formatting.
"""

_EXPORTS = {
    "Accuracy": "accuracy",
    "SmoothedSNN": "adversarial", "SNNLogits": "adversarial", "fgsm": "adversarial",
    "AdversarialCKA": "adversarial_cka", "cka_difference": "adversarial_cka",
    "AttackSuccessRate": "backdoor_evaluation", "BackdoorEvaluation": "backdoor_evaluation",
    "Analysis": "base", "EvaluationAnalysis": "base", "ReportSection": "base",
    "MinibatchCKA": "cka", "hsic_unbiased": "cka", "linear_cka": "cka",
    "CKAComparison": "cka_comparison",
    "Cost": "cost", "CostCounter": "cost", "footprint_bytes": "cost", "connection_sparsity": "cost",
    "FGSMTransfer": "fgsm_transfer",
    "class_scores": "fisher", "sample_labels": "fisher", "squared_gradient_norms": "fisher",
    "FisherInformation": "fisher_information",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
