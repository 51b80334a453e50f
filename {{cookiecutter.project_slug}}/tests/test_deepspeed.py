"""DeepSpeed ZeRO-2 on CPU processes gives DDP's numbers, and its checkpoints resume exactly.

The runs go through tests/deepspeed_on_cpu.py: train.py unchanged, with the Accelerate state
that a GPU launch with configs/accelerate/deepspeed.yaml has (its docstring says why that is
faithful). As for FSDP2, the engine is task-agnostic: these run for the first task only.
"""

import importlib.util

import pytest
import torch
from conftest import (
    assert_close_values,
    assert_close_weights,
    eval_records,
    final_weights,
    kill_and_resume,
    learning_rates,
    losses,
    run_train,
    train_records,
)

from trainkit.checkpoints import checkpoint_dirs

DEEPSPEED = "tests/deepspeed_on_cpu.py"
pytestmark = [
    pytest.mark.loop,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None,
        reason="DeepSpeed is not installed (pip install deepspeed)",
    ),
]


def grad_norms(output_dir):
    return {r["step"]: r["grad_norm"] for r in train_records(output_dir)}


def test_zero2_trains_as_ddp_does(tmp_path):
    """Losses, learning rates, the clipped gradient's norm, evaluation and final/ of ZeRO-2 on
    2 processes equal DDP's on 2 (DeepSpeed steps inside the backward, so the loop sets each
    update's learning rate before it: a rate one update late would move every loss)."""
    ddp, zero2 = tmp_path / "ddp", tmp_path / "zero2"
    options = {
        "per_device_train_batch_size": 2,
        "eval_strategy": "epoch",
        "max_train_samples": 51,
        "max_grad_norm": 0.5,
    }
    run_train(ddp, processes=2, **options)
    run_train(zero2, processes=2, script=DEEPSPEED, **options)
    assert len(losses(ddp)) >= 8
    assert_close_values(losses(ddp), losses(zero2), 1e-5, "loss")
    assert_close_values(grad_norms(ddp), grad_norms(zero2), 1e-5, "grad_norm")
    assert learning_rates(ddp) == learning_rates(zero2)
    for a, b in zip(eval_records(ddp), eval_records(zero2), strict=True):
        assert_close_values(a, b, 1e-5, "eval")
    expected, got = final_weights(ddp), final_weights(zero2)
    assert sorted(got) == sorted(expected)
    assert_close_weights(expected, got, 1e-4)


def test_a_zero2_checkpoint_resumes_bit_identical_after_sigkill(tmp_path, model_with_dropout):
    """SIGKILL after a DeepSpeed checkpoint, then resume: every loss and final/ weight equals
    the uninterrupted ZeRO-2 run's, bit for bit (dropout on: the RNG comes back too)."""
    reference, interrupted, state = kill_and_resume(
        tmp_path,
        2,
        kill_at=8,
        script=DEEPSPEED,
        config_name=model_with_dropout,
        per_device_train_batch_size=2,
    )
    checkpoint = checkpoint_dirs(interrupted)[0]
    assert (checkpoint / "pytorch_model").is_dir(), list(checkpoint.iterdir())
    assert state["batches_done"] > 0, "the checkpoint it resumed from is in the middle of an epoch"
    assert losses(interrupted) == losses(reference)
    weights, resumed = final_weights(reference), final_weights(interrupted)
    assert all(torch.equal(weights[name], resumed[name]) for name in weights)
