"""What only the seq2seq task does: target tokens as labels, generation at evaluation, and
ROUGE / BLEU / chrF computed offline."""

import math

import pytest
from conftest import PROJECT, TINY, arguments, eval_records, run_train

import task


@pytest.fixture(scope="module")
def prepared():
    from accelerate import Accelerator

    import cli
    import data
    from train import Config

    cfg = cli.parse_args(arguments("unused"), Config)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    train_set, _, _ = data.load_datasets(cfg, Accelerator(cpu=True), tokenizer)
    return cfg, tokenizer, train_set


def test_labels_are_the_target_tokens_ending_in_eos_padded_with_minus_100(prepared, monkeypatch):
    monkeypatch.chdir(PROJECT)
    cfg, tokenizer, train_set = prepared
    rows = [train_set[i] for i in range(4)]
    batch = task.collate(rows, tokenizer)
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
