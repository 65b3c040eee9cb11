"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci 2020)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Optional

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, BatchUpdates, Learner, LearnerStep
from lightning_local.learners.traces import (
    BLOCK_STEPS,
    BlockSimulation,
    OnlineSimulation,
    TaskReadout,
    blocks,
    fixed_uniform,
    optimizer_step,
    single_thread,
    update_bytes,
)
from lightning_local.neurons import LIFParameters

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork
    from lightning_local.module import SpikingClassifier

Readout = Literal["spikes", "membrane"]


class SpatialPool:
    """Fixed average pooling of ``[C, H, W]`` spike maps to ``[C, p, p]`` (a conv layer's DECOLLE readout), with its adjoint.

    Written as two small matrices (``pooled = P_h s P_w^T`` per channel) built by
    PyTorch's ``adaptive_avg_pool1d`` from identity matrices, so the pooling is
    torch's and its adjoint ``P_h^T e P_w`` is exact without autograd in the per-step loop.
    """

    def __init__(self, shape: tuple[int, ...], size: int, like: Tensor) -> None:
        channels, height, width = shape
        self.size = (min(size, height), min(size, width))
        self.p_h = self._matrix(height, self.size[0], like)
        self.p_w = self._matrix(width, self.size[1], like)
        self.features = channels * self.size[0] * self.size[1]

    @staticmethod
    def _matrix(length: int, size: int, like: Tensor) -> Tensor:
        eye = torch.eye(length, dtype=torch.float64)[None]
        return torch.nn.functional.adaptive_avg_pool1d(eye, size)[0].t().to(like)  # [size, length]

    def apply(self, fn) -> "SpatialPool":
        self.p_h, self.p_w = fn(self.p_h), fn(self.p_w)
        return self

    def __call__(self, maps: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C * p * p]``."""
        return torch.einsum("bchw,ph,qw->bcpq", maps, self.p_h, self.p_w).flatten(1)

    def backward(self, error: Tensor) -> Tensor:
        """Adjoint: ``[B, C * p * p] -> [B, C, H, W]``."""
        error = error.unflatten(1, (-1, *self.size))
        return torch.einsum("bcpq,ph,qw->bchw", error, self.p_h, self.p_w)


class Decolle(Learner):
    r"""Every layer learns from its own fixed random readout, locally in space and online in time.

    **Local losses** (Kaiser et al. 2020, eq. 6-7). Hidden layer ``l`` has a
    fixed random readout ``G_l in R^{C x n_l}`` (buffer ``readout_{l}``, drawn
    ``U(-1/sqrt(n_l), 1/sqrt(n_l))`` from ``seed + l``, identical on all ranks) and
    the local loss ``E_l = 1/(T B) sum_{t,b} CE(G_l s_l^t, y)`` - the same
    per-step cross-entropy, with the same normalisation, as the task loss.
    ``readout="spikes"`` (default) reads the spikes ``s_l^t`` as in the paper
    (``Y_l = G_l S_l``; the error reaches the membrane through the surrogate
    ``psi``); ``readout="membrane"`` reads ``u_l^t`` instead (``CE(G_l u_l^t, y)``,
    no ``psi``: a dense signal even for silent neurons). The output layer uses
    the task loss ``E = 1/(T B) sum CE(u_out^t, y)`` on its membrane, its only readout.
    Per-step labels ``[B, T]`` (sequence labelling) work the same way in every loss: ``y^t``
    at step ``t``, no error on steps labelled ``-100``, and ``T B`` replaced by the number
    of labelled steps (:class:`~lightning_local.learners.traces.TaskReadout`).

    **Convolutional layers** (the paper's Appendix A). As in the DECOLLE reference
    implementation, whose readouts see *pooled* feature maps, a conv layer's readout is
    ``G_l`` applied to its spike maps average-pooled to a ``readout_pool x readout_pool``
    grid per channel (:class:`SpatialPool`; documented choice of the pooling); the error
    goes back through the pooling's exact adjoint, and the weight update is the
    convolution's weight gradient of (error, presynaptic trace).

    **Gradient** (eq. 8). Each ``W_l`` (and ``V_l`` in REC) is trained on
    ``E_l`` alone, with no gradient between layers (the layer's input spikes -
    and, in REC, its own ``s^{t-1}`` where it enters through ``V`` - are treated
    as constants) and the refractory/reset term ignored (our reset is detached
    anyway). The membrane is then linear in the weights,
    ``d u_l^t / d W_l = z2^t`` (the presynaptic traces of
    :mod:`lightning_local.learners.traces`, DECOLLE's ``P``), so::

        Delta W_l = sum_t (dE_l/du_l^t)^T z2^t,  dE_l/du_l^t = psi_l^t * (delta_l^t G_l)  (spikes readout)
        delta_l^t = (softmax(G_l s_l^t) - onehot) / (T B)

    which is *exactly* the autograd gradient of ``sum_l E_l`` with those stop-gradients
    (the tests check it). Memory is flat in T, under ``no_grad``. Where the
    optimizer steps every time step (``update_every=1``, the default), the batch is
    simulated step by step (:class:`~lightning_local.learners.traces.OnlineSimulation`;
    the first layer's input projection and update are computed per block, exactly);
    otherwise (``update_every > 1``, or ``online=False``) every layer runs its own scan
    over blocks of up to 32 steps that never cross an update
    (:class:`~lightning_local.learners.traces.BlockSimulation`: on a GPU the Triton
    kernels, no Python work per step). Both give the same updates (tested). The readouts ``G_l`` are fixed
    random matrices, never trained; the logged ``train_loss`` is the task loss ``E``.

    **When to apply** (``online``, ``update_every``):

    * ``True`` (default; the paper's DECOLLE is online): manual optimization; the
      optimizer steps every ``update_every`` time steps (default 1: every step;
      once more at the end for a remainder), within the sequence, on the updates
      accumulated since the previous step. Traces and neuron states are *not*
      reset between these steps, and the first layer's 32-step blocks never cross
      an update. Deterministic (no sampling; the same sequence of steps on every
      run) and DDP-correct: before every step the updates are averaged across
      ranks with ``torch.distributed.all_reduce``; as each rank's error is scaled
      by its own ``1/(T B_rank)``, the average equals the update of the global
      batch, so 2 ranks end with the weights of one process on the global batch
      (ranks must see sequences of equal length; with ``[B, T]`` labels, also equal
      numbers of labelled steps - otherwise the average is only approximately the global one). Lightning's automatic gradient
      clipping, accumulation and LR-scheduler stepping are not available in this
      mode. The logged loss is the task loss of the sequence as it was simulated
      (with the weights changing along it). Lightning counts optimizer steps as
      ``global_step``, so ``max_steps`` counts within-sequence updates here.
    * ``False``: accumulate ``Delta W`` over the whole sequence and return it as
      :func:`~lightning_local.learners.update_objective` - one optimizer step per
      batch, the same schedule as the autograd rules; Lightning's gradient
      clipping, accumulation and LR schedulers apply, and DDP averages it through
      its usual gradient all-reduce. Within-sequence updates are a *different*
      optimizer schedule (``T / update_every`` Adam steps per batch, each on a
      ``update_every``-step slice of the loss), not just a different timing of
      the same update.

    Args:
        readout: ``"spikes"`` or ``"membrane"`` local readout of hidden layers.
        online: step the optimizer within the sequence (manual optimization; default).
        update_every: time steps between optimizer steps when ``online`` (ignored otherwise).
        seed: seed of the random readouts.
        readout_pool: grid side of a conv layer's pooled readout (ignored for dense layers).
    """

    name = "decolle"
    memory_constant_in_T = True  # nothing of length T is kept
    steps_per_time_step = True  # online=True, update_every=1 by default
    search_space = {**NEURON_SPACE, "learner.init_args.readout": {"choices": ["spikes", "membrane"]}}

    def __init__(
        self, readout: Readout = "spikes", online: bool = True, update_every: int = 1, seed: int = 0, readout_pool: int = 4
    ) -> None:
        super().__init__()
        if readout not in ("spikes", "membrane"):
            raise ValueError(f"Unknown DECOLLE readout {readout!r}: use 'spikes' or 'membrane'.")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1 (got {update_every}).")
        if readout_pool < 1:
            raise ValueError(f"readout_pool must be >= 1 (got {readout_pool}).")
        self.readout_pool = readout_pool
        self.readout = readout
        self.online = online
        self.update_every = update_every
        self.seed = seed

    @property
    def manual_optimization(self) -> bool:  # type: ignore[override]
        """Online DECOLLE steps the optimizer itself."""
        return self.online

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        # an update every step simulates step by step (see run), otherwise in block scans
        stepwise = self.online and self.update_every == 1
        simulation = OnlineSimulation if stepwise else BlockSimulation
        block = min(BLOCK_STEPS, frames.shape[1])
        return simulation(network, frames.shape[0], frames, block=block).state_nbytes() + update_bytes(network)

    def attach(self, network: "SpikingNetwork") -> None:
        classes = network.layers[-1].out_features
        like = network.layers[-1].synapse.weight
        self.pools: list[Optional[SpatialPool]] = []
        for l in range(len(network.layers) - 1):
            shape = network.layers[l].out_shape
            pool = SpatialPool(shape, self.readout_pool, like) if len(shape) == 3 else None
            n_l = pool.features if pool is not None else shape[0]
            self.pools.append(pool)
            self.register_buffer(f"readout_{l}", fixed_uniform((classes, n_l), n_l, self.seed + l, like))

    def _apply(self, fn, recurse=True):  # keep the pooling matrices on the buffers' device and dtype
        super()._apply(fn, recurse)
        self.pools = [pool.apply(fn) if pool is not None else None for pool in getattr(self, "pools", [])]
        return self

    def readout_matrix(self, l: int) -> Tensor:
        """The fixed random readout ``G_l`` ``[classes, features]`` of hidden layer ``l``."""
        return getattr(self, f"readout_{l}")

    def local_error(self, l: int, task: TaskReadout, read: Tensor) -> Tensor:
        """``dE_l/d read`` of hidden layer ``l`` for its spikes or membrane ``read``: one step
        ``[B, *out_shape]`` or a block ``[k, B, *out_shape]``."""
        G, pool = self.readout_matrix(l), self.pools[l]
        if pool is None:
            return task.error(read @ G.t()) @ G
        maps = read.reshape(-1, *read.shape[-3:])  # pool sample maps [*, C, H, W]
        features = pool(maps).view(*read.shape[:-3], -1)
        error = task.error(features @ G.t()) @ G
        return pool.backward(error.reshape(maps.shape[0], -1)).view_as(read)

    def hidden_error(self, l: int, params: LIFParameters, task: TaskReadout, spikes: Tensor, mems: Tensor) -> Tensor:
        """``dE_l/du_l`` of hidden layer ``l`` (constants ``params``; one step or a block) through its readout."""
        if self.readout == "membrane":
            return self.local_error(l, task, mems)
        return self.local_error(l, task, spikes).mul_(params.pseudo_derivative(mems))

    @torch.no_grad()
    def run(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor, apply=None, update_every: Optional[int] = None):
        """Simulate the batch and accumulate the DECOLLE updates.

        ``apply(updates)`` (if given) is called every ``update_every`` steps
        (default: the learner's ``update_every``) and
        at the end with the updates accumulated since its last call, which are
        then reset. Returns ``(task loss, logits, [(param, update), ...])`` where
        the updates are those accumulated since the last ``apply`` (all of them
        when ``apply`` is None).
        """
        update_every = self.update_every if update_every is None else update_every
        steps = frames.shape[1]  # frames are [B, T, ...]
        layers = list(network.layers)
        task = TaskReadout(labels, layers[-1].out_features, steps, frames)
        synapses = [layer.synapse for layer in layers] + [layer.recurrent for layer in layers if layer.recurrent is not None]
        params = [synapse.weight for synapse in synapses]
        deltas = {id(p): torch.zeros_like(p) for p in params}
        updates = [(deltas[id(layer.synapse.weight)], deltas[id(layer.recurrent.weight)] if layer.recurrent is not None else None)
                   for layer in layers]
        boundary = update_every if apply is not None else 0
        # Blocks of one step (an update every step) gain nothing from block scans: step by step then.
        simulate = self._step_blocks if boundary == 1 else self._scan_blocks
        for stop in simulate(network, frames, task, updates, boundary):
            if apply is not None and (stop % update_every == 0 or stop == steps):
                apply([(p, deltas[id(p)]) for p in params])
                for d in deltas.values():
                    d.zero_()
        return task.loss, task.logits, [(p, deltas[id(p)]) for p in params]

    def _scan_blocks(self, network, frames, task, updates, boundary) -> Iterator[int]:
        """Accumulate block by block with :class:`BlockSimulation` (every layer's scan per block); yields each block's end."""
        sim = BlockSimulation(network, frames.shape[0], frames)
        for start, stop in blocks(frames.shape[1], BLOCK_STEPS, boundary):
            sim.run_block(frames[:, start:stop])  # the weights are fixed within a block
            task.block(sim, updates[-1][0])
            for l, layer in enumerate(sim.layers[:-1]):
                sim.accumulate(l, self.hidden_error(l, layer.params, task, sim.spikes[l], sim.mems[l]), *updates[l])
            yield stop

    def _step_blocks(self, network, frames, task, updates, boundary) -> Iterator[int]:
        """Accumulate step by step with :class:`OnlineSimulation`; yields the end of every first-layer block."""
        x_seq = frames.transpose(0, 1)
        sim = OnlineSimulation(network, frames.shape[0], frames)
        layers = sim.layers
        first_errors = sim.first_errors
        for start, stop in blocks(x_seq.shape[0], BLOCK_STEPS, boundary):
            sim.begin_block(x_seq[start:stop])  # W_0 is fixed within a block
            with single_thread(frames.device, network.is_dense):  # per-step ops are tiny on dense nets
                for i in range(stop - start):
                    sim.step(i)
                    task.step(sim, updates[-1][0])
                    for l, layer in enumerate(layers[:-1]):
                        error = self.hidden_error(l, layer.params, task, sim.spk[l], sim.mem[l])
                        if l == 0:
                            first_errors[i] = error  # accumulated exactly, per block, by end_block
                        else:
                            layer.synapse.weight_gradient(error, sim.inputs[l].z2, add_to=updates[l][0])
                        if layer.recurrent is not None:
                            layer.recurrent.weight_gradient(error, sim.recurrent[l].z2, add_to=updates[l][1])
            sim.end_block(updates[0][0])
            yield stop

    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """The batch's DECOLLE update with the weights held fixed (``online: false``'s one step; online
        DECOLLE applies the same sum in ``T / update_every`` pieces, each as it accrues)."""
        return BatchUpdates(*self.run(network, frames, labels))

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        if not self.online:
            return super().training_step(module, frames, labels)
        optimizer = module.optimizers()
        loss, logits, _ = self.run(module.network, frames, labels, apply=lambda updates: optimizer_step(optimizer, updates))
        return LearnerStep(loss=loss, logits=logits, objective=None)
