"""LoRA adapters (use_peft=true, lora.py): only the adapters and a fresh head train and reach the
checkpoints, a run killed with SIGKILL resumes bit for bit, the pretrained weights come out
unchanged, and the merged model computes what the adapter model computes."""

import json

import pytest
import torch
from conftest import PROJECT, kill_and_resume, losses, run_train, validation_batch
from safetensors.torch import load_file
from task_settings import BARE_MODEL_OPTIONS, LORA_OPTIONS

from trainkit.checkpoints import checkpoint_dirs


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A model of this task with weights: what this project trains in two updates."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    run_train(out, max_steps=2)
    return out / "final"


def adapted(pretrained, **options):
    return {
        "use_peft": "true", "model_name_or_path": pretrained, "config_name": "null",
        "lora_r": 4, "lora_dropout": 0.1, "learning_rate": 1e-2, **LORA_OPTIONS, **options,
    }  # fmt: skip


# The checkpoint hooks are the loop's (lora.py), the same for every task: they run for the first
# task only; each task's adapters are checked by the merge test below.
# One process for every task (what a checkpoint keeps depends on the task's head); two
# processes add DDP to proven parts: the template's CI runs that for one task (`loop`).
@pytest.mark.parametrize(
    "processes", [1, pytest.param(2, marks=[pytest.mark.slow, pytest.mark.loop])]
)
def test_resume_after_sigkill_is_bit_identical_with_adapters(tmp_path, pretrained, processes):
    """Adapter dropout on, so resume must restore the RNG too; 1e-6 on 2 processes, as without
    adapters (gloo's reduction order)."""
    options = adapted(pretrained, per_device_train_batch_size=2, merge_adapter="true")
    reference, interrupted, state = kill_and_resume(tmp_path, processes, kill_at=6, **options)
    assert state["batches_done"] > 0, "the checkpoint it resumed from is mid-epoch"
    adapter = "final/adapter_model.safetensors"
    if processes == 1:
        assert losses(interrupted) == losses(reference)
        assert (interrupted / adapter).read_bytes() == (reference / adapter).read_bytes()
    else:
        expected = losses(reference)
        got = losses(interrupted)
        assert got.keys() == expected.keys()
        assert all(abs(got[k] - expected[k]) <= 1e-6 * abs(expected[k]) for k in expected)
        a, b = load_file(reference / adapter), load_file(interrupted / adapter)
        assert all(torch.allclose(a[n], b[n], rtol=1e-6, atol=1e-7) for n in a)
    # A checkpoint holds the trainable weights only: adapters and a fresh head.
    saved = load_file(checkpoint_dirs(reference)[-1] / "model.safetensors")
    assert saved and all("lora_" in name or "modules_to_save" in name for name in saved)
    full = sum(t.numel() for t in load_file(pretrained / "model.safetensors").values())
    assert sum(t.numel() for t in saved.values()) < full / 2


def test_frozen_weights_stay_and_the_merged_model_computes_what_the_adapters_do(
    tmp_path, pretrained, monkeypatch
):
    from peft import PeftModel

    import task

    out = tmp_path / "run"
    run_train(out, max_steps=4, merge_adapter="true", **adapted(pretrained, lora_dropout=0.0))
    merged_dir = out / "final" / "merged"
    # Loaded, not read from the files: the names are the modules' (some models save older names).
    base = task.model_class().from_pretrained(pretrained).state_dict()
    merged = task.model_class().from_pretrained(merged_dir).state_dict()
    adapters = load_file(out / "final" / "adapter_model.safetensors")
    scale = json.loads((out / "final" / "adapter_config.json").read_text())
    scale = scale["lora_alpha"] / scale["r"]
    changed = 0
    for name, weight in base.items():
        module, kind = name.rsplit(".", 1)
        key = f"base_model.model.{module}"
        a, b = adapters.get(f"{key}.lora_A.weight"), adapters.get(f"{key}.lora_B.weight")
        if a is None and any(k.startswith(key + ".") for k in adapters):
            continue  # a fresh head, trained in full
        if a is None or kind != "weight":  # frozen: the pretrained weight, bit for bit
            assert torch.equal(merged[name], weight), name
            continue
        # Adapted: the pretrained weight plus the adapter's low-rank update, nothing else.
        delta = (b @ a) * scale
        delta = delta if merged[name].shape == delta.shape else delta.T  # GPT-2's Conv1D
        torch.testing.assert_close(merged[name], weight + delta, rtol=1e-5, atol=1e-6)
        changed += 1
    assert changed, "some weight was adapted"

    # The same batch through the adapter model and through the merged one, the task's way.
    monkeypatch.chdir(PROJECT)
    base_model = task.model_class().from_pretrained(pretrained)
    with_adapters = PeftModel.from_pretrained(base_model, out / "final")
    plain = task.model_class().from_pretrained(merged_dir)
    cfg, batch = validation_batch(**BARE_MODEL_OPTIONS)
    with torch.no_grad():
        expected = task.summed_losses(cfg, with_adapters.eval(), batch)[1]
        got = task.summed_losses(cfg, plain.eval(), batch)[1]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
