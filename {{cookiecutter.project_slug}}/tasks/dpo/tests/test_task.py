"""What only the dpo task does: the reference model (a frozen copy, the base with adapters off, or
precomputed), the losses and rewards as TRL's DPOTrainer computes them, the preference formats
and their truncation, and a tuned model that prefers the chosen answers."""

import copy
import json
import math
import random

import datasets
import pytest
import torch
from conftest import (
    PROJECT,
    TINY,
    assert_close_values,
    eval_records,
    kill_and_resume,
    losses,
    run_config,
    run_train,
    train_records,
    validation_batch,
)

import task
from config import Config
from trainkit import reference as reference_model
from trainkit.checkpoints import checkpoint_dirs
from trainkit.cli import parse_args

SAMPLE = PROJECT / TINY["train_file"]
REWARDS = task.REWARD_NAMES


def tiny_config(**options):
    return parse_args([f"--{name}={value}" for name, value in {**TINY, **options}.items()], Config)


def sample_rows(count):
    return [json.loads(line) for line in SAMPLE.open()][:count]


def prepared(cfg, tokenizer, rows):
    raw = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows), validation=datasets.Dataset.from_list(rows[:2])
    )
    return task.prepare_datasets(cfg, raw, tokenizer)[0]


def tiny_models(cfg, seed=1, scale=0.05):
    """The tiny model as built for training (the reference), and a policy moved away from it."""
    tokenizer, config = task.load_tokenizer_and_config(cfg)
    reference = reference_model.starting_model(cfg, config).eval()
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in policy.parameters():
            weight += scale * torch.randn(weight.shape, generator=generator)
    return tokenizer, reference, policy


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A model of this task with weights (use_peft needs them): two updates of training."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    run_train(out, max_steps=2)
    return out / "final"


@pytest.mark.parametrize("reference", ["copy", "precomputed", "adapters off"])
def test_the_first_update_starts_at_ln2_with_every_reward_zero(tmp_path, pretrained, reference):
    """At the first update the policy is the reference: the sigmoid loss is ln 2 and the rewards
    are 0; the log probabilities are real ones."""
    out = tmp_path / "run"
    options = {"precompute_ref_log_probs": str(reference == "precomputed").lower()}
    if reference == "adapters off":  # LoRA's B starts at zero: the adapted model is its base
        options.update(use_peft="true", model_name_or_path=pretrained, config_name="null")
    run_train(out, max_steps=2, **options)
    first = train_records(out)[0]
    assert abs(first["loss"] - math.log(2)) <= 1e-6
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert abs(first[name]) <= 1e-6, name
    assert first["logps/chosen"] < -1 and first["logps/rejected"] < -1
    if reference != "precomputed":  # the same model, bit for bit: no chosen reward is higher
        assert first["rewards/accuracies"] == 0.0


def test_a_precomputed_reference_gives_the_live_ones_numbers_and_is_computed_once(tmp_path):
    """The same losses, rewards and evaluations; a second run reads the cached column, a run
    from other starting weights does not."""
    # A seed of its own: the cache key includes it, so the first run cannot find a cached
    # column from an earlier test session.
    options = {"max_steps": 6, "eval_strategy": "steps", "eval_steps": 3}
    options["seed"] = random.randrange(1 << 30)
    live = run_train(tmp_path / "live", **options)
    first = run_train(tmp_path / "first", precompute_ref_log_probs="true", **options)
    again = run_train(tmp_path / "again", precompute_ref_log_probs="true", **options)
    assert "Reference log probabilities" not in live.stderr
    assert "Reference log probabilities" in first.stderr
    assert "Reference log probabilities" not in again.stderr, "computed again, not read back"
    for run in ("first", "again"):
        assert_close_values(losses(tmp_path / "live"), losses(tmp_path / run), 1e-5, "loss")
        for a, b in zip(eval_records(tmp_path / "live"), eval_records(tmp_path / run), strict=True):
            assert_close_values(a, b, 1e-5, "eval")
    # Another seed starts from other weights: their column, not the first run's.
    options["seed"] += 1
    other = run_train(tmp_path / "other", precompute_ref_log_probs="true", **options)
    assert "Reference log probabilities" in other.stderr, "read the other reference's column"
    assert abs(train_records(tmp_path / "other")[0]["loss"] - math.log(2)) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("adapters", [False, True], ids=["weights", "lora"])
def test_resume_after_sigkill_is_bit_identical_with_a_precomputed_reference(
    tmp_path, pretrained, adapters
):
    """The reference is never checkpointed: the resumed run reads the same cached log
    probabilities (or rebuilds the same reference) and goes on bit for bit."""
    options = {"precompute_ref_log_probs": "true", "per_device_train_batch_size": 4}
    if adapters:
        options.update(use_peft="true", model_name_or_path=pretrained, config_name="null")
        options.update(lora_r=4, lora_dropout=0.1, learning_rate=1e-2)
    reference, interrupted, state = kill_and_resume(tmp_path, 1, kill_at=6, **options)
    assert state["batches_done"] > 0, "the checkpoint it resumed from is mid-epoch"
    assert losses(interrupted) == losses(reference)
    untimed = [
        {k: v for k, v in record.items() if not k.endswith("_per_second")}
        for record in (train_records(reference)[-1], train_records(interrupted)[-1])
    ]
    assert untimed[0] == untimed[1], "the logged rewards too"
    name = "adapter_model.safetensors" if adapters else "model.safetensors"
    assert (interrupted / "final" / name).read_bytes() == (reference / "final" / name).read_bytes()


def test_lora_reference_is_the_base_with_adapters_off(pretrained):
    """With use_peft no second model is built: the reference's log probabilities come from the
    adapted model with its adapters switched off, and equal a separate frozen base's."""
    from peft import LoraConfig, get_peft_model

    cfg, batch = validation_batch(
        use_peft="true", model_name_or_path=pretrained, config_name="null"
    )
    tokenizer, config = task.load_tokenizer_and_config(cfg)
    model = task.build_model(cfg, config, None)
    assert not task.REFERENCE, "no copy of the model is kept"
    # Adapters that start away from zero, so the adapted model differs from its base.
    lora = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, lora_dropout=0.0)
    adapted = get_peft_model(model, lora).eval()
    base = task.model_class().from_pretrained(pretrained).eval()
    with torch.no_grad():
        through_disabled = task.reference_logps(cfg, adapted, batch)
        separate = reference_model.completion_logps(base, batch)
        policy = reference_model.completion_logps(adapted, batch)
    torch.testing.assert_close(through_disabled, separate, rtol=1e-6, atol=1e-6)
    assert (policy - separate).abs().max() > 1e-3, "the adapters change the log probabilities"


def trl_dpo(tmp_path, policy, reference, tokenizer, rows, loss_type, loss_weights=None):
    """TRL's DPOTrainer on `rows`: its tokenized pairs, and its loss and metrics on them as one
    batch (policy and reference given, as in the loop)."""
    trl = pytest.importorskip("trl", reason="TRL is not installed: pip install trl")
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=0.1,
        loss_type=loss_type,
        loss_weights=loss_weights,
        max_length=TINY["max_length"],
        per_device_train_batch_size=len(rows),
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
    )
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    tokenized = [trainer.train_dataset[i] for i in range(len(rows))]
    batch = trainer.data_collator(tokenized)
    policy.train()
    with torch.no_grad():
        loss = trainer.compute_loss(policy, batch).item()
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return tokenized, loss, metrics


@pytest.mark.parametrize(
    "loss",
    [
        {"loss_type": "sigmoid"},
        {"loss_type": "ipo"},
        {"loss_type": "hinge"},
        # TRL 1.x writes RPO as the sigmoid loss plus its sft term, weighted.
        {"loss_type": "sigmoid", "rpo_alpha": 0.5, "trl": (["sigmoid", "sft"], [1.0, 0.5])},
    ],
    ids=["sigmoid", "ipo", "hinge", "rpo"],
)
def test_loss_rewards_and_log_probabilities_equal_trls(tmp_path, loss):
    """The same model, data and first batch as TRL's DPOTrainer: the same tokens, loss, rewards
    and log probabilities (1e-5). RPO's NLL term is a mean per pair here and over the batch's
    chosen tokens in TRL: one pair per batch, where the two agree."""
    options = {k: v for k, v in loss.items() if k != "trl"}
    trl_loss, trl_weights = loss.get("trl", (options["loss_type"], None))
    rows = sample_rows(1 if "rpo_alpha" in options else 6)
    cfg = tiny_config(**options)
    tokenizer, reference, policy = tiny_models(cfg)
    tokenized, expected_loss, expected = trl_dpo(
        tmp_path, copy.deepcopy(policy), reference, tokenizer, rows, trl_loss, trl_weights
    )
    pairs = prepared(cfg, tokenizer, rows)
    for ours, theirs in zip(pairs, tokenized, strict=True):
        for name in ("chosen", "rejected"):
            assert ours[f"{name}_input_ids"] == theirs["prompt_ids"] + theirs[f"{name}_ids"]
            assert ours[f"{name}_start"] == len(theirs["prompt_ids"])
    batch = task.collate(cfg, list(pairs), tokenizer, None)
    batch["ref_logps"] = reference_model.completion_logps(reference, batch).detach()
    policy.train()
    with torch.no_grad():
        pair_losses, logps = task.summed_losses(cfg, policy, batch)
    assert math.isclose(pair_losses.mean().item(), expected_loss, rel_tol=1e-5, abs_tol=1e-6)
    got = dict(zip(REWARDS, task.reward_terms(cfg, logps).mean(0).tolist(), strict=True))
    for name in REWARDS:
        assert math.isclose(got[name], expected[name], rel_tol=1e-5, abs_tol=1e-6), name


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_is_conservative_dpo(smoothing):
    """sigmoid with label_smoothing e: (1 - e) of the pair's loss as labelled, e as flipped."""
    cfg = tiny_config(label_smoothing=smoothing, beta=0.5)
    logps = torch.tensor([[-10.0, -14.0], [-9.0, -8.0]])
    ref_logps = torch.tensor([[-11.0, -12.0], [-9.5, -9.0]])
    delta = torch.tensor([3.0, -0.5])  # (chosen ratio) - (rejected ratio)
    batch = {"labels": torch.zeros(2, 2, 5)}
    expected = -(1 - smoothing) * torch.nn.functional.logsigmoid(0.5 * delta)
    expected -= smoothing * torch.nn.functional.logsigmoid(-0.5 * delta)
    torch.testing.assert_close(task.pair_losses(cfg, logps, ref_logps, batch), expected)


def conversation_to_text(messages):
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages)


def test_every_format_gives_the_tokens_of_its_explicit_twin():
    """Implicit prompts (the shared start) tokenize as the explicit rows they were made from, in
    conversations and in texts; a micro-batch holds pairs of different lengths."""
    cfg = tiny_config(max_length=256)  # nothing cut
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    rows = sample_rows(8)
    implicit = [
        {"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in rows
    ]
    texts = [
        {key: conversation_to_text(r[key]) for key in ("prompt", "chosen", "rejected")}
        for r in rows
    ]
    # A shared start that ends inside a word: the prompt ends at the last shared space.
    implicit_texts = [{k: t["prompt"] + t[k] for k in ("chosen", "rejected")} for t in texts]
    assert list(prepared(cfg, tokenizer, implicit)) == list(prepared(cfg, tokenizer, rows))
    from_texts = prepared(cfg, tokenizer, texts)
    for pair, text, shared in zip(
        from_texts, texts, prepared(cfg, tokenizer, implicit_texts), strict=True
    ):
        whole = tokenizer(text["prompt"] + text["chosen"] + tokenizer.eos_token)["input_ids"]
        assert pair["chosen_input_ids"] == whole
        assert whole[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(shared["chosen_input_ids"]) == tokenizer.decode(
            pair["chosen_input_ids"]
        )
    batch = task.collate(cfg, list(prepared(cfg, tokenizer, rows)), tokenizer, None)
    lengths = batch["attention_mask"].sum(-1)
    assert len(set(lengths.flatten().tolist())) > 2, "pairs of uneven lengths in one batch"


def test_truncation_drops_and_counts_pairs_without_completion_and_keep_end_keeps_it(capsys):
    cfg = tiny_config(max_length=256)  # nothing cut
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    rows = sample_rows(10)
    whole = prepared(cfg, tokenizer, rows)
    prompts = [pair["chosen_start"] for pair in whole]
    # A max_length that some prompts fill: keep_start leaves those no completion token.
    cut = sorted(prompts)[len(prompts) // 2]
    short = prepared(tiny_config(max_length=cut), tokenizer, rows)
    dropped = sum(length >= cut for length in prompts)
    assert len(short) == len(rows) - dropped > 0
    assert f"Note: {dropped} of {len(rows)} train pairs have a prompt of max_length={cut}" in (
        capsys.readouterr().out
    )
    # keep_end keeps every pair and the end of each completion; the prompt loses its start.
    ends = prepared(tiny_config(max_length=cut, truncation_mode="keep_end"), tokenizer, rows)
    assert len(ends) == len(rows)
    for pair, full in zip(ends, whole, strict=True):
        for name in ("chosen", "rejected"):
            ids, full_ids = pair[f"{name}_input_ids"], full[f"{name}_input_ids"]
            assert ids == full_ids[-cut:]
            assert ids[pair[f"{name}_start"] :] == full_ids[full[f"{name}_start"] :][-cut:]
    # max_prompt_length keeps the prompt's end, next to the answer.
    kept = prepared(tiny_config(max_length=256, max_prompt_length=3), tokenizer, rows)
    for pair, full in zip(kept, whole, strict=True):
        start = full["chosen_start"]
        assert pair["chosen_start"] == min(3, start)
        assert pair["chosen_input_ids"] == full["chosen_input_ids"][start - pair["chosen_start"] :]


def test_training_rewards_do_not_depend_on_accumulation_and_pick_the_best(tmp_path):
    """The logged rewards are means over the pairs of the logging window, so batch B x k equals
    batch B*k with accumulation k; eval_rewards/accuracies can pick the best checkpoint."""
    best = {
        "metric_for_best_model": "eval_rewards/accuracies",
        "eval_strategy": "steps",
        "eval_steps": 3,
        "save_strategy": "steps",
        "save_steps": 3,
        "load_best_model_at_end": "true",
        # 54 pairs: an epoch's last update holds micro-batches of 4 and 2 (a mean of their
        # means would weigh the 2 like the 4).
        "max_train_samples": 54,
    }
    run_train(tmp_path / "big", per_device_train_batch_size=12, **best)
    run_train(
        tmp_path / "accumulated",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=3,
        **best,
    )
    big, accumulated = train_records(tmp_path / "big"), train_records(tmp_path / "accumulated")
    assert len(big) == len(accumulated) >= 10
    for a, b in zip(big, accumulated, strict=True):
        logps = ["logps/chosen", "logps/rejected"]
        assert_close_values({n: a[n] for n in logps}, {n: b[n] for n in logps}, 1e-5, "logps")
        assert a["rewards/accuracies"] == b["rewards/accuracies"]
        # A reward is beta times a difference of two log probabilities, each within 1e-5 of
        # its size: that bounds the reward's difference, not its relative one.
        bound = 2e-5 * 0.1 * max(abs(a[n]) for n in logps)
        for name in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
            assert abs(a[name] - b[name]) <= bound, (name, a[name], b[name])
    evals = eval_records(tmp_path / "big")
    newest = checkpoint_dirs(tmp_path / "big")[-1]
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["best_metric"] == max(e["eval_rewards/accuracies"] for e in evals)


def test_the_debug_preset_learns_to_prefer_the_chosen_answers(tmp_path):
    """configs/debug.yaml on the bundled pairs: the evaluation's reward accuracy, 0 before any
    update by definition, ends well above chance, and the model prefers the chosen answers."""
    out = tmp_path / "debug"
    run_config("configs/debug.yaml", out)
    evals = eval_records(out)
    assert evals[-1]["eval_rewards/accuracies"] >= 0.6
    assert evals[-1]["eval_rewards/margins"] > evals[0]["eval_rewards/margins"] > 0
    assert all(name in train_records(out)[-1] for name in REWARDS)
