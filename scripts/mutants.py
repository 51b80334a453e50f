"""Check that the guarantee tests can fail: bake a project per task, break the loop (or the task)
in one known way at a time, and run the test that should notice. A mutant the test lets through
("survived") means the guarantee is claimed but not proven.

    .venv/bin/python scripts/mutants.py                          # every task (about 45 minutes)
    .venv/bin/python scripts/mutants.py --tasks image-classification

Not part of scripts/test.sh: each mutant retrains the tiny model. Run it after a change to the
guarantee tests or to the code they guard; docs/guarantees.md lists the last results.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
TASKS = json.loads((TEMPLATE / "cookiecutter.json").read_text())["task"]

# (name, file, code, its mutation, the test that must fail); the code must occur exactly once.
LOOP_MUTANTS = [
    (
        "an update's loss as the mean of its micro-batches' means",
        "train.py",
        "loss = losses.sum() * world / update_targets",
        "loss = losses.sum() * world / task.target_counts(batch).sum() / len(window)",
        "test_accumulation_does_not_change_the_numbers",
    ),
    (
        "no process-count correction of DDP's gradient average",
        "train.py",
        "loss = losses.sum() * world / update_targets",
        "loss = losses.sum() / update_targets",
        "test_two_processes_equal_one_with_twice_the_batch",
    ),
    (
        "target counts not summed across processes",
        "train.py",
        'update_targets = accelerator.reduce(local_targets.float(), "sum")',
        "update_targets = local_targets.float() * world",
        "test_two_processes_equal_one_with_twice_the_batch",
    ),
    (
        "the schedule's horizon drops each epoch's short last window",
        "train.py",
        "updates_per_epoch = math.ceil(len(batches) / cfg.gradient_accumulation_steps)",
        "updates_per_epoch = len(batches) // cfg.gradient_accumulation_steps",
        "test_learning_rate_of_every_update_over_the_sharded_horizon",
    ),
    (
        "the data loader seeds its workers from the global RNG",
        "trainkit/batching.py",
        "loader = DataLoader(train_set, batch_sampler=remaining, generator=generator, **loading)",
        "loader = DataLoader(train_set, batch_sampler=remaining, **loading)",
        "test_resume_after_sigkill_is_bit_identical",
    ),
    (
        "non-finite losses filtered out of the health check",
        "train.py",
        "health += update_health",
        "health += torch.nan_to_num(update_health, nan=0.0, posinf=0.0, neginf=0.0)",
        "test_non_finite_loss_stops_the_run_and_names_the_update",
    ),
    (
        "resume replays its epoch from the start",
        "trainkit/batching.py",
        "remaining = batches[state.batches_done :]",
        "remaining = batches",
        "test_resume_after_sigkill_is_bit_identical",
    ),
    (
        "warmup starts one update ahead (lr/warmup instead of 0)",
        "train.py",
        "return cfg.learning_rate * update / max(1, warmup)",
        "return cfg.learning_rate * (update + 1) / max(1, warmup)",
        "test_learning_rate_of_every_update_over_the_sharded_horizon",
    ),
    (
        "evaluation keeps the samples that even out the shards",
        "train.py",
        "accelerator.gather_for_metrics((losses, task.target_counts(batch)))",
        "accelerator.gather((losses, task.target_counts(batch)))",
        "test_two_processes_equal_one_with_twice_the_batch",
    ),
    (
        "the logged loss is the window's sum, not its mean",
        "train.py",
        '"loss": self.loss.item() / max(1, self.updates),',
        '"loss": self.loss.item(),',
        "test_logged_loss_is_the_mean_of_the_window",
    ),
]
LOOP_MUTANTS += [
    (
        "every group at the base rate: layer-wise decay and the head's rate ignored",
        "trainkit/optim.py",
        'group["lr"] = learning_rate * group["lr_scale"]',
        'group["lr"] = learning_rate',
        "test_each_parameter_group_runs_at_its_scale_of_the_schedule",
    ),
    (
        "resume leaves the adapters as initialised (lora.py)",
        "trainkit/lora.py",
        "model.load_state_dict({names[k]: v for k, v in state_dict.items()}, strict=False)",
        "pass",
        "test_resume_after_sigkill_is_bit_identical_with_adapters",
    ),
    (
        "checkpoints keep the frozen weights too (lora.py)",
        "trainkit/lora.py",
        "state_dict.clear()",
        "pass",
        "test_resume_after_sigkill_is_bit_identical_with_adapters",
    ),
]
# Loop mutants whose test a task's project does not have: model.py's MLP has no layers to decay.
NOT_FOR = {"custom": {LOOP_MUTANTS[-3][0]}}
LOOP_MUTANTS += [
    (
        "the launcher dies of SLURM's time-limit signal (slurm/node.sh)",
        "slurm/node.sh",
        "trap '' USR1",
        ":",
        "test_two_nodes_and_slurm_train_like_one_process_through_preemptions",
    ),
    (
        "a job saved at its time limit is not requeued (slurm/train.sbatch)",
        "slurm/train.sbatch",
        'scontrol requeue "$SLURM_JOB_ID"',
        "true",
        "test_two_nodes_and_slurm_train_like_one_process_through_preemptions",
    ),
]
UNPADDED = (
    "per-token predictions gathered without padding across processes",
    "train.py",
    "values = accelerator.pad_across_processes(values, dim=1, pad_index=-100)",
    "values = values",
    "test_two_processes_equal_one_with_twice_the_batch",
)
TASK_MUTANTS = {
    "image-classification": [
        (
            "augmentation drawn from an unseeded generator",
            "trainkit/images.py",
            "rng = np.random.default_rng([cfg.data_seed, epoch, index])",
            "rng = np.random.default_rng()",
            "test_resume_after_sigkill_is_bit_identical",
        ),
    ],
    "dpo": [
        (
            "the reference is the policy itself, not a frozen copy of its start",
            "task.py",
            'REFERENCE["model"] = copy.deepcopy(model)',
            'REFERENCE["model"] = model',
            "test_the_debug_preset_learns_to_prefer_the_chosen_answers",
        ),
        (
            "the log probabilities count the prompt's tokens too",
            "trainkit/pairs.py",
            "first = max(start, 1)",
            "first = 1",
            "test_loss_rewards_and_log_probabilities_equal_trls",
        ),
        (
            "IPO on summed log ratios, not per token",
            "task.py",
            'ratios = ratios / (batch["labels"] != -100).sum(-1).clamp(min=1)',
            "ratios = ratios",
            "test_loss_rewards_and_log_probabilities_equal_trls",
        ),
        (
            "the logged rewards are means of micro-batch means",
            "task.py",
            "sums = torch.cat([terms.sum(0), terms.new_tensor([len(terms)])])",
            "sums = torch.cat([terms.mean(0), terms.new_tensor([1.0])])",
            "test_training_rewards_do_not_depend_on_accumulation_and_pick_the_best",
        ),
        (
            "use_peft's reference keeps the adapters on",
            "task.py",
            "with extract_model_from_parallel(model).disable_adapter():",
            "with torch.no_grad():",
            "test_lora_reference_is_the_base_with_adapters_off",
        ),
        (
            "the cached reference column is keyed without the reference's seed",
            "trainkit/reference.py",
            "identity = (source, weights, cfg.seed, cfg.disable_dropout, cfg.mixed_precision)",
            "identity = (source, weights, cfg.disable_dropout, cfg.mixed_precision)",
            "test_a_precomputed_reference_gives_the_live_ones_numbers_and_is_computed_once",
        ),
    ],
    "sft": [
        (
            "packed documents see each other (the KV cache turns off transformers' packed masks)",
            "task.py",
            'return {"input_ids": input_ids, "position_ids": position_ids, "use_cache": False}',
            'return {"input_ids": input_ids, "position_ids": position_ids}',
            "test_packed_rows_give_every_token_the_loss_of_its_document_alone",
        ),
        (
            "positions run on across a packed row's documents",
            "trainkit/packing.py",
            'row["position_ids"] += list(range(len(document["input_ids"])))',
            'row["position_ids"] += list(range(len(row["position_ids"]), len(row["input_ids"])))',
            "test_packed_rows_give_every_token_the_loss_of_its_document_alone",
        ),
        (
            "the prompt's tokens are trained on",
            "trainkit/formats.py",
            "mask = [0 if completion_only else 1] * len(prompt_ids) + [1] * len(answer)",
            "mask = [1] * len(prompt_ids) + [1] * len(answer)",
            "test_masked_tokens_get_zero_gradient_and_the_loss_is_the_mean_over_answers",
        ),
        (
            "packing drops the assistant mask (trl#3728)",
            "trainkit/packing.py",
            'row["loss_mask"] += document["loss_mask"]',
            'row["loss_mask"] += [1] * len(document["loss_mask"])',
            "test_assistant_only_loss_trains_on_the_answers_even_when_packed",
        ),
    ],
    "seq2seq": [UNPADDED],
    "token-classification": [UNPADDED],
}


def bake(task, root):
    cookiecutter = Path(sys.executable).with_name("cookiecutter")
    out = root / task
    subprocess.run(
        [str(cookiecutter), "--no-input", "-o", str(out), str(TEMPLATE), f"task={task}"],
        check=True,
        capture_output=True,
    )
    return next(out.iterdir())


def mutate(project, edits):
    for name, code, mutation in edits:
        path = project / name
        text = path.read_text()
        if text.count(code) != 1:
            raise SystemExit(f"{name}: the code to mutate occurs {text.count(code)} times: {code!r}")
        path.write_text(text.replace(code, mutation))


def run_test(project, test):
    """True when the test fails (the mutant is killed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(
            # Both tiers: a generated project's default (addopts) leaves out the slow proofs.
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow"]
            + ["tests", "-k", test],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:  # e.g. processes that wait for each other forever
        return True
    if result.returncode == 5:  # pytest: no test collected
        raise SystemExit(f"{test} selects no test in {project}.")
    return result.returncode != 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help="Comma-separated tasks (default: all).")
    parser.add_argument("--only", default="", help="Run only the mutants whose name contains this text.")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in args.tasks.split(","):
            clean = bake(task, root / "clean")
            for name, file, code, mutation, test in LOOP_MUTANTS + TASK_MUTANTS.get(task, []):
                if args.only not in name or name in NOT_FOR.get(task, ()):
                    continue
                project = root / "mutant"
                shutil.rmtree(project, ignore_errors=True)
                shutil.copytree(clean, project)
                mutate(project, [(file, code, mutation)])
                started = time.perf_counter()
                killed = run_test(project, test)
                seconds = time.perf_counter() - started
                rows.append((task, name, test, "killed" if killed else "SURVIVED"))
                print(f"{task:21} {'killed  ' if killed else 'SURVIVED'} {seconds:5.0f} s  {name}", flush=True)
    print("\n| task | mutant | test | result |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if any(row[-1] == "SURVIVED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
