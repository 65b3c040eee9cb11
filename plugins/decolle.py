"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import torch
from torch import Tensor

from lightning_local.learners import Learner, LearnerStep, update_objective
from lightning_local.learners.traces import (
    BLOCK_STEPS,
    OnlineSimulation,
    TaskReadout,
    all_reduce_mean_,
    blocks,
    fixed_uniform,
    single_thread,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork
    from lightning_local.module import SpikingClassifier

Readout = Literal["spikes", "membrane"]


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
    (the tests check it). Memory is flat in T (step-by-step under ``no_grad``, the
    same :class:`~lightning_local.learners.traces.OnlineSimulation` as e-prop; the
    first layer's input projection and update are computed 32 steps at a time,
    exactly, and never across an online update). The readouts ``G_l`` are fixed
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
    """

    name = "decolle"

    def __init__(self, readout: Readout = "spikes", online: bool = True, update_every: int = 1, seed: int = 0) -> None:
        super().__init__()
        if readout not in ("spikes", "membrane"):
            raise ValueError(f"Unknown DECOLLE readout {readout!r}: use 'spikes' or 'membrane'.")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1 (got {update_every}).")
        self.readout = readout
        self.online = online
        self.update_every = update_every
        self.seed = seed

    @property
    def manual_optimization(self) -> bool:  # type: ignore[override]
        """Online DECOLLE steps the optimizer itself."""
        return self.online

    def attach(self, network: "SpikingNetwork") -> None:
        classes = network.layers[-1].out_features
        like = network.layers[-1].weight
        for l in range(len(network.layers) - 1):
            n_l = network.layers[l].out_features
            self.register_buffer(f"readout_{l}", fixed_uniform((classes, n_l), n_l, self.seed + l, like))

    def readout_matrix(self, l: int) -> Tensor:
        """The fixed random readout ``G_l`` ``[classes, n_l]`` of hidden layer ``l``."""
        return getattr(self, f"readout_{l}")

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
        x_seq = frames.transpose(0, 1)
        steps, batch = x_seq.shape[0], x_seq.shape[1]
        layers = list(network.layers)
        sim = OnlineSimulation(network, batch, frames)
        pseudo = network.params.pseudo_derivative
        task = TaskReadout(labels, layers[-1].out_features, steps, frames)
        params = [layer.weight for layer in layers] + [l.recurrent_weight for l in layers if l.recurrent_weight is not None]
        deltas = {id(p): torch.zeros_like(p) for p in params}
        readouts = [self.readout_matrix(l) for l in range(len(layers) - 1)]
        spikes_readout = self.readout == "spikes"
        first_errors = sim.first_errors
        for start, stop in blocks(steps, BLOCK_STEPS, update_every if apply is not None else 0):
            sim.begin_block(x_seq[start:stop])  # W_0 is fixed within a block
            with single_thread(frames.device):  # per-step ops are tiny
                for i in range(stop - start):
                    sim.step(i)
                    task.step(sim, deltas[id(layers[-1].weight)])
                    for l, G in enumerate(readouts):
                        read = sim.spk[l] if spikes_readout else sim.mem[l]
                        error = task.error(read @ G.t()) @ G
                        if spikes_readout:
                            error.mul_(pseudo(sim.mem[l]))
                        if l == 0:
                            first_errors[i] = error  # accumulated exactly, per block, by end_block
                        else:
                            deltas[id(layers[l].weight)].addmm_(error.t(), sim.inputs[l].z2)
                        if layers[l].recurrent_weight is not None:
                            deltas[id(layers[l].recurrent_weight)].addmm_(error.t(), sim.recurrent[l].z2)
            sim.end_block(deltas[id(layers[0].weight)])
            if apply is not None and (stop % update_every == 0 or stop == steps):
                apply([(p, deltas[id(p)]) for p in params])
                for d in deltas.values():
                    d.zero_()
        return task.loss, task.logits, [(p, deltas[id(p)]) for p in params]

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        if not self.online:
            loss, logits, updates = self.run(module.network, frames, labels)
            return LearnerStep(loss=loss, logits=logits, objective=update_objective(updates))
        optimizer = module.optimizers()

        def apply(updates: list) -> None:
            grads = [d.clone() for _, d in updates]
            all_reduce_mean_(grads)
            optimizer.zero_grad()
            for (param, _), grad in zip(updates, grads):
                param.grad = grad
            optimizer.step()

        loss, logits, _ = self.run(module.network, frames, labels, apply=apply)
        return LearnerStep(loss=loss, logits=logits, objective=None)
