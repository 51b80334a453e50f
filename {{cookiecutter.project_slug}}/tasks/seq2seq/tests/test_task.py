"""What only the seq2seq task does: target tokens as labels, generation at evaluation, and
ROUGE / BLEU / chrF computed offline."""

import math

import pytest
from conftest import PROJECT, TINY, arguments, eval_records, run_train

import task


@pytest.fixture(scope="module")
def prepared():
    from accelerate import Accelerator

    from config import Config
    from trainkit import cli, data

    cfg = cli.parse_args(arguments("unused"), Config)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    train_set, _, _ = data.load_datasets(cfg, Accelerator(cpu=True), tokenizer, task)
    return cfg, tokenizer, train_set


def test_labels_are_the_target_tokens_ending_in_eos_padded_with_minus_100(prepared, monkeypatch):
    monkeypatch.chdir(PROJECT)
    cfg, tokenizer, train_set = prepared
    rows = [train_set[i] for i in range(4)]
    batch = task.collate(cfg, rows, tokenizer, None)
    for row, labels in zip(rows, batch["labels"].tolist(), strict=True):
        kept = [token for token in labels if token != -100]
        assert kept == row["labels"] and kept[-1] == tokenizer.eos_token_id
        assert len(kept) <= cfg.max_target_length
        assert labels[len(kept) :] == [-100] * (len(labels) - len(kept))
    assert task.target_counts(batch).tolist() == [len(row["labels"]) for row in rows]


def test_perfect_predictions_score_100_and_wrong_ones_less(prepared):
    cfg, tokenizer, train_set = prepared
    references = [train_set[i]["labels"] for i in range(6)]
    wrong = [row[:2] + [tokenizer.eos_token_id] for row in references]
    perfect = task.eval_scores(
        cfg, 0.5, {"predictions": references, "references": references}, None, tokenizer
    )
    assert perfect["eval_loss"] == 0.5
    for name in ("eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu", "eval_chrf"):
        assert perfect[name] == pytest.approx(100.0), name
    worse = task.eval_scores(
        cfg, 0.5, {"predictions": wrong, "references": references}, None, tokenizer
    )
    assert all(worse[name] < perfect[name] for name in task.GENERATION_METRICS)
    assert worse["eval_gen_len"] == 3


def test_evaluation_generates_and_scores(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=6, eval_strategy="steps", eval_steps=3, generation_num_beams=2)
    for record in eval_records(out):
        assert {"eval_rouge1", "eval_bleu", "eval_chrf", "eval_gen_len"} <= set(record)
        assert all(0 <= record[name] <= 100 for name in task.GENERATION_METRICS)
        assert 0 < record["eval_gen_len"] <= TINY["generation_max_length"] + 1
        assert math.isfinite(record["eval_loss"])


def test_loss_only_evaluation_without_generation(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=2, eval_strategy="steps", eval_steps=2, predict_with_generate="false")
    assert set(eval_records(out)[-1]) == {"step", "epoch", "eval_loss"}


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_summed_losses_over_target_counts_is_the_models_own_loss(prepared, family):
    """The decoder inputs come from the model's own shift: the same loss as the model computes
    when given the labels, for T5 (start token = pad) and BART (start token = eos)."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, BartConfig

    cfg, tokenizer, train_set = prepared
    if family == "t5":
        config = AutoConfig.from_pretrained(PROJECT / TINY["config_name"])
    else:
        config = BartConfig(
            vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
            decoder_ffn_dim=64, pad_token_id=0, eos_token_id=1, bos_token_id=1,
            decoder_start_token_id=1, forced_eos_token_id=1,
        )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    batch = task.collate(cfg, [train_set[i] for i in range(5)], tokenizer, None)
    with torch.no_grad():
        summed, _ = task.summed_losses(cfg, model, batch)
        expected = model(**batch).loss
    assert (summed.sum() / task.target_counts(batch).sum()).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
