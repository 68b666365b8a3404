"""The SFT loss without the full logits: the output layer and cross-entropy fused, a chunk of
positions at a time (in the spirit of Liger-Kernel's FusedLinearCrossEntropy, in plain PyTorch
so it runs the same on a CPU and a GPU).

The plain path holds the logits of every trained position (positions × vocabulary, float32),
cross-entropy's log-softmax copy of them and, in training, their gradient: for SmolLM2
(vocabulary 49,152) an evaluation batch of 8 × 512 tokens makes that over half a gigabyte.
Here each chunk's logits live only while the chunk is scored, and in training the gradient
with respect to the hidden states (softmax − one-hot, times the output weight) is computed
right there, so backward only scales it. The matmuls are the ones the plain path does (the
output weight is frozen under LoRA, so neither path computes its gradient): no recomputation.
"""

from __future__ import annotations

import math

from transformers import Trainer

from anxin.template import IGNORE_INDEX

# Logits held at once: 64 MiB of float32 (341 positions of SmolLM2's 49,152-token vocabulary,
# 130 of Llama 3's 128,256). Measured on SmolLM2 (2 threads): at this size the chunked loss of
# an evaluation batch is as fast as the plain one; at 32 MiB it was about 5 % slower.
CHUNK_BYTES = 64 * 2**20

# Config keys of models whose forward changes the logits after the output layer.
LOGIT_RESCALING_KEYS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def chunk_rows(positions: int, vocab_size: int) -> int:
    """Positions per chunk: at most CHUNK_BYTES of logits, in chunks of equal size (a last
    chunk of a few positions would still read the whole output weight)."""
    most = max(1, CHUNK_BYTES // (4 * vocab_size))
    chunks = max(1, math.ceil(positions / most))
    return math.ceil(positions / chunks)


def _chunk_loss(hidden, weight, targets, want_grad: bool):
    """Summed cross-entropy of one chunk and, with want_grad, its gradient wrt `hidden`.

    The logits are laid out vocabulary × positions: that matmul runs 5-10 % faster on a CPU at
    a few hundred positions (SmolLM2, 2 threads), and the softmax is made in place in that one
    buffer, a single exp pass.
    """
    import torch

    # Under autocast the matmul runs in bf16/fp16 like the plain lm_head; the softmax is float32.
    logits = (weight @ hidden.T).float()
    valid = targets != IGNORE_INDEX
    safe_targets = torch.where(valid, targets, 0)
    columns = torch.arange(len(targets), device=targets.device)
    target_logits = logits[safe_targets, columns]
    column_max = logits.amax(dim=0)
    exps = logits.sub_(column_max).exp_()
    sums = exps.sum(dim=0)
    loss = torch.where(valid, column_max + sums.log() - target_logits, 0.0).sum()
    if not want_grad:
        return loss, None
    probs = exps.div_(sums)
    probs[safe_targets, columns] -= 1.0
    if not bool(valid.all()):
        probs[:, ~valid] = 0.0  # ignored positions add nothing
    return loss, (probs.T.to(weight.dtype) @ weight).to(hidden.dtype)


def _summed_loss(hidden, weight, targets, want_grad: bool):
    """(summed loss, gradient wrt hidden or None) over all positions, chunk by chunk."""
    import torch

    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        # Cast the output weight once, not once per chunk as autocast would.
        weight = weight.to(torch.get_autocast_dtype(device))
    step = chunk_rows(len(hidden), weight.shape[0])
    total = hidden.new_zeros((), dtype=torch.float32)
    grads = []
    for start in range(0, len(hidden), step):
        stop = start + step
        loss, grad = _chunk_loss(hidden[start:stop], weight, targets[start:stop], want_grad)
        total += loss
        grads.append(grad)
    if not want_grad:
        return total, None
    grad = torch.cat(grads) if grads else torch.zeros_like(hidden)
    return total, grad


def _function():
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        """Summed cross-entropy of `hidden @ weight.T`; the gradient is made in forward."""

        @staticmethod
        def forward(ctx, hidden, weight, targets):
            total, grad = _summed_loss(hidden, weight, targets, want_grad=True)
            ctx.save_for_backward(grad)
            return total

        @staticmethod
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            return grad * grad_output.to(grad.dtype), None, None

    return LinearCrossEntropy


_LINEAR_CROSS_ENTROPY = None


def linear_cross_entropy_sum(hidden, weight, targets):
    """Sum over positions of cross_entropy(hidden @ weight.T, targets), skipping label -100,
    without materialising the logits. `hidden` (positions × hidden size) may need a gradient;
    `weight` (vocabulary × hidden size) must be frozen.
    """
    global _LINEAR_CROSS_ENTROPY
    import torch

    if weight.requires_grad:
        raise ValueError("the fused loss has no gradient for a trained output weight")
    if not (torch.is_grad_enabled() and hidden.requires_grad):
        with torch.no_grad():
            return _summed_loss(hidden, weight, targets, want_grad=False)[0]
    if _LINEAR_CROSS_ENTROPY is None:
        _LINEAR_CROSS_ENTROPY = _function()
    return _LINEAR_CROSS_ENTROPY.apply(hidden, weight, targets)


def plain_loss_reason(model, args) -> str | None:
    """Why this run must compute its loss from the full logits; None where the fused loss
    gives the same numbers. Only the output layer matters: trained embeddings that are not
    tied to it get their gradient through the hidden states as usual."""
    import torch

    from anxin.train.data import accepts_trained_logits_only

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return "the output layer is adapted (lm_head in lora_target or modules_to_save)"
    if head.weight.requires_grad:
        return "the output layer is trained (full fine-tuning, or embeddings tied to it)"
    if not accepts_trained_logits_only(model):
        return "the model's forward cannot skip its logits"
    if any(getattr(base.config, key, None) for key in LOGIT_RESCALING_KEYS):
        return "the model rescales its logits after the output layer"
    if args.label_smoothing_factor:
        return "label_smoothing_factor needs the full logits"
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        return "DeepSpeed ZeRO-3 shards the output layer"
    return None


class FusedLossTrainer(Trainer):
    """HF's Trainer whose SFT loss (training and evaluation) comes from the final hidden states
    through `linear_cross_entropy_sum`, normalised exactly as HF's ForCausalLMLoss does: by
    `num_items_in_batch` (the trained tokens of the whole accumulated batch) when the Trainer
    gives it, else by this batch's trained tokens.

    `plain_loss_reason` (a string) keeps HF's own loss path for the run.
    """

    def __init__(self, *args, plain_loss_reason: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plain_loss_reason = plain_loss_reason

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        wants_logits = return_outputs and not self.args.prediction_loss_only
        if self.plain_loss_reason or wants_logits:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        import torch

        inputs = dict(inputs)
        keep, targets = _trained_positions(inputs)
        # The model runs as usual (through peft, DDP or DeepSpeed) but keeps no logits; the
        # final hidden state (after the last norm) is the one hidden state it hands back.
        outputs = model(**inputs, logits_to_keep=torch.zeros_like(keep), output_hidden_states=-1)
        hidden = outputs.hidden_states[-1][keep]
        weight = self.accelerator.unwrap_model(model).get_output_embeddings().weight
        total = linear_cross_entropy_sum(hidden, weight, targets.to(hidden.device))
        divisor = num_items_in_batch
        if divisor is None:
            divisor = (targets != IGNORE_INDEX).sum()
        elif torch.is_tensor(divisor):
            divisor = divisor.to(total.device)
        loss = total / divisor
        loss = loss * self._token_average_scale(num_items_in_batch)
        return (loss, {"loss": loss}) if return_outputs else loss

    def _token_average_scale(self, num_items_in_batch) -> int:
        """The factor HF's compute_loss applies when tokens are averaged across processes
        (the gradient all-reduce then averages a loss normalised by the global token count)."""
        if not (self.args.average_tokens_across_devices and num_items_in_batch is not None):
            return 1
        if self.args.n_gpu > 1:
            return self.args.n_gpu
        return self.accelerator.num_processes // self.get_tp_size()


def _trained_positions(inputs: dict):
    """(mask of positions that predict a trained token, their targets), taken out of `inputs`.

    PaddedBatches already gives both (logits_to_keep, shift_labels); otherwise they come from
    the labels, shifted as ForCausalLMLoss shifts them.
    """
    import torch

    labels = inputs.pop("labels")
    keep = inputs.pop("logits_to_keep", None)
    targets = inputs.pop("shift_labels", None)
    if keep is None or targets is None:
        shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = shifted != IGNORE_INDEX
        targets = shifted[keep]
    return keep, targets
