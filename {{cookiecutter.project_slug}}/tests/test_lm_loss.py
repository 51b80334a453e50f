"""lm_loss.py: loss_type=chunked_nll gives the numbers of nll, on one process and on two, and
refuses a model whose logits it would get wrong."""

import dataclasses

import pytest
import torch
from conftest import (
    assert_close_values,
    assert_close_weights,
    final_weights,
    losses,
    run_train,
    validation_batch,
)

import task
from trainkit import lm_loss


def losses_and_gradients(cfg, model, batch, loss_type):
    model.zero_grad()
    summed, _ = task.summed_losses(dataclasses.replace(cfg, loss_type=loss_type), model, batch)
    summed.sum().backward()
    return summed.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("packing", ["true", "false"])
def test_chunked_nll_gives_the_losses_and_gradients_of_nll(monkeypatch, packing):
    # Chunks of 7 targets: many per batch, the last one short.
    monkeypatch.setattr(lm_loss, "CHUNK", 7)
    cfg, batch = validation_batch(6, packing=packing)
    tokenizer, config = task.load_tokenizer_and_config(cfg)
    torch.manual_seed(0)
    model = task.build_model(cfg, config, None)
    plain, plain_gradients = losses_and_gradients(cfg, model, batch, "nll")
    chunked, chunked_gradients = losses_and_gradients(cfg, model, batch, "chunked_nll")
    assert task.target_counts(batch).sum() > 3 * lm_loss.CHUNK
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=0)
    # Summed in another order: each gradient to 1e-5 of its largest entry.
    for name, gradient in plain_gradients.items():
        scale = gradient.abs().max().item()
        torch.testing.assert_close(chunked_gradients[name], gradient, rtol=1e-5, atol=1e-5 * scale)


# lm_loss.py is the same in causal-lm and sft: the DDP run is checked once.
@pytest.mark.loop
@pytest.mark.slow
def test_chunked_nll_on_two_processes_trains_like_nll_on_one(tmp_path):
    """Through DDP: the output layer runs outside the model's forward, and its gradient is
    still averaged across processes like every other."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_train(one, per_device_train_batch_size=4, max_steps=8)
    run_train(two, processes=2, per_device_train_batch_size=2, max_steps=8, loss_type="chunked_nll")
    assert_close_values(losses(one), losses(two), 1e-5, "loss")
    assert_close_weights(final_weights(one), final_weights(two), 1e-5)


def test_a_model_whose_logits_are_more_than_its_output_layer_is_refused():
    """Logits scaled after the output layer: the chunked loss would not be the model's."""
    cfg, _ = validation_batch(1, loss_type="chunked_nll")
    _, config = task.load_tokenizer_and_config(cfg)
    model = task.build_model(dataclasses.replace(cfg, loss_type="nll"), config, None)
    plain_forward = model.forward

    def scaled_logits(*args, **kwargs):
        outputs = plain_forward(*args, **kwargs)
        outputs.logits = outputs.logits * 3
        return outputs

    model.forward = scaled_logits
    with pytest.raises(lm_loss.UsageError, match="more than its output layer"):
        lm_loss.check("chunked_nll", model)
    # Gemma's soft-cap is refused by its config: on fresh weights its effect is too small to see.
    model.forward = plain_forward
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(lm_loss.UsageError, match="final_logit_softcapping"):
        lm_loss.check("chunked_nll", model)
