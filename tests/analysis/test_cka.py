"""Linear minibatch CKA against a literal implementation of Nguyen et al. (2021), eqs. 11-12."""

import math

import pytest
import torch

from lightning_local.analysis import MinibatchCKA, hsic_unbiased, linear_cka


def direct_hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Eq. 11 as written: Gram matrices with zeroed diagonals, trace and ones-vector terms."""
    n = k.shape[0]
    k_t = k - torch.diag(torch.diag(k))
    l_t = l - torch.diag(torch.diag(l))
    one = torch.ones(n, 1, dtype=k.dtype)
    value = (
        torch.trace(k_t @ l_t)
        + (one.T @ k_t @ one) * (one.T @ l_t @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one.T @ k_t @ l_t @ one)
    )
    return value.squeeze() / (n * (n - 3))


def direct_minibatch_cka(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 12: HSIC_1 averaged over minibatches, then normalised."""
    mean = lambda pairs: torch.stack([direct_hsic1(a @ a.T, b @ b.T) for a, b in pairs]).mean()  # noqa: E731
    return mean(zip(xs, ys)) / torch.sqrt(mean(zip(xs, xs)) * mean(zip(ys, ys)))


def features(n: int, p: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=generator, dtype=torch.float64)


def test_cka_of_a_representation_with_itself_is_one():
    x = features(64, 40, 0)
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    spikes = (features(32, 100, 1) > 0.5).double()
    assert linear_cka(spikes, spikes).item() == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x = features(50, 30, 0)
    y = x[:, :20] @ features(20, 25, 1) + 0.5 * features(50, 25, 2)  # related but different
    q_x, _ = torch.linalg.qr(features(30, 30, 3))
    q_y, _ = torch.linalg.qr(features(25, 25, 4))
    base = linear_cka(x, y).item()
    assert 0.05 < base < 0.95
    assert linear_cka(3.7 * x @ q_x, y).item() == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 0.02 * y @ q_y).item() == pytest.approx(base, rel=1e-10)
    assert linear_cka(y, x).item() == pytest.approx(base, rel=1e-10)


def test_hsic_matches_direct_equation():
    x, y = features(17, 9, 0), features(17, 12, 1)
    torch.testing.assert_close(hsic_unbiased(x, y), direct_hsic1(x @ x.T, y @ y.T), rtol=1e-10, atol=1e-12)


def test_minibatch_cka_matrix_matches_direct_equations():
    # Two "models" with 3 and 2 layers, seen over batches of unequal size.
    sizes = [16, 16, 9]
    xs = [[features(n, p, 10 * b + p) for p in (5, 8, 13)] for b, n in enumerate(sizes)]
    ys = [[x[0] @ features(5, 7, 99) + features(n, 7, 100 + b), features(n, 4, 200 + b)] for b, (n, x) in enumerate(zip(sizes, xs))]
    cka = MinibatchCKA(3, 2)
    for x, y in zip(xs, ys):
        cka.update(x, y)
    matrix = cka.compute()
    assert matrix.shape == (3, 2)
    for a in range(3):
        for b in range(2):
            expected = direct_minibatch_cka([x[a] for x in xs], [y[b] for y in ys])
            torch.testing.assert_close(matrix[a, b], expected, rtol=1e-10, atol=1e-12)
    assert matrix[0, 0] > 0.3 > abs(matrix[1, 1])  # related layers score higher than unrelated ones


def test_small_batches_are_rejected_and_constant_representations_give_nan():
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(features(3, 5, 0), features(3, 5, 1))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(features(8, 5, 0), features(9, 5, 1))
    assert math.isnan(linear_cka(features(8, 5, 0), torch.zeros(8, 4, dtype=torch.float64)).item())
