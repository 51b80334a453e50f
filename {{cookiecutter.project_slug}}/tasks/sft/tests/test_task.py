"""What only the sft task does: the three data formats, the loss masks, packing that keeps
documents apart, and a trained model that answers."""

import json
import subprocess
import sys

import datasets
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    PROJECT,
    TINY,
    assert_close_values,
    assert_close_weights,
    environment,
    eval_records,
    final_weights,
    losses,
    run_train,
)
from task_settings import as_pairs

import task
from config import Config
from trainkit.cli import parse_args
from trainkit.options import UsageError
from trainkit.packing import check_documents_stay_apart, pack

SAMPLE = PROJECT / TINY["train_file"]


def tiny_config(**options):
    return parse_args([f"--{name}={value}" for name, value in {**TINY, **options}.items()], Config)


def conversations(count):
    return [json.loads(line)["messages"] for line in SAMPLE.open()][:count]


def tiny_model(cfg):
    tokenizer, config = task.load_tokenizer_and_config(cfg)
    torch.manual_seed(0)
    return tokenizer, task.build_model(cfg, config, None)


def prepared(cfg, tokenizer, rows):
    raw = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows), validation=datasets.Dataset.from_list(rows[:2])
    )
    train_set, _, _ = task.prepare_datasets(cfg, raw, tokenizer)
    return train_set


def token_losses(model, batch):
    """Each position's loss (0 where nothing is predicted), from the task's own forward."""
    logits = task.forward(model, batch["input_ids"], batch["position_ids"])
    losses = F.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100, reduction="none"
    )
    return losses.view(batch["labels"].shape)


def test_best_fit_decreasing_keeps_documents_whole():
    documents = [{"input_ids": [n] * n, "loss_mask": [1] * n} for n in (3, 5, 1, 4, 2, 3)]
    rows = pack(documents, max_length=8, strategy="bfd")
    # Longest first, each into the row with the least room that fits: 5+3, 4+3+1, 2.
    assert [row["input_ids"] for row in rows] == [
        [5] * 5 + [3] * 3,
        [4] * 4 + [3] * 3 + [1],
        [2] * 2,
    ]
    assert rows[1]["position_ids"] == [0, 1, 2, 3, 0, 1, 2, 0]


def test_wrapped_cuts_every_max_length_and_restarts_positions_at_the_cut():
    documents = [{"input_ids": [n] * n, "loss_mask": [n % 2] * n} for n in (3, 5, 2)]
    rows = pack(documents, max_length=4, strategy="wrapped")
    assert [row["input_ids"] for row in rows] == [[3, 3, 3, 5], [5, 5, 5, 5], [2, 2]]
    assert [row["position_ids"] for row in rows] == [[0, 1, 2, 0], [0, 1, 2, 3], [0, 1]]
    assert rows[0]["loss_mask"] == [1, 1, 1, 1] and rows[2]["loss_mask"] == [0, 0]


@pytest.mark.parametrize("strategy", ["bfd", "wrapped"])
def test_packed_rows_give_every_token_the_loss_of_its_document_alone(strategy):
    """The proof packing needs: documents in one row do not see each other. A model that let
    them (an attention_mask of ones, positions that run on) fails this."""
    cfg = tiny_config(packing="true", packing_strategy=strategy, max_length=64)
    tokenizer, model = tiny_model(cfg)
    model.eval()
    rows = [{"messages": messages} for messages in conversations(12)]
    packed = prepared(cfg, tokenizer, rows)
    alone = prepared(tiny_config(packing="false", max_length=1024), tokenizer, rows)
    assert len(packed) < len(alone), "several documents share a row"
    with torch.no_grad():
        packed_losses = token_losses(model, task.collate(cfg, list(packed), tokenizer, None))
        single = []
        for row in alone:
            batch = task.collate(cfg, [row], tokenizer, None)
            single.append(token_losses(model, batch)[0][batch["labels"][0] != -100])
    # Each document's trained positions, row by row: a row's labels, cut at its documents.
    packed_batch = task.collate(cfg, list(packed), tokenizer, None)
    found = []
    for row, labels, values in zip(packed, packed_batch["labels"], packed_losses, strict=True):
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for start, end in zip(starts, starts[1:], strict=False):
            trained = labels[start:end] != -100
            found.append((row["input_ids"][start:end], values[start:end][trained]))
    for ids, document_losses in found:
        if strategy == "bfd":
            expected = single[next(i for i, row in enumerate(alone) if row["input_ids"] == ids)]
        else:  # a wrapped piece starts anywhere in its document: compare it with itself alone
            piece = {"input_ids": ids, "loss_mask": [1] * len(ids)}
            batch = task.collate(cfg, [piece], tokenizer, None)
            with torch.no_grad():
                expected = token_losses(model, batch)[0][batch["labels"][0] != -100]
        torch.testing.assert_close(document_losses, expected, rtol=1e-5, atol=1e-6)
    assert sum(len(losses) for _, losses in found) == int((packed_batch["labels"] != -100).sum())


def test_masked_tokens_get_zero_gradient_and_the_loss_is_the_mean_over_answers():
    cfg = tiny_config(packing="true", max_length=64)
    tokenizer, model = tiny_model(cfg)
    pairs = as_pairs(conversations(6))
    batch = task.collate(cfg, list(prepared(cfg, tokenizer, pairs)), tokenizer, None)
    logits = task.forward(model, batch["input_ids"], batch["position_ids"])
    logits.retain_grad()
    labels = batch["labels"].flatten()
    losses = F.cross_entropy(logits.flatten(0, 1), labels, ignore_index=-100, reduction="none")
    (losses.sum() / task.target_counts(batch).sum()).backward()
    per_position = logits.grad.abs().sum(-1).flatten()
    assert (per_position[labels == -100] == 0).all(), "masked positions contribute nothing"
    assert (per_position[labels != -100] > 0).all()
    # The targets are exactly the completions' tokens and their EOS, no prompt token among them.
    eos = tokenizer.eos_token_id
    answers = [tokenizer(p["completion"], add_special_tokens=False)["input_ids"] for p in pairs]
    assert sorted(labels[labels != -100].tolist()) == sorted(t for a in answers for t in a + [eos])
    summed, _ = task.summed_losses(cfg, model, batch)
    mean = summed.sum() / task.target_counts(batch).sum()
    torch.testing.assert_close(mean, losses[labels != -100].mean(), rtol=1e-6, atol=0)


def test_completion_only_loss_false_trains_the_prompt_too():
    pairs = as_pairs(conversations(4))
    counts = {}
    for only in ("true", "false"):
        cfg = tiny_config(packing="false", completion_only_loss=only)
        tokenizer, _ = task.load_tokenizer_and_config(cfg)
        rows = list(prepared(cfg, tokenizer, pairs))
        counts[only] = int(task.target_counts(task.collate(cfg, rows, tokenizer, None)).sum())
    # Every prompt token becomes a target too, but its first: nothing comes before it.
    prompts = sum(len(tokenizer(p["prompt"])["input_ids"]) - 1 for p in pairs)
    assert counts["false"] == counts["true"] + prompts


def test_assistant_only_loss_trains_on_the_answers_even_when_packed():
    """trl#3728 lost this mask when packing: here each token carries its mask into the row."""
    messages = conversations(8)
    answers = [m["content"] + "<|end|>" for c in messages for m in c if m["role"] == "assistant"]
    for packing in ("true", "false"):
        cfg = tiny_config(packing=packing, max_length=128, assistant_only_loss="true")
        tokenizer, _ = task.load_tokenizer_and_config(cfg)
        rows = list(prepared(cfg, tokenizer, [{"messages": m} for m in messages]))
        batch = task.collate(cfg, rows, tokenizer, None)
        trained = []
        for labels in batch["labels"]:  # each run of trained targets is one answer
            runs, current = [], []
            for label in labels.tolist() + [-100]:
                if label != -100:
                    current.append(label)
                elif current:
                    runs.append(tokenizer.decode(current))
                    current = []
            trained += runs
        assert sorted(trained) == sorted(answers), packing


def test_truncation_is_said(capsys):
    cfg = tiny_config(packing="false", max_length=8)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    rows = [{"text": "The cat says meow and the dog says woof."}, {"text": "Hi."}] * 2
    prepared(cfg, tokenizer, rows)
    assert "Note: 2 of 4 train documents are longer than max_length=8" in capsys.readouterr().out


def test_plain_text_trains_every_token_and_ends_with_eos():
    cfg = tiny_config(packing="false")
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    rows = list(prepared(cfg, tokenizer, [{"text": "The cat says meow."}] * 2))
    ids = tokenizer("The cat says meow.")["input_ids"] + [tokenizer.eos_token_id]
    assert rows[0]["input_ids"] == ids
    assert task.collate(cfg, rows, tokenizer, None)["labels"][0].tolist() == ids[1:] + [-100]


@pytest.mark.parametrize("form", ["prompt-completion", "text"])
def test_each_data_format_trains_and_evaluates(tmp_path, form):
    messages = conversations(60)
    rows = (
        as_pairs(messages)
        if form == "prompt-completion"
        else [{"text": " ".join(m["content"] for m in c)} for c in messages]
    )
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    run_train(
        out, train_file=data, validation_file="null", max_steps=3, eval_strategy="steps",
        eval_steps=3,
    )  # fmt: skip
    assert sorted(losses(out)) == [1, 2, 3]
    assert eval_records(out)[-1]["eval_loss"] > 0


def test_packed_rows_keep_accumulation_exact(tmp_path):
    """Rows of several conversations, a row count that leaves the last window short: batch 8
    equals batch 4 with two micro-batches per update (losses and weights)."""
    big, accumulated = tmp_path / "big", tmp_path / "accumulated"
    packed = {"packing": "true", "max_length": 96, "max_train_samples": 200}
    run_train(big, per_device_train_batch_size=8, **packed)
    run_train(accumulated, per_device_train_batch_size=4, gradient_accumulation_steps=2, **packed)
    assert len(losses(big)) >= 10
    assert_close_values(losses(big), losses(accumulated), 1e-5, "loss")
    assert_close_weights(final_weights(big), final_weights(accumulated), 1e-5)


def test_a_model_that_lets_documents_see_each_other_is_refused():
    cfg = tiny_config()
    tokenizer, model = tiny_model(cfg)

    class SeesEverything(torch.nn.Module):
        """The model, with an attention mask of ones: packed documents attend to each other."""

        config = model.config

        def forward(self, input_ids, position_ids, use_cache):
            mask = torch.ones_like(input_ids)
            return model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask)

    with pytest.raises(UsageError, match="lets packed documents attend to each other"):
        check_documents_stay_apart(SeesEverything(), task.forward)
    check_documents_stay_apart(model, task.forward)  # the real one keeps them apart


@pytest.mark.parametrize("form", ["messages", "prompt-completion"])
def test_the_trained_model_answers_in_chat(tmp_path, form):
    """final/ holds the chat template, and chat.py answers a question of the sample: through the
    template when trained on conversations, as plain text (--plain) when trained on pairs."""
    # The sample's conversations about the two animals asked about: a quarter of it, enough to
    # learn what each says, eats and where it lives.
    chats = [c for c in conversations(1200) if any(a in c[-1]["content"] for a in ("cat", "duck"))]
    rows = [{"messages": c} for c in chats] if form == "messages" else as_pairs(chats)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    run_train(
        out, train_file=data, validation_file="null", max_train_samples="null", max_length=128,
        per_device_train_batch_size=8, num_train_epochs=10, learning_rate=5e-3,
        assistant_only_loss="true" if form == "messages" else "false",
    )  # fmt: skip
    plain = ["--plain"] if form == "prompt-completion" else []
    answers = {}
    for question in ("What does the cat say?", "Where does the duck live?"):
        result = subprocess.run(
            [sys.executable, "chat.py", str(out / "final"), "--prompt", question, *plain],
            cwd=PROJECT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        answers[question] = result.stdout.strip()
    assert answers == {
        "What does the cat say?": "The cat says meow.",
        "Where does the duck live?": "The duck lives in the pond.",
    }
