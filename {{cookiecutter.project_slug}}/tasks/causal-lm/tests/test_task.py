"""What only the causal-lm task does: packing, and labels that are the next token."""

import datasets
import torch
from conftest import TINY, losses, run_train

import task
from config import Config
from trainkit.cli import parse_args


def tiny_config(**options):
    return parse_args([f"--{name}={value}" for name, value in {**TINY, **options}.items()], Config)


def test_packing_cuts_full_blocks_with_eos_between_texts():
    cfg = tiny_config(packing="true", block_size=16)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    texts = ["the cat sat on the mat", "a dog ran", "", "birds sing in the morning light"]
    raw = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": texts}),
        validation=datasets.Dataset.from_dict({"text": texts[:1]}),
    )
    train_set, _, label_names = task.prepare_datasets(cfg, raw, tokenizer)
    stream = [
        i for text in texts if text for i in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    ]
    blocks = train_set["input_ids"]
    assert label_names is None
    assert all(len(block) == 16 for block in blocks)
    assert [i for block in blocks for i in block] == stream[: len(stream) // 16 * 16]


def test_labels_are_the_next_token_and_padding_predicts_nothing():
    cfg = tiny_config()
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    rows = [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}]
    batch = task.collate(cfg, rows, tokenizer, None)
    assert batch["labels"].tolist() == [[6, 7, 8, -100], [10, -100, -100, -100]]
    assert task.target_counts(batch).tolist() == [3, 1]


def test_summed_losses_are_per_sample_sums_over_targets():
    cfg = tiny_config()
    tokenizer, model_config = task.load_tokenizer_and_config(cfg)
    torch.manual_seed(0)
    model = task.build_model(cfg, model_config, None)
    batch = task.collate(
        cfg, [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}], tokenizer, None
    )
    losses, _ = task.summed_losses(cfg, model, batch)
    alone, _ = task.summed_losses(
        cfg, model, task.collate(cfg, [{"input_ids": [9, 10]}], tokenizer, None)
    )
    # Padding changes nothing: the second sample's loss is the same with or without it.
    assert torch.allclose(losses[1], alone[0], rtol=1e-5)
    assert losses.shape == (2,)


def test_the_output_layer_of_a_language_model_is_never_a_fresh_head():
    """Untied or tied to the embeddings, lm_head is pretrained: LoRA freezes it and
    head_learning_rate leaves it alone, as for every weight of the base model."""
    from transformers import AutoModelForCausalLM

    from trainkit.optim import head_parameters

    cfg = tiny_config()
    _, config = task.load_tokenizer_and_config(cfg)
    for tied in (True, False):
        config.tie_word_embeddings = tied
        model = AutoModelForCausalLM.from_config(config)
        assert (model.lm_head.weight is model.transformer.wte.weight) == tied
        assert head_parameters(model) == []


def test_packed_run_trains(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=2, packing="true", block_size=32, max_train_samples=100)
    assert sorted(losses(out)) == [1, 2]
