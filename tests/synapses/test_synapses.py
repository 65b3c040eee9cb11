"""Linear and convolutional synapses: every interface method against torch.autograd's vjp of ``transmit``."""

import pytest
import torch

from lightning_local.module import InvalidInputError, SpikingClassifier
from lightning_local.synapses import ConvSynapse, LinearSynapse

pytestmark = pytest.mark.usefixtures("float64", "single_thread")

LEADING = (3, 2)  # [T, B]: the interface takes any leading dimensions

# (id, factory): odd sizes, a stride that does not divide the input (the transposed
# convolution needs an output padding), padding on and off, a kernel larger than the stride.
SYNAPSES = [
    ("linear", lambda: LinearSynapse(7, 5)),
    ("linear_chw", lambda: LinearSynapse((2, 3, 5), 4)),
    ("conv", lambda: ConvSynapse((3, 9, 11), 4, kernel_size=3)),
    ("conv_stride2_pad1", lambda: ConvSynapse((2, 10, 7), 3, kernel_size=3, stride=2, padding=1)),
    ("conv_k5_stride2_pad2", lambda: ConvSynapse((1, 8, 9), 2, kernel_size=5, stride=2, padding=2)),
    ("conv_k4_stride3", lambda: ConvSynapse((2, 11, 11), 3, kernel_size=4, stride=3)),
]


@pytest.fixture(params=[factory for _, factory in SYNAPSES], ids=[name for name, _ in SYNAPSES])
def synapse(request):
    torch.manual_seed(0)
    return request.param()


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def vjp(synapse, x, error, weight=None):
    """``(dE/dx, dE/dweight)`` of ``E = <error, transmit(x, weight)>`` by autograd."""
    x = x.clone().requires_grad_()
    weight = (synapse.weight if weight is None else weight).detach().clone().requires_grad_()
    out = synapse.transmit(x, weight)
    return torch.autograd.grad(out, (x, weight), error)


def test_transmit_is_the_torch_op(synapse):
    x = randn(*LEADING, *synapse.in_shape, seed=1)
    out = synapse(x)
    assert out.shape == (*LEADING, *synapse.out_shape)
    flat = x.reshape(-1, *synapse.in_shape)
    if isinstance(synapse, ConvSynapse):
        expected = torch.nn.functional.conv2d(flat, synapse.weight, stride=synapse.stride, padding=synapse.padding)
        assert expected.shape[1:] == synapse.out_shape
    else:
        expected = torch.nn.functional.linear(flat.flatten(1), synapse.weight)
    torch.testing.assert_close(out.reshape_as(expected), expected, rtol=0, atol=1e-12)
    assert synapse.in_features == flat[0].numel() and synapse.out_features == expected[0].numel()


def test_backward_and_weight_gradient_equal_autograd(synapse):
    x = randn(*LEADING, *synapse.in_shape, seed=1)
    error = randn(*LEADING, *synapse.out_shape, seed=2)
    grad_x, grad_w = vjp(synapse, x, error)
    torch.testing.assert_close(synapse.backward(error), grad_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.weight_gradient(error, x), grad_w, rtol=1e-12, atol=1e-12)
    # one leading dimension
    torch.testing.assert_close(synapse.backward(error.flatten(0, 1)), grad_x.flatten(0, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.weight_gradient(error.flatten(0, 1), x.flatten(0, 1)), grad_w, rtol=1e-12, atol=1e-12)
    # none: one sample at one step
    one_x, one_error = x[0, 0], error[0, 0]
    torch.testing.assert_close(synapse(one_x), synapse(x)[0, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.backward(one_error), grad_x[0, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.weight_gradient(one_error, one_x), vjp(synapse, one_x, one_error)[1], rtol=1e-12, atol=1e-12)
    # another weight of W's shape (feedback alignment's B)
    other = randn(*synapse.weight.shape, seed=3)
    torch.testing.assert_close(synapse.backward(error, other), vjp(synapse, x, error, other)[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.transmit(x, other), transmit_with_parameter(synapse, x, other), rtol=0, atol=1e-12)


def transmit_with_parameter(synapse, x, weight):
    """``transmit(x, weight)`` by swapping the parameter (checks that ``weight=`` is really used)."""
    saved = synapse.weight.data.clone()
    synapse.weight.data.copy_(weight)
    try:
        return synapse.transmit(x).detach()
    finally:
        synapse.weight.data.copy_(saved)


@pytest.mark.parametrize("lead", [(6,), LEADING], ids=["2d", "3d"])
def test_add_to_returns_the_sum_and_leaves_the_addend_alone(synapse, lead):
    x = randn(*lead, *synapse.in_shape, seed=1)
    error = randn(*lead, *synapse.out_shape, seed=2)
    base_out = randn(*lead, *synapse.out_shape, seed=3)
    base_in = randn(*lead, *synapse.in_shape, seed=4)
    keep_out, keep_in = base_out.clone(), base_in.clone()
    torch.testing.assert_close(synapse.transmit(x, add_to=base_out), base_out + synapse.transmit(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synapse.backward(error, add_to=base_in), base_in + synapse.backward(error), rtol=1e-12, atol=1e-12)
    # The fused scan passes its incoming gradient as add_to: it must never be overwritten.
    assert torch.equal(base_out, keep_out) and torch.equal(base_in, keep_in)


def test_add_to_under_autograd(synapse):
    """``transmit(x, add_to=a)`` (the reference backend's recurrence) differentiates like ``a + W x``."""
    x = randn(*LEADING, *synapse.in_shape, seed=1).requires_grad_()
    a = randn(*LEADING, *synapse.out_shape, seed=2).requires_grad_()
    error = randn(*LEADING, *synapse.out_shape, seed=3)
    fused = torch.autograd.grad(synapse.transmit(x, add_to=a), (x, a, synapse.weight), error)
    plain = torch.autograd.grad(a + synapse.transmit(x), (x, a, synapse.weight), error)
    for got, expected in zip(fused, plain):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_weight_gradient_accumulates_in_place_with_alpha(synapse):
    x = randn(*LEADING, *synapse.in_shape, seed=1)
    error = randn(*LEADING, *synapse.out_shape, seed=2)
    grad = synapse.weight_gradient(error, x)
    torch.testing.assert_close(synapse.weight_gradient(error, x, alpha=0.3), 0.3 * grad, rtol=1e-12, atol=1e-12)
    start = randn(*synapse.weight.shape, seed=5)
    accumulator = start.clone()
    returned = synapse.weight_gradient(error, x, add_to=accumulator, alpha=-1.7)
    assert returned is accumulator
    torch.testing.assert_close(accumulator, start - 1.7 * grad, rtol=1e-12, atol=1e-12)
    accumulator = start.clone()
    synapse.weight_gradient(error, x, add_to=accumulator)
    torch.testing.assert_close(accumulator, start + grad, rtol=1e-12, atol=1e-12)


def test_spikes_of_another_dtype_are_cast(synapse):
    """Presynaptic spikes may come as float32 (snnTorch) or bool-like: the update is in the error's dtype."""
    x = (randn(*LEADING, *synapse.in_shape, seed=1) > 0).float()
    error = randn(*LEADING, *synapse.out_shape, seed=2)
    grad = synapse.weight_gradient(error, x)
    assert grad.dtype == torch.float64
    torch.testing.assert_close(grad, synapse.weight_gradient(error, x.double()), rtol=0, atol=0)


def test_with_feedback_sends_the_input_error_through_the_feedback(synapse):
    x = randn(*LEADING, *synapse.in_shape, seed=1).requires_grad_()
    error = randn(*LEADING, *synapse.out_shape, seed=2)
    feedback = randn(*synapse.weight.shape, seed=3)
    out = synapse.with_feedback(x, feedback)
    torch.testing.assert_close(out, synapse.transmit(x), rtol=0, atol=0)
    grad_x, grad_w = torch.autograd.grad(out, (x, synapse.weight), error)
    through_feedback, _ = vjp(synapse, x.detach(), error, feedback)
    _, usual = vjp(synapse, x.detach(), error)
    torch.testing.assert_close(grad_x, through_feedback, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_w, usual, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(grad_x, synapse.backward(error), rtol=1e-3, atol=1e-6), "the feedback must matter"


def test_wrapping_shares_the_tensor():
    weight = randn(4, 6, seed=0).requires_grad_()
    synapse = LinearSynapse.wrapping(weight)
    assert synapse.weight is weight and list(synapse.parameters()) == []
    assert (synapse.in_shape, synapse.out_shape) == ((6,), (4,))
    x = randn(3, 6, seed=1)
    (grad,) = torch.autograd.grad(synapse(x).sum(), weight)
    torch.testing.assert_close(grad, synapse.weight_gradient(torch.ones(3, 4), x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "in_shape, kernel, stride, padding, words",
    [
        ((2, 4, 4), 7, 1, 1, "does not fit an input of 4x4"),
        ((2, 9, 2), 3, 2, 0, "does not fit an input of 9x2"),
        ((5, 5), 3, 1, 0, "channels, height, width"),
        ((2, 5, 5), 0, 1, 0, "Invalid convolution"),
        ((2, 5, 5), 3, 0, 0, "Invalid convolution"),
        ((2, 5, 5), 3, 1, -1, "Invalid convolution"),
    ],
)
def test_a_convolution_that_does_not_fit_is_a_clear_error(in_shape, kernel, stride, padding, words):
    with pytest.raises(ValueError, match=words):
        ConvSynapse(in_shape, 3, kernel, stride, padding)


def test_a_conv_stack_too_deep_for_the_input_is_a_user_error():
    with pytest.raises(InvalidInputError, match="does not fit an input of 4x4.*use fewer layers"):
        SpikingClassifier(2 * 8 * 8, 3, synapse="conv", channels=[3, 3], kernel_size=5, padding=0, input_shape=(2, 8, 8))
