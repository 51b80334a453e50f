"""What the floor loop and the Trainer script share with the generated train.py: the same
data, the same tokenization, the same collation and the same model, built the way the generated
project builds them (see {{cookiecutter.project_slug}}/tasks/<task>/task.py): by default the
bundled sample and a fresh tiny model; with --model_name_or_path, pretrained weights from a
directory (bench/real_models.py), with --train_file/--validation_file other data.

Run from the generated project's directory (its assets/ paths are relative, as in train.py).
"""

import argparse
import itertools
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--task",
        required=True,
        choices=[
            "causal-lm",
            "text-classification",
            "token-classification",
            "seq2seq",
            "image-classification",
            "custom",
        ],
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=200)
    parser.add_argument("--per_device_train_batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_source_length", type=int, default=128, help="seq2seq only.")
    parser.add_argument("--max_target_length", type=int, default=64, help="seq2seq only.")
    parser.add_argument("--torch_compile", default="false", choices=["true", "false"])
    parser.add_argument("--model_name_or_path", default=None, help="Pretrained directory; default: fresh tiny.")
    parser.add_argument("--config_name", default=None, help="Config directory of a fresh model; default: tiny.")
    parser.add_argument("--train_file", default=None)
    parser.add_argument("--validation_file", default=None)
    parser.add_argument("--packing", default="true", choices=["true", "false"], help="causal-lm only.")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=16)
    parser.add_argument("--do_eval", default="false", choices=["true", "false"], help="Evaluate after training.")
    args = parser.parse_args(argv)
    for flag in ("torch_compile", "packing", "do_eval"):
        setattr(args, flag, getattr(args, flag) == "true")
    args.model_dir = args.model_name_or_path or args.config_name or "assets/tiny-model"
    return args


def load_tokenizer(args):
    """The task's tokenizer (image classification: its image processor); None for the custom
    task (model.py reads numbers)."""
    if args.task == "custom":
        return None
    if args.task == "image-classification":
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(args.model_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_data(args, tokenizer):
    """train and validation splits, tokenized exactly as task.py does (cached by datasets)."""
    files = {split: f"assets/data/{split}.jsonl" for split in ("train", "validation")}
    files["train"] = args.train_file or files["train"]
    files["validation"] = args.validation_file or files["validation"]
    raw = datasets.load_dataset("json", data_files=files)
    label_names = None
    if args.task == "custom":  # every column but the label, as float32 rows; labels as ids
        label_names = sorted(raw["train"].unique("label"))
        columns = [name for name in raw["train"].column_names if name != "label"]
        prepared = [
            datasets.Dataset.from_dict({
                "features": [[row[name] for name in columns] for row in split],
                "labels": [label_names.index(row["label"]) for row in split],
            })
            for split in (raw["train"], raw["validation"])
        ]  # fmt: skip
        return prepared[0], prepared[1], label_names
    if args.task == "image-classification":  # paths from the data file's folder, label ids, row index
        label_names = sorted(raw["train"].unique("label"))
        prepared = [
            datasets.Dataset.from_dict({
                "image": [os.path.join(os.path.dirname(files[name]), path) for path in split["image"]],
                "labels": [label_names.index(label) for label in split["label"]],
                "index": list(range(len(split))),
            })
            for name, split in raw.items()
        ]  # fmt: skip
        return prepared[0], prepared[1], label_names
    if args.task == "causal-lm":
        block, packing = args.block_size, args.packing

        def tokenize(rows):  # pack: texts + EOS, concatenated, cut into full blocks
            texts = [t for t in rows["text"] if t and t.strip()]
            if not packing:  # one text per sequence, truncated
                return {"input_ids": tokenizer(texts, truncation=True, max_length=block)["input_ids"]}
            ids = tokenizer(texts)["input_ids"]
            stream = list(itertools.chain.from_iterable(row + [tokenizer.eos_token_id] for row in ids))
            usable = len(stream) // block * block
            return {"input_ids": [stream[i : i + block] for i in range(0, usable, block)]}
    elif args.task == "seq2seq":

        def tokenize(rows):  # source and target texts, each ending in EOS; the target is the labels
            inputs = tokenizer(rows["document"], truncation=True, max_length=args.max_source_length)
            labels = tokenizer(text_target=rows["summary"], truncation=True, max_length=args.max_target_length)
            return {"input_ids": inputs["input_ids"], "labels": labels["input_ids"]}
    elif args.task == "token-classification":
        label_names = sorted(set().union(*raw["train"]["ner_tags"]))
        tag_ids = {name: i for i, name in enumerate(label_names)}

        def tokenize(rows):  # a word's tag on its first sub-token, -100 elsewhere
            encoded = tokenizer(
                rows["tokens"], is_split_into_words=True, truncation=True, max_length=args.max_seq_length
            )
            labels = []
            for i, tags in enumerate(rows["ner_tags"]):
                words = encoded.word_ids(i)
                labels.append([
                    tag_ids[tags[w]] if w is not None and w != (words[j - 1] if j else None) else -100
                    for j, w in enumerate(words)
                ])  # fmt: skip
            return {"input_ids": encoded["input_ids"], "labels": labels}
    else:
        label_names = sorted(raw["train"].unique("label"))
        label_ids = {name: i for i, name in enumerate(label_names)}

        def tokenize(rows):
            encoded = tokenizer(rows["text"], truncation=True, max_length=args.max_seq_length)
            return {"input_ids": encoded["input_ids"], "labels": [label_ids[name] for name in rows["label"]]}

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
    return tokenized["train"], tokenized["validation"], label_names


def make_collate(task, tokenizer, augment=False, seed=42):
    """Images: decoded, and with `augment` cropped and flipped by the generated project's
    images.py (the work train.py does; always epoch 0, the cost is the same), then processed."""
    if task == "image-classification":
        import sys
        from types import SimpleNamespace

        sys.path.insert(0, os.getcwd())  # the generated project's images.py
        import images

        options = SimpleNamespace(data_seed=seed, min_crop_scale=0.08, horizontal_flip=True)

    def collate(rows):  # pad to the longest in the batch; no loss on padding
        if task == "image-classification":
            pictures = [images.open_image({"bytes": None, "path": row["image"]}) for row in rows]
            if augment:
                pictures = [images.random_crop_and_flip(p, options, 0, r["index"]) for p, r in zip(pictures, rows)]
            pixel_values = tokenizer(pictures, return_tensors="pt")["pixel_values"]
            return {"pixel_values": pixel_values, "labels": torch.tensor([row["labels"] for row in rows])}
        if task == "custom":
            return {
                "features": torch.tensor([row["features"] for row in rows], dtype=torch.float32),
                "labels": torch.tensor([row["labels"] for row in rows]),
            }
        batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
        if task == "causal-lm":
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        elif task == "seq2seq":  # targets padded on the right with -100
            longest = max(len(row["labels"]) for row in rows)
            batch["labels"] = torch.tensor([row["labels"] + [-100] * (longest - len(row["labels"])) for row in rows])
        elif task == "token-classification":
            batch["labels"] = torch.full(batch["input_ids"].shape, -100)
            for i, row in enumerate(rows):
                batch["labels"][i, : len(row["labels"])] = torch.tensor(row["labels"])
        else:
            batch["labels"] = torch.tensor([row["labels"] for row in rows])
        return batch

    return collate


class TrainOrder(torch.utils.data.Sampler):
    """The sample order train.py draws (epoch_micro_batches, one process): a permutation seeded
    with seed + epoch, one per pass. The floor and the Trainer use it so all three train on the same
    batches: with unpacked variable-length texts, another order means other padded lengths and
    another amount of work per update."""

    def __init__(self, num_samples, seed):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


class CustomWithLoss(torch.nn.Module):
    """The generated model.py's Model, standardized with the training data's statistics as
    task.py does, answering like a transformers model (loss and logits) for the floor and the
    Trainer."""

    def __init__(self, args, train_set, label_names):
        import json
        import sys

        sys.path.insert(0, os.getcwd())  # the generated project's model.py
        from model import Model

        super().__init__()
        table = torch.tensor(train_set["features"], dtype=torch.float64)
        config = json.loads(open(os.path.join(args.model_dir, "config.json")).read())
        self.model = Model(
            [f"x{i}" for i in range(table.shape[1])], table.mean(0).tolist(), table.std(0, correction=0).tolist(),
            [str(name) for name in label_names], **config,
        )  # fmt: skip

    def forward(self, features, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.model(features)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory):
        self.model.save_pretrained(directory)


def build_model(args, tokenizer, label_names, train_set=None):
    """The model, pretrained or fresh from the project's tiny config; call after seeding."""
    if args.task == "custom":
        return CustomWithLoss(args, train_set, label_names)
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageClassification,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    config = AutoConfig.from_pretrained(args.model_dir)
    if args.task != "image-classification":
        config.pad_token_id = tokenizer.pad_token_id
    model_class = {"causal-lm": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}.get(args.task)
    if model_class is None:
        model_class = {
            "text-classification": AutoModelForSequenceClassification,
            "token-classification": AutoModelForTokenClassification,
            "image-classification": AutoModelForImageClassification,
        }[args.task]
        config.num_labels = len(label_names)
        config.id2label = {i: str(name) for i, name in enumerate(label_names)}
        config.label2id = {str(name): i for i, name in enumerate(label_names)}
    if args.model_name_or_path:
        return model_class.from_pretrained(args.model_name_or_path, config=config)
    return model_class.from_config(config)


def param_groups(model, weight_decay):
    """No weight decay on biases and norm weights (the 1-D parameters), as optim.py does."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def scores(task, loss_sum, target_count, predictions, references):
    """Eval loss (mean over targets) and, for classification, accuracy and macro F1, computed
    like the generated project's metrics module."""
    result = {"eval_loss": loss_sum / target_count}
    if task in ("text-classification", "image-classification", "custom"):
        pairs = list(zip(predictions, references))
        labels = sorted(set(predictions) | set(references))
        f1 = [2 * sum(p == r == c for p, r in pairs) / (predictions.count(c) + references.count(c)) for c in labels]
        result.update(eval_accuracy=sum(p == r for p, r in pairs) / len(pairs), eval_f1=sum(f1) / len(f1))
    return result
