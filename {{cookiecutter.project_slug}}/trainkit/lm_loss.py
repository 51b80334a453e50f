"""The next-token loss of a language model, per sample and summed over its targets, computed
one of two ways (`loss_type`, named as in TRL's SFTConfig). causal-lm and sft share it.

nll          The output layer makes the logits of every position, (batch, length, vocabulary),
             and the cross-entropy reads them in fp32. Simplest, and fastest at small
             vocabularies; at 50k-150k tokens that tensor and its fp32 copy are the largest
             thing a step holds.
chunked_nll  The same numbers without that tensor. The model runs with its output layer fed
             no position; the hidden states that would have entered it are kept, only the
             positions with a target among them, and the output layer and the cross-entropy
             run over CHUNK targets at a time. The backward pass recomputes each chunk's
             logits instead of keeping them (torch.utils.checkpoint), so at most one chunk's
             logits exist. The price: the output layer runs twice per chunk.

check() refuses chunked_nll for a model whose logits are more than its output layer applied to
those hidden states (a soft-cap or a scale applied after it), whose chunked loss would differ
from its real one: by its config, and by running both losses on a few tokens before training.
"""

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from torch.utils.checkpoint import checkpoint

from trainkit.options import UsageError

# Config entries of transformations some models apply after the output layer (Gemma, Cohere,
# Granite): the chunked loss would leave them out.
AFTER_HEAD = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# Targets per chunk, TRL's default: peak memory grows with CHUNK x vocabulary (logits, their
# softmax and gradient in fp32: about 150 MB at a 50k vocabulary), speed falls below ~128.
CHUNK = 256


def summed_losses(loss_type, model, labels, **inputs):
    """(each sample's loss summed over its targets, the logits; None for chunked_nll)."""
    if loss_type == "nll":
        logits = model(**inputs).logits
        # In fp32 even under mixed precision: a bf16 log-softmax over the vocabulary is coarse.
        losses = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
        )
        return losses.view(labels.shape).sum(1), logits

    head = extract_model_from_parallel(model).get_output_embeddings()
    kept = []

    def keep_hidden_feed_no_position(module, args):
        kept.append(args[0])
        return (args[0][..., :0, :],)

    # Through the wrapped model, so DDP sees a forward; the output layer computes nothing.
    with head.register_forward_pre_hook(keep_hidden_feed_no_position):
        model(**inputs)
    samples, positions = (labels != -100).nonzero(as_tuple=True)
    hidden, targets = kept[0][samples, positions], labels[samples, positions]
    losses = [
        checkpoint(chunk_losses, head, h, t, use_reentrant=False)
        for h, t in zip(hidden.split(CHUNK), targets.split(CHUNK), strict=True)
    ]
    sums = torch.zeros(len(labels), dtype=torch.float32, device=labels.device)
    return sums.index_add(0, samples, torch.cat(losses)), None


def chunk_losses(head, hidden, targets):
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


def check(loss_type, model):
    """Refuse chunked_nll where its loss differs from nll's: on 16 tokens, in eval mode."""
    if loss_type == "nll":
        return
    if model.get_output_embeddings() is None:
        raise UsageError("loss_type=chunked_nll needs a model with an output layer; use nll.")
    for name in AFTER_HEAD:
        if getattr(model.config, name, None) not in (None, 1, 1.0):
            raise UsageError(f"loss_type=chunked_nll leaves out this model's {name}; use nll.")
    tokens = torch.arange(1, 17).remainder(model.config.vocab_size)[None]
    labels = torch.cat([tokens[:, 1:], torch.tensor([[-100]])], 1)
    training = model.training
    model.eval()
    with torch.no_grad():
        plain = summed_losses("nll", model, labels, input_ids=tokens)[0]
        chunked = summed_losses(loss_type, model, labels, input_ids=tokens)[0]
    model.train(training)
    if not torch.allclose(chunked, plain, rtol=1e-4):
        raise UsageError(
            f"loss_type=chunked_nll: this model's logits are more than its output layer "
            f"(loss {chunked.item():.4f} against {plain.item():.4f}, e.g. soft-capped); use nll."
        )
