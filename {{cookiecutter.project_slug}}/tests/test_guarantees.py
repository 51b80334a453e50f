"""The numbers do not depend on accumulation, process count or interruption (README, "Guarantees").

Each test compares two real runs of train.py and would fail if the guarantee broke. Runs are fp32
on CPU with dropout off (except the resume tests, which turn it on to prove the RNG comes back).
"""

import math

import pytest
import torch
from conftest import (
    TINY,
    assert_close_values,
    assert_close_weights,
    eval_records,
    final_weights,
    kill_and_resume,
    learning_rates,
    losses,
    record_difference,
    run_train,
    train_records,
)
from transformers import get_scheduler

import task
from trainkit.checkpoints import checkpoint_dirs, step_of

# 50 samples, batch 4 x k 3 = 12 per update: 13 micro-batches an epoch, so the last update of each
# epoch holds one micro-batch (13 % 3 == 1), and with 2 samples it is also short in samples.
ACCUMULATION = 3


@pytest.mark.loop
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_each_epoch_is_a_fresh_permutation_split_across_processes(processes):
    """Shards of every global batch together hold each sample once; epochs reshuffle."""
    from config import Config
    from trainkit.batching import epoch_micro_batches
    from trainkit.cli import parse_args

    cfg = parse_args(["--per_device_train_batch_size=4"], Config)
    epochs = []
    for epoch in range(2):
        shards = [epoch_micro_batches(50, epoch, cfg, processes, rank) for rank in range(processes)]
        assert len({len(shard) for shard in shards}) == 1, (
            "every process runs the same number of batches"
        )
        seen = [index for shard in shards for batch in shard for index in batch]
        assert len(seen) == len(set(seen)) >= 50 - (processes - 1)
        epochs.append([batch for batches in zip(*shards, strict=True) for batch in batches])
    assert epochs[0] != epochs[1]


def test_accumulation_does_not_change_the_numbers(tmp_path):
    """Batch B*k with accumulation 1 equals batch B with accumulation k, also for short windows.

    54 samples make 14 micro-batches of 4 an epoch: the last window holds two micro-batches of
    4 and 2 samples. Only a loss normalised by the window's total target count gets it right; a
    mean of per-micro-batch means weights the 2 samples like 4, even where every sample has one
    target (classification)."""
    big, accumulated = tmp_path / "big", tmp_path / "accumulated"
    samples = {"max_train_samples": 54}
    run_train(big, per_device_train_batch_size=4 * ACCUMULATION, **samples)
    run_train(
        accumulated,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=ACCUMULATION,
        **samples,
    )
    assert len(losses(big)) >= 10
    assert_close_values(losses(big), losses(accumulated), 1e-5, "loss")
    assert_close_weights(final_weights(big), final_weights(accumulated), 1e-5)


# The default tier's proof of process invariance (and eval exactness) is accumulation 1.
# Accumulation on two processes combines two proven parts of the loop: a long proof, run for one
# task only in the template's CI.
@pytest.mark.parametrize(
    "accumulation",
    [1, pytest.param(ACCUMULATION, marks=[pytest.mark.loop, pytest.mark.slow])],
)
def test_two_processes_equal_one_with_twice_the_batch(tmp_path, accumulation):
    """2 processes x batch B == 1 process x batch 2B: losses, learning rates, weights, and the
    evaluation, which counts every sample once although the shards are padded to even out."""
    one, two = tmp_path / "one", tmp_path / "two"
    # 45 eval samples do not divide the global eval batch (2 x 8): the last batch, 13 samples,
    # is padded with 3 repeated ones that must not be counted. 51 training samples end each
    # epoch with a global batch of 3, split 2 + 1: the processes hold different target counts
    # even where every sample has one target.
    options = {
        "gradient_accumulation_steps": accumulation,
        "eval_strategy": "epoch",
        "max_train_samples": 51,
    }
    run_train(one, per_device_train_batch_size=4, per_device_eval_batch_size=4, **options)
    run_train(
        two, processes=2, per_device_train_batch_size=2, per_device_eval_batch_size=8, **options
    )
    assert len(losses(one)) >= 10
    assert_close_values(losses(one), losses(two), 1e-5, "loss")
    assert learning_rates(one) == learning_rates(two)
    assert_close_weights(final_weights(one), final_weights(two), 1e-5)
    evals_one, evals_two = eval_records(one), eval_records(two)
    assert len(evals_one) == len(evals_two) == TINY["num_train_epochs"]
    for a, b in zip(evals_one, evals_two, strict=True):
        assert_close_values(a, b, 1e-6, "eval")


@pytest.mark.loop
def test_refuses_two_processes_that_would_train_alone(tmp_path):
    """Without ACCELERATE_USE_CPU a CPU-only launch makes two independent copies: refuse."""
    from conftest import environment

    env = environment()
    env.pop("ACCELERATE_USE_CPU")
    result = run_train(
        tmp_path / "run", processes=2, check=False, env=env, per_device_train_batch_size=2
    )
    assert result.returncode != 0
    assert "ACCELERATE_USE_CPU=true" in result.stderr
    assert not (tmp_path / "run" / "final").exists()


def test_resume_after_sigkill_is_bit_identical(tmp_path, model_with_dropout):
    """Killed mid-epoch and resumed: every later loss and the final weights are bit-identical."""
    reference, interrupted, state = kill_and_resume(
        tmp_path,
        1,
        kill_at=10,
        config_name=model_with_dropout,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    assert state["batches_done"] > 0, "the checkpoint it resumed from is in the middle of an epoch"
    expected, got = losses(reference), losses(interrupted)
    assert max(got) == max(expected) > state["global_step"] + 7, (
        "the resumed run crossed an epoch boundary"
    )
    assert got == expected  # bit-identical, before and after the resume point
    assert learning_rates(interrupted) == learning_rates(reference)
    weights, resumed = final_weights(reference), final_weights(interrupted)
    assert all(torch.equal(weights[name], resumed[name]) for name in weights)
    record_difference("losses and weights, bit for bit", 0.0)


# Per process checkpoint state and resume position are the loop's, the same for every task;
# each task's own resume is proven bit for bit by the one-process test above.
@pytest.mark.loop
@pytest.mark.slow
def test_resume_on_two_processes_matches(tmp_path, model_with_dropout):
    reference, interrupted, state = kill_and_resume(
        tmp_path, 2, kill_at=8, config_name=model_with_dropout, per_device_train_batch_size=2
    )
    assert state["batches_done"] > 0
    assert_close_values(losses(reference), losses(interrupted), 1e-6, "loss")
    assert_close_weights(final_weights(reference), final_weights(interrupted), 1e-6)


@pytest.mark.loop
@pytest.mark.slow
def test_a_resume_where_the_epoch_is_shorter_goes_on_to_the_next(tmp_path):
    """2 x 6 and 3 x 4 take the same global batch, but of 50 samples 3 processes drop an epoch's
    last 2 (too few to split over 3): their epoch holds 4 micro-batches, not 5. A checkpoint
    after the 4th of 2 processes' epoch resumes on 3 into the next epoch and ends at 3
    processes' count of updates (it used to wait forever for the rest of the epoch)."""
    options = {"save_strategy": "steps", "save_steps": 4, "num_train_epochs": 2}
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    samples = {"max_train_samples": 50, "max_steps": 4}
    run_train(first, processes=2, per_device_train_batch_size=6, **samples, **options)
    checkpoint = checkpoint_dirs(first)[-1]
    on_three = {"per_device_train_batch_size": 4, "max_train_samples": 50, **options}
    # The checkpoint's run ended there (its max_steps): resumed into a new directory, nothing
    # is left to train, and the run still ends with final/ and its card.
    done = run_train(tmp_path / "done", 3, resume_from_checkpoint=str(checkpoint), **on_three)
    assert "at update 4 of 4." in done.stdout
    assert (tmp_path / "done" / "final" / "README.md").is_file()
    on_three["max_steps"] = -1
    result = run_train(resumed, 3, resume_from_checkpoint=str(checkpoint), **on_three)
    assert f"Resumed from {checkpoint} at update 4 of 8." in result.stdout
    assert sorted(losses(resumed)) == [5, 6, 7, 8]
    assert [record["epoch"] for record in train_records(resumed)] == [1.25, 1.5, 1.75, 2.0]


# bf16 keeps 8 significant bits: a value rounds to within 2**-8 of itself, and one whose fp32
# sum ran in another order (another batch shape, another process count) can land one step of
# 2**-7 away. A mean of such values moves by at most that step, if every one of them moved the
# same way: 2**-7 relative is the bound, far above what runs show (about 5e-5) and below what
# one lost sample does (2e-2 on the runs below).
BF16_ROUNDING = 2**-7


@pytest.mark.loop
@pytest.mark.slow
def test_bf16_on_cpu_keeps_accumulation_and_process_count_within_its_rounding(tmp_path):
    """mixed_precision=bf16 autocasts on CPU: batch B*k, batch B with accumulation k, and two
    processes with batch B*k/2 give the same losses within bf16's rounding; a sample fewer
    moves them by more, so the tolerance would see a lost sample."""

    def bf16_losses(name, **options):
        run_train(tmp_path / name, mixed_precision="bf16", **{"max_train_samples": 54, **options})
        return losses(tmp_path / name)

    big = bf16_losses("big", per_device_train_batch_size=12)
    accumulated = bf16_losses("acc", per_device_train_batch_size=4, gradient_accumulation_steps=3)
    two = bf16_losses("two", processes=2, per_device_train_batch_size=6)
    fewer = bf16_losses("fewer", per_device_train_batch_size=12, max_train_samples=53)
    assert len(big) >= 10
    assert_close_values(accumulated, big, BF16_ROUNDING, "bf16 loss, accumulation")
    assert_close_values(two, big, BF16_ROUNDING, "bf16 loss, 2 processes")
    lost = max(abs(fewer[step] - big[step]) / big[step] for step in big)
    assert lost > BF16_ROUNDING, f"a lost sample moved the losses by {lost:.1e} only"


SCHEDULERS = [
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
]


def reference_rates(scheduler, warmup, total):
    """The rate transformers' own scheduler gives each update, stepped once per update."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=TINY["learning_rate"])
    extra = {
        "cosine_with_restarts": {"num_cycles": 2},
        "polynomial": {"power": 2.0, "lr_end": 1e-7},
    }
    reference = get_scheduler(
        scheduler, optimizer, warmup, total, scheduler_specific_kwargs=extra.get(scheduler)
    )
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    return rates


@pytest.mark.loop
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_lr_at_is_the_closed_form_of_every_schedule(scheduler):
    import train
    from config import Config
    from trainkit.cli import parse_args

    warmup = 0 if scheduler == "constant" else 3
    options = [f"--lr_scheduler_type={scheduler}", f"--learning_rate={TINY['learning_rate']}"]
    cfg = parse_args(options + ["--lr_num_cycles=2", "--lr_power=2.0", "--lr_end=1e-7"], Config)
    expected = reference_rates(scheduler, warmup, 17)
    got = [train.lr_at(update, 17, warmup, cfg) for update in range(17)]
    assert all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(got, expected, strict=True)
    )


@pytest.mark.loop
def test_learning_rate_of_every_update_over_the_sharded_horizon(tmp_path):
    """Logged rates are the schedule's over exactly ceil(micro-batches / k) updates an epoch, when
    micro-batches % k != 0: the horizon is right and the last update is not wasted at rate 0."""
    out = tmp_path / "run"
    run_train(
        out, per_device_train_batch_size=4, gradient_accumulation_steps=ACCUMULATION, warmup_steps=3
    )
    micro_batches = math.ceil(TINY["max_train_samples"] / 4)
    assert micro_batches % ACCUMULATION != 0
    total = TINY["num_train_epochs"] * math.ceil(micro_batches / ACCUMULATION)
    logged = learning_rates(out)
    assert sorted(logged) == list(range(1, total + 1))
    expected = reference_rates("linear", 3, total)
    for step in range(1, total + 1):
        assert math.isclose(logged[step], expected[step - 1], rel_tol=1e-9, abs_tol=1e-15), step
    assert logged[total] > 0


@pytest.mark.loop
def test_logged_loss_is_the_mean_of_the_window(tmp_path):
    every, windowed = tmp_path / "every", tmp_path / "windowed"
    run_train(every, max_steps=12)
    run_train(windowed, max_steps=12, logging_steps=4)
    per_update, logged = losses(every), losses(windowed)
    means = {step: sum(per_update[s] for s in range(step - 3, step + 1)) / 4 for step in logged}
    assert_close_values(logged, means, 1e-6, "logged loss vs the mean of its window")


@pytest.mark.loop
def test_non_finite_loss_stops_the_run_and_names_the_update(tmp_path):
    """Checked at every log, eval and save (every update here): the message names the last good
    update."""
    out = tmp_path / "run"
    result = run_train(
        out, check=False, learning_rate=1e30, max_steps=20, save_strategy="steps", save_steps=1
    )
    assert result.returncode != 0
    assert "non-finite after update" in result.stderr
    good = int(result.stderr.split("non-finite after update ")[1].split(";")[0])
    logged = {r["step"]: (r["loss"], r["grad_norm"]) for r in train_records(out)}
    assert all(math.isfinite(value) for step in range(1, good + 1) for value in logged[step])
    # The loss, or (where normalisation keeps the loss finite, as in T5) the gradient norm.
    assert not all(map(math.isfinite, logged[good + 1])), "the non-finite value is logged"
    kept = [step_of(path) for path in checkpoint_dirs(out)]
    assert kept and max(kept) == good, "the last good update is checkpointed, nothing after it"


@pytest.mark.loop
def test_skip_option_skips_and_counts_non_finite_updates(tmp_path):
    out = tmp_path / "run"
    run_train(out, learning_rate=1e30, max_steps=6, on_nonfinite="skip")
    last = train_records(out)[-1]
    assert last["skipped_updates"] > 0
    assert all(math.isfinite(r["loss"]) for r in train_records(out) if r["step"] > 1)
    assert (out / "final").exists()


@pytest.mark.skipif(
    task.NAME == "custom", reason="model.py's MLP has no numbered layers or head to scale"
)
def test_each_parameter_group_runs_at_its_scale_of_the_schedule(tmp_path):
    """layerwise_lr_decay, and head_learning_rate where the model has a head: each parameter's
    scale follows from its place in the model, and every group's rate at every update is the
    logged (closed-form) rate times its scale, after a resume too."""
    import re
    import shutil

    import task
    from config import Config
    from trainkit.cli import parse_args
    from trainkit.optim import build_optimizer

    decay, options = 0.5, {"layerwise_lr_decay": 0.5, "max_steps": 4, "warmup_steps": 1}
    cfg = parse_args([f"--{k}={v}" for k, v in {**TINY, **options}.items()], Config)
    _, config = task.load_tokenizer_and_config(cfg)
    model = task.build_model(cfg, config, ["a", "b", "c"])
    in_base = {id(p) for p in model.base_model.parameters()}
    head = [n for n, p in model.named_parameters() if id(p) not in in_base]
    if head:  # a classification head: its own rate, 4 times the base rate
        options["head_learning_rate"] = cfg.head_learning_rate = cfg.learning_rate * 4
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {
        names[id(p)]: group["lr_scale"]
        for group in build_optimizer(cfg, model, torch.device("cpu")).param_groups
        for p in group["params"]
    }
    layers = {n: int(m.group(1)) for n in scale if (m := re.search(r"\.(\d+)\.", n))}
    deepest = max(layers.values()) + 1
    for name, value in scale.items():
        if name in head:
            assert value == 4, name
        elif name in layers:  # the top layer at the full rate, each one below at half the next
            assert value == decay ** (deepest - 1 - layers[name]), name
        elif "embed" in name or "wte" in name or "wpe" in name or name == "shared.weight":
            assert value == decay**deepest, name  # the lowest rate of all
        else:
            assert value == 1, name
    assert min(scale.values()) == decay**deepest

    out, resumed = tmp_path / "run", tmp_path / "resumed"
    saves = {"save_strategy": "steps", "save_steps": 1}
    run_train(out, **saves, **options)
    shutil.copytree(out / "checkpoints" / "step-2", resumed / "checkpoints" / "step-2")
    run_train(resumed, resume_from_checkpoint="latest", **saves, **options)
    logged = learning_rates(out)
    assert learning_rates(resumed) == {3: logged[3], 4: logged[4]}
    for run, steps in ((out, range(1, 5)), (resumed, (3, 4))):
        for step in steps:
            saved = torch.load(run / "checkpoints" / f"step-{step}" / "optimizer.bin")
            for group in saved["param_groups"]:
                assert group["lr"] == logged[step] * group["lr_scale"], (run.name, step)
