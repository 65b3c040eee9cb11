"""The reference paper's numbers (Lin, Lu, Bal, Sengupta, arXiv 2402.01782), as data for the report.

Accuracies and rates in percent, means of the paper's 5 runs. Keys use this
toolkit's names: datasets ``nmnist``, ``dvsgesture``, ``timit``; rules ``bptt``,
``eprop``, ``decolle``; architectures ``ff``, ``rec``.
"""

from __future__ import annotations

CITATION = "Lin, Lu, Bal, Sengupta, Benchmarking Spiking Neural Network Learning Methods with Varying Locality (arXiv 2402.01782)"

# Table III: test accuracy %, (rule, dataset, arch) -> value.
TABLE_III: dict[tuple[str, str, str], float] = {
    (rule, dataset, arch): value
    for rule, row in {
        "bptt": (97.12, 97.77, 87.73, 89.23, 52.31, 56.93),
        "eprop": (96.44, 96.80, 86.15, 87.20, 51.12, 54.99),
        "decolle": (93.61, 90.52, 84.16, 85.17, 42.30, 45.70),
    }.items()
    for (dataset, arch), value in zip(
        [("nmnist", "ff"), ("nmnist", "rec"), ("dvsgesture", "ff"), ("dvsgesture", "rec"), ("timit", "ff"), ("timit", "rec")],
        row,
    )
}

# Table IV: N-MNIST accuracy % under FGSM (crafted on the ANN counterpart), (rule, arch) -> {epsilon: value}.
TABLE_IV_DATASET = "nmnist"
TABLE_IV_EPSILONS = (0.001, 0.005, 0.01, 0.02, 0.05)
TABLE_IV: dict[tuple[str, str], dict[float, float]] = {
    key: dict(zip(TABLE_IV_EPSILONS, values))
    for key, values in {
        ("bptt", "ff"): (83.82, 16.78, 4.34, 1.22, 0.73),
        ("eprop", "ff"): (89.90, 41.27, 12.33, 3.27, 2.87),
        ("decolle", "ff"): (83.48, 45.11, 28.57, 21.29, 17.79),
        ("bptt", "rec"): (94.66, 80.76, 58.73, 27.69, 18.55),
        ("eprop", "rec"): (93.04, 78.28, 60.57, 35.07, 18.25),
        ("decolle", "rec"): (86.76, 84.14, 72.81, 47.56, 23.75),
    }.items()
}

# Table V: N-MNIST backdoor, mean over 5 (source, target) pairs, (rule, arch) -> {poison rate: (clean %, ASR %)}.
TABLE_V_DATASET = "nmnist"
TABLE_V_RATES = (0.1, 0.3, 0.5, 0.7, 0.9)
TABLE_V: dict[tuple[str, str], dict[float, tuple[float, float]]] = {
    key: dict(zip(TABLE_V_RATES, values))
    for key, values in {
        ("bptt", "ff"): ((96.23, 4.80), (93.34, 33.54), (91.62, 43.76), (89.64, 66.06), (87.47, 78.19)),
        ("eprop", "ff"): ((96.85, 1.93), (93.46, 33.35), (92.30, 46.94), (89.38, 75.09), (87.32, 96.95)),
        ("decolle", "ff"): ((92.74, 4.66), (89.88, 30.04), (88.14, 48.31), (85.12, 76.77), (83.62, 90.80)),
        ("bptt", "rec"): ((96.43, 2.64), (94.19, 22.03), (92.24, 43.78), (91.22, 62.24), (87.38, 90.73)),
        ("eprop", "rec"): ((96.69, 0.45), (94.81, 17.65), (91.92, 44.56), (88.51, 74.15), (87.23, 93.15)),
        ("decolle", "rec"): ((90.21, 0.86), (87.46, 23.75), (81.55, 74.10), (81.29, 88.96), (80.81, 91.02)),
    }.items()
}


# Table VI (Appendix A): the convolutional network on DVS Gesture, (rule, arch) -> test accuracy %.
TABLE_VI_DATASET = "dvsgesture"
TABLE_VI: dict[tuple[str, str], float] = {
    ("bptt", "ff"): 91.74, ("bptt", "rec"): 93.04, ("decolle", "ff"): 90.15, ("decolle", "rec"): 91.28,
}


# Table VII: hyper-parameters, (dataset, rule, arch) -> (a = alpha, b = beta, V_th, learning rate, batch size, epochs).
TABLE_VII = {
    ("nmnist", "bptt", "ff"): (0.9, 0.5, 0.9, 1e-4, 16, 100),
    ("nmnist", "eprop", "ff"): (0.99, 0.95, 0.2, 5e-3, 5, 100),
    ("nmnist", "decolle", "ff"): (0.97, 0.92, 1.0, 1e-3, 72, 100),
    ("nmnist", "bptt", "rec"): (0.9, 0.5, 0.9, 1e-2, 256, 100),
    ("nmnist", "eprop", "rec"): (0.99, 0.95, 0.2, 5e-3, 4, 100),
    ("nmnist", "decolle", "rec"): (0.97, 0.92, 1.0, 1e-5, 72, 100),
    ("dvsgesture", "bptt", "ff"): (0.9, 0.5, 1.0, 1e-3, 16, 100),
    ("dvsgesture", "eprop", "ff"): (0.95, 0.65, 0.3, 1e-3, 15, 100),
    ("dvsgesture", "decolle", "ff"): (0.9, 0.65, 0.9, 2e-4, 72, 100),
    ("dvsgesture", "bptt", "rec"): (0.95, 0.5, 0.9, 1e-3, 32, 100),
    ("dvsgesture", "eprop", "rec"): (0.95, 0.6, 0.7, 3e-3, 15, 100),
    ("dvsgesture", "decolle", "rec"): (0.05, 0.2, 1.0, 3e-5, 72, 100),
    ("timit", "bptt", "ff"): (0.9, 0.5, 1.0, 1e-3, 8, 100),
    ("timit", "eprop", "ff"): (0.99, 0.3, 1.0, 5e-4, 4, 100),
    ("timit", "decolle", "ff"): (0.97, 0.9, 0.9, 2e-4, 128, 100),
    ("timit", "bptt", "rec"): (0.9, 0.7, 1.0, 1e-3, 8, 100),
    ("timit", "eprop", "rec"): (0.99, 0.3, 1.0, 5e-4, 4, 100),
    ("timit", "decolle", "rec"): (0.97, 0.3, 1.0, 1e-5, 32, 100),
}


def table_vii(dataset: str, rule: str, arch: str) -> dict[str, float] | None:
    """Table VII's settings of one cell as ``fit`` config keys (decays as ``model.alpha``/``model.beta``)."""
    row = TABLE_VII.get((dataset, rule, arch))
    if row is None:
        return None
    keys = ("model.alpha", "model.beta", "model.v_th", "model.lr", "data.init_args.batch_size", "trainer.max_epochs")
    return dict(zip(keys, row))


def table_iii(rule: str, dataset: str, arch: str, network: str = "linear") -> float | None:
    """The paper's test accuracy % for this setting (Table III; Table VI for conv nets), or None."""
    if network == "conv":
        return TABLE_VI.get((rule, arch)) if dataset == TABLE_VI_DATASET else None
    return TABLE_III.get((rule, dataset, arch))


def table_iv(rule: str, dataset: str, arch: str, epsilon: float) -> float | None:
    """The paper's FGSM accuracy % (N-MNIST only), or None."""
    if dataset != TABLE_IV_DATASET:
        return None
    return _close(TABLE_IV.get((rule, arch), {}), epsilon)


def table_v(rule: str, dataset: str, arch: str, rate: float) -> tuple[float, float] | None:
    """The paper's (clean accuracy %, ASR %) at this poison rate (N-MNIST only), or None."""
    if dataset != TABLE_V_DATASET:
        return None
    return _close(TABLE_V.get((rule, arch), {}), rate)


def _close(table: dict, value: float):
    for key, entry in table.items():
        if abs(key - value) < 1e-9:
            return entry
    return None
