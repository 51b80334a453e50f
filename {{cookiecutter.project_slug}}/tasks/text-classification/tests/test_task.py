"""What only the text-classification task does: label mapping and its offline metric module."""

import json

import pytest
from conftest import PROJECT, TINY, run_train
from safetensors.torch import load_file

import task


def test_bundled_metric_module_computes_accuracy_and_macro_f1():
    import evaluate

    metric = evaluate.load(str(PROJECT / "metrics" / "classification"))
    scores = metric.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    # Per-class F1: class 0 = 1, class 1 = 2/3 (1 of 2 found), class 2 = 2/3 (1 of 2 right).
    assert scores == {"accuracy": 0.75, "f1": pytest.approx((1 + 2 / 3 + 2 / 3) / 3)}


def test_string_labels_travel_with_the_final_model(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=2)
    model = task.model_class().from_pretrained(out / "final")
    labels = {json.loads(line)["label"] for line in (PROJECT / TINY["train_file"]).open()}
    assert set(model.config.label2id) == labels
    assert model.config.id2label[0] == sorted(labels)[0]


def test_integer_labels_work_too(tmp_path):
    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:60]
    names = sorted({row["label"] for row in rows})
    data = tmp_path / "ints.jsonl"
    lines = [json.dumps({"text": r["text"], "label": names.index(r["label"])}) for r in rows]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    run_train(
        out,
        max_steps=2,
        train_file=data,
        validation_file="null",
        eval_strategy="steps",
        eval_steps=2,
    )
    model = task.model_class().from_pretrained(out / "final")
    assert model.config.num_labels == len(names)


def test_a_class_label_column_keeps_its_names(tmp_path):
    """Hub datasets (and parquet files written by datasets) hold labels as ClassLabel ids."""
    import datasets

    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:60]
    names = sorted({row["label"] for row in rows})
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    table = {"text": [r["text"] for r in rows], "label": [names.index(r["label"]) for r in rows]}
    data = tmp_path / "class-label.parquet"
    datasets.Dataset.from_dict(table, features=features).to_parquet(data)
    out = tmp_path / "run"
    run_train(
        out, max_steps=2, train_file=data, validation_file=data, eval_strategy="steps", eval_steps=2
    )
    model = task.model_class().from_pretrained(out / "final")
    assert [model.config.id2label[i] for i in range(len(names))] == names


def test_a_bf16_checkpoint_trains_in_fp32(tmp_path):
    """transformers 5 loads weights in the dtype they were saved in; the loop wants fp32 (AdamW,
    the grad scaler) and sets the compute precision with mixed_precision."""
    import torch

    first = tmp_path / "first"
    run_train(first, max_steps=2)
    half = tmp_path / "bf16"
    task.model_class().from_pretrained(first / "final").to(torch.bfloat16).save_pretrained(half)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (half / name).write_bytes((first / "final" / name).read_bytes())
    out = tmp_path / "run"
    run_train(out, max_steps=2, model_name_or_path=half, config_name="null")
    weights = load_file(out / "final" / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}
