"""The image-classification task: one label per image, a classification head on a vision model
(ViT, ConvNeXt, ResNet, ... any model with a `ForImageClassification` class). Options and
behaviour follow transformers' run_image_classification.py.

train.py knows no task: it uses the names below, in this order, and nothing else of this
module. A new task is a folder with a task.py that defines the same names (and its tests).

    NAME, model_class()                  the task's name (recorded in checkpoints) and the
                                         class that loads final/ (a function: importing
                                         task.py needs no transformers)
    Options                              the task's options, joined with the loop's in train.py
    FILE_READERS                         {file ending: reader} for data files the datasets
                                         library cannot read ({} for none)
    load_tokenizer_and_config(cfg)       -> (tokenizer, model config); cheap, so checked first
    eval_metric_names(cfg)               what evaluation reports, checked before training
    data_columns(cfg)                    {option: column} the task reads, checked on loading
    prepare_datasets(cfg, raw, tokenizer)
                                         -> (train, validation, label_names): model inputs
    collate(cfg, rows, tokenizer, epoch) -> a batch of tensors whose "labels" hold -100 wherever
                                            there is nothing to predict; `epoch` is None in
                                            evaluation
    build_model(cfg, config, label_names)
                                         -> the model: pretrained weights or fresh from config
    target_counts(batch)                 -> each sample's number of targets (LongTensor [batch])
    count_tokens(batch)                  -> input positions in the batch, for throughput and MFU
    summed_losses(cfg, model, batch)     -> (each sample's loss summed over its targets, logits)
    train_metrics(accelerator)           -> what the task logs beside the loss ({} for none)
    eval_predictions(cfg, model, logits, batch)
                                         -> per-sample tensors evaluation gathers ({} for none);
                                            `model` is unwrapped, so it can generate
    eval_scores(cfg, eval_loss, gathered, label_names, tokenizer)
                                         -> {"eval_loss": ..., "eval_<metric>": ...}
    save_model(model, tokenizer, directory, state_dict)
                                         what final/ holds
    predict(cfg, model, inputs, tokenizer, generation)
                                         -> for predict.py, one dict per input (a row of the
                                            training format, or a plain string): what the
                                            model says

The image processor stands where the other tasks have their tokenizer. images.py reads image
folders, checks every image once before training, and draws the training augmentation.

Why losses come back as per-sample sums with target counts, not means: an update's loss is the
mean over every target of its k micro-batches on every process. Sums add up across micro-batches
and processes and are divided once by the total count; a mean of means would weight a short
micro-batch like a full one, so accumulation and process count would change the numbers. Here
every image has one target.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import PartialState

from trainkit import images, pretrained
from trainkit.options import UsageError, option

NAME = "image-classification"
# Data files are read by the datasets library, image folders by images.read_image_folders.
FILE_READERS = {}


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification


@dataclass
class Options:
    image_column_name: str = option(
        "image", "Column holding the images, or their paths (relative: from the data file)."
    )
    label_column_name: str = option("label", "Column holding the label (strings or integers).")
    train_dir: str | None = option(
        None,
        "A folder of images, one sub-folder per class (imagefolder); beats train_file.",
        path=True,
    )
    validation_dir: str | None = option(
        None, "Validation images in the same layout; without it a split is held out.", path=True
    )
    image_processor_name: str | None = option(None, "Image processor; defaults to the model's.")
    # Augmentation is off by default: ImageNet's recipe (crops down to 8% of the area, flips)
    # destroys small images and shapes whose orientation matters (digits, text, charts). For
    # photos of objects, try min_crop_scale 0.08 and horizontal_flip true (docs/your-data.md).
    min_crop_scale: float = option(
        1.0, "Smallest area a random training crop keeps; 1: no crops. Photos: 0.08.", above=0
    )
    horizontal_flip: bool = option(False, "Flip half the training images left to right.")
    skip_unreadable_images: bool = option(
        False, "Skip (and count) missing or corrupt images instead of stopping."
    )
    metrics: str = option(
        "metrics/classification",
        "Comma-separated evaluate metrics: local module directories (offline) or hub names.",
        path=True,
    )


def data_columns(cfg):
    return {"image_column_name": cfg.image_column_name, "label_column_name": cfg.label_column_name}


def load_tokenizer_and_config(cfg):
    from transformers import AutoConfig, AutoImageProcessor

    if cfg.tokenizer_name:
        raise UsageError("Option tokenizer_name applies to text; set image_processor_name.")
    if cfg.min_crop_scale > 1:
        raise UsageError(f"Option min_crop_scale must be at most 1, got {cfg.min_crop_scale}.")
    if cfg.validation_dir and not cfg.train_dir:
        raise UsageError("Option validation_dir needs train_dir (images in the same layout).")
    model_id = cfg.model_name_or_path or cfg.config_name
    config = pretrained.from_hub_or_directory(AutoConfig, model_id, cfg)
    processor_id = cfg.image_processor_name or model_id
    # A local model directory without one (a text model) gets a sentence, not a library error.
    has_config = Path(processor_id, "config.json").is_file()
    if has_config and not Path(processor_id, "preprocessor_config.json").is_file():
        raise UsageError(f"{processor_id} has no image processor; set image_processor_name.")
    processor = pretrained.from_hub_or_directory(AutoImageProcessor, processor_id, cfg)
    return processor, config


@functools.cache
def load_metric(names):
    # evaluate is imported only when a run evaluates: it is slow to import.
    import evaluate

    paths = [
        str(Path(name).resolve()) if Path(name).is_dir() else name for name in names.split(",")
    ]
    return evaluate.combine(paths)


def eval_metric_names(cfg):
    # Three classes, so a metric that only handles two fails now, not at the first evaluation.
    scores = load_metric(cfg.metrics).compute(predictions=[0, 1, 2], references=[0, 1, 2])
    return ["eval_loss", *(f"eval_{name}" for name in scores)]


def image_base(cfg, split):
    """Where relative image paths of a split count from: the folder of the file that holds it."""
    if cfg.dataset_name or cfg.train_dir:
        return Path.cwd()
    file = cfg.validation_file if split == "validation" and cfg.validation_file else cfg.train_file
    return Path(file).parent


def prepare_datasets(cfg, raw, tokenizer):
    import datasets

    label = cfg.label_column_name
    # data.py named rows without a label, and validation labels training lacks.
    # String or integer labels are mapped to ids 0..n-1 in sorted order; a ClassLabel keeps its own.
    label_names = sorted(raw["train"].unique(label))
    label_ids = {name: i for i, name in enumerate(label_names)}
    if isinstance(raw["train"].features[label], datasets.ClassLabel):
        # The rows already hold the ids of the ClassLabel's names.
        label_names = raw["train"].features[label].names
        label_ids = {i: i for i in range(len(label_names))}
    prepared = {}
    for split in ("train", "validation"):
        rows = images.checked_images(cfg, raw[split], image_base(cfg, split), split)
        prepared[split] = datasets.Dataset.from_dict(
            {
                "image": rows[cfg.image_column_name],
                "labels": [label_ids[value] for value in rows[label]],
                # Augmentation draws from each sample's index (see random_crop_and_flip).
                "index": list(range(len(rows))),
            },
            features=datasets.Features(
                image=datasets.Image(decode=False),
                labels=datasets.Value("int64"),
                index=datasets.Value("int64"),
            ),
        )
    return prepared["train"], prepared["validation"], label_names


def collate(cfg, rows, tokenizer, epoch):
    pictures = [images.open_image(row["image"]) for row in rows]
    if epoch is not None:
        pictures = [
            images.random_crop_and_flip(picture, cfg, epoch, row["index"])
            for picture, row in zip(pictures, rows, strict=True)
        ]
    # The processor's own resize, rescale and normalization: what final/ applies at inference.
    pixel_values = tokenizer(pictures, return_tensors="pt")["pixel_values"]
    return {"pixel_values": pixel_values, "labels": torch.tensor([row["labels"] for row in rows])}


def build_model(cfg, config, label_names):
    # The label names travel with the saved model, so predictions come back as names.
    num_labels = len(label_names)
    heads = [name for name in config.architectures or [] if name.endswith("ForImageClassification")]
    if cfg.model_name_or_path and heads and config.num_labels != num_labels:
        # A model trained on other classes (ImageNet's 1,000) gets a fresh head for yours, as
        # run_image_classification.py's ignore_mismatched_sizes does.
        replaced = f"The {config.num_labels}-label head of {cfg.model_name_or_path} is replaced"
        PartialState().print(f"{replaced} by a fresh one for {num_labels} labels.")
    config.num_labels = num_labels
    config.id2label = {i: str(name) for i, name in enumerate(label_names)}
    config.label2id = {str(name): i for i, name in enumerate(label_names)}
    return pretrained.load_model(model_class(), cfg, config, ignore_mismatched_sizes=True)


def target_counts(batch):
    return (batch["labels"] != -100).long()


def count_tokens(batch):
    # One position per image: mfu then counts 6 x parameters FLOPs per image, an underestimate
    # for a ViT (every patch is a token) or a CNN (weights reused at every position).
    return len(batch["labels"])


def summed_losses(cfg, model, batch):
    logits = model(pixel_values=batch["pixel_values"]).logits
    return F.cross_entropy(logits.float(), batch["labels"], reduction="none"), logits


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    return {"predictions": logits.argmax(-1), "references": batch["labels"]}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    scores = load_metric(cfg.metrics).compute(**gathered)
    return {"eval_loss": eval_loss, **{f"eval_{name}": value for name, value in scores.items()}}


def save_model(model, tokenizer, directory, state_dict):
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """Image paths count from the folder of the file that lists them (validation_file)."""
    base = image_base(cfg, "validation")
    paths = [row if isinstance(row, str) else row[cfg.image_column_name] for row in inputs]
    pictures = [images.open_image({"bytes": None, "path": str(base / path)}) for path in paths]
    pixel_values = tokenizer(pictures, return_tensors="pt")["pixel_values"].to(model.device)
    logits = model(pixel_values=pixel_values).logits
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return labelled(logits.float().softmax(-1), names)


def labelled(probabilities, names):
    """Per row of class probabilities: the label, its probability, and every label's."""
    return [
        {
            "label": names[int(row.argmax())],
            "score": row.max().item(),
            "probabilities": dict(zip(names, row.tolist(), strict=True)),
        }
        for row in probabilities
    ]
