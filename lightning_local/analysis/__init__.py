"""Analyses of trained spiking networks, as Lightning callbacks (see the "Analyses" section of the project README).

* :class:`CKAComparison` - layer x layer linear CKA against reference checkpoints.
* :class:`AdversarialCKA` - per-layer CKA between clean and FGSM inputs.
* :class:`FGSMTransfer` - SNN accuracy under FGSM crafted on the ReLU ANN counterpart (or other attack models).
* :class:`FisherInformation` - per-layer, per-step Fisher information of LW / RW weights.
* :class:`BackdoorEvaluation` / :class:`AttackSuccessRate` - backdoor attack success rate.
"""

from .adversarial import SmoothedSNN, SNNLogits, fgsm
from .adversarial_cka import AdversarialCKA, cka_difference
from .backdoor_evaluation import AttackSuccessRate, BackdoorEvaluation
from .base import EvaluationAnalysis
from .cka import MinibatchCKA, hsic_unbiased, linear_cka
from .cka_comparison import CKAComparison
from .fgsm_transfer import FGSMTransfer
from .fisher import class_scores, sample_labels, squared_gradient_norms
from .fisher_information import FisherInformation

__all__ = [
    "AdversarialCKA",
    "AttackSuccessRate",
    "BackdoorEvaluation",
    "CKAComparison",
    "EvaluationAnalysis",
    "FGSMTransfer",
    "FisherInformation",
    "MinibatchCKA",
    "SNNLogits",
    "SmoothedSNN",
    "cka_difference",
    "class_scores",
    "fgsm",
    "hsic_unbiased",
    "linear_cka",
    "sample_labels",
    "squared_gradient_norms",
]
