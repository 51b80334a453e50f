"""Images for task.py: folders of class folders, a check of every image before training, and
the training augmentation.

Images are decoded in collate, batch by batch, so a dataset larger than memory trains; each one
is opened once before training, so a missing or corrupt file stops the run at the start, not
hours into it. The augmentation (a random resized crop, a horizontal flip) draws from a
generator seeded with (data_seed, epoch, sample index): a pure function of those three, so
accumulation, the process count and resuming from a checkpoint see the very same pixels.
"""

import io
import math
import os
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import PartialState

from trainkit.options import UsageError

IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image_folders(cfg):
    """train_dir (and validation_dir) in the imagefolder layout as splits of image paths and
    labels: each sub-folder is a class, named by the folder."""
    import datasets

    raw = datasets.DatasetDict()
    for split, folder in (("train", cfg.train_dir), ("validation", cfg.validation_dir)):
        if folder is None:
            continue
        if not Path(folder).is_dir():
            raise UsageError(f"Image folder {folder} ({split}_dir) does not exist.")
        classes = sorted(path for path in Path(folder).iterdir() if path.is_dir())
        if not classes:
            raise UsageError(f"{split}_dir {folder} holds no class folders (one per class).")
        images, labels = [], []
        for directory in classes:
            found = sorted(
                str(path.resolve())
                for path in directory.rglob("*")
                if path.suffix.lower() in IMAGE_ENDINGS
            )
            if not found:
                raise UsageError(f"Class folder {directory} ({split}_dir) holds no images.")
            images += found
            labels += [directory.name] * len(found)
        # In a seeded order, not class by class: max_train_samples (the debug preset) then
        # takes rows of every class, and nothing downstream depends on the folders' order.
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))
        images, labels = [images[i] for i in order], [labels[i] for i in order]
        columns = {cfg.image_column_name: images, cfg.label_column_name: labels}
        raw[split] = datasets.Dataset.from_dict(columns)
    return raw


def folder_rows(folder, image_column, label_column):
    """The images under `folder` as rows for predict.py: in class sub-folders (the imagefolder
    layout) each row carries its folder's name as its label; loose images carry none."""
    rows = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() in IMAGE_ENDINGS:
            row = {image_column: str(path.resolve())}
            if path.parent != Path(folder):
                row[label_column] = path.parent.name
            rows.append(row)
    if not rows:
        raise UsageError(f"Input folder {folder} holds no images ({', '.join(IMAGE_ENDINGS)}).")
    return rows


def open_image(image):
    """An image stored as {"bytes", "path"} (datasets' Image feature, not decoded) as RGB."""
    source = io.BytesIO(image["bytes"]) if image["bytes"] else image["path"]
    with PIL.Image.open(source) as opened:
        return opened.convert("RGB")


def problem(image):
    """Why an image stored as {"bytes", "path"} cannot be used, or None."""
    if image is None:
        return "has no image"
    name = image["path"] or "bytes"
    if not image["bytes"] and not os.path.isfile(image["path"]):
        return f"names {name}, which does not exist"
    try:
        open_image(image)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        return f"holds {name}, which cannot be read ({str(error).splitlines()[0]})"
    return None


def checked_images(cfg, split, base, where):
    """The split with its image column as undecoded images, each opened once (in
    preprocessing_num_workers processes). A missing or corrupt image stops the run with one
    sentence naming it, or, with skip_unreadable_images, is left out and counted."""
    import datasets

    column = cfg.image_column_name
    kind = split.features[column]
    if isinstance(kind, datasets.Value) and kind.dtype in ("string", "large_string"):

        def to_path(rows):
            return {column: [str(base / path) if path else path for path in rows[column]]}

        split = split.map(to_path, batched=True)
    elif not isinstance(kind, datasets.Image):
        held = getattr(kind, "dtype", type(kind).__name__)
        raise UsageError(f"Column {column!r} of the {where} data holds {held}, not images.")
    split = split.cast_column(column, datasets.Image(decode=False))
    # Not cached: a file fixed after an error is opened again on the next run.
    problems = split.map(
        lambda rows: {"problem": [problem(image) for image in rows[column]]},
        batched=True,
        remove_columns=split.column_names,
        num_proc=cfg.preprocessing_num_workers,
        keep_in_memory=True,
        load_from_cache_file=False,
    )["problem"]
    bad = [i for i, found in enumerate(problems) if found]
    if bad and not cfg.skip_unreadable_images:
        hint = " (skip_unreadable_images=true leaves such images out)"
        raise UsageError(f"Row {bad[0]} of the {where} data {problems[bad[0]]}{hint}.")
    if bad:
        first = f"row {bad[0]} {problems[bad[0]]}"
        skipped = f"Skipped {len(bad)} unreadable image(s) of the {where} data; the first: {first}."
        PartialState().print(skipped)
        split = split.select(sorted(set(range(len(split))) - set(bad)))
    return split


def random_crop_and_flip(image, cfg, epoch, index):
    """torchvision's RandomResizedCrop box (area scale min_crop_scale..1, aspect ratio 3/4..4/3)
    and a horizontal flip, drawn from (data_seed, epoch, index) alone. The image processor then
    resizes the crop to the model's input size."""
    rng = np.random.default_rng([cfg.data_seed, epoch, index])
    width, height = image.size
    box = None
    for _ in range(10 if cfg.min_crop_scale < 1 else 0):
        area = width * height * rng.uniform(cfg.min_crop_scale, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_width = round(math.sqrt(area * ratio))
        crop_height = round(math.sqrt(area / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            left = int(rng.integers(0, width - crop_width + 1))
            top = int(rng.integers(0, height - crop_height + 1))
            box = (left, top, left + crop_width, top + crop_height)
            break
    if box is None:  # no crop asked for, or none fits in ten draws: the whole image
        box = (0, 0, width, height)
    image = image.crop(box)
    if cfg.horizontal_flip and rng.random() < 0.5:
        image = image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    return image
