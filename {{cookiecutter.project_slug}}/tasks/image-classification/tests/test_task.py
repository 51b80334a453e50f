"""What only the image-classification task does: images decoded batch by batch, augmentation
drawn from (data_seed, epoch, sample index), image folders, unreadable images, a new head for a
pretrained classifier."""

import json
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet
import torch
from conftest import PROJECT, TINY, arguments, eval_records, run_train

import task
from trainkit import images


def configured(**options):
    from config import Config
    from trainkit import cli

    return cli.parse_args(arguments("unused", **options), Config)


def prepare(**options):
    """The prepared splits and the processor, as train.py gets them (one process)."""
    from accelerate import Accelerator

    from trainkit import data

    cfg = configured(**options)
    processor, _ = task.load_tokenizer_and_config(cfg)
    return cfg, processor, data.load_datasets(cfg, Accelerator(cpu=True), processor, task)


def bundled_rows(count):
    folder = (PROJECT / TINY["train_file"]).parent
    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:count]
    return folder, rows


def test_augmentation_is_a_pure_function_of_seed_epoch_and_index(monkeypatch):
    monkeypatch.chdir(PROJECT)
    cfg, processor, (train_set, _, _) = prepare()
    rows = [train_set[i] for i in range(6)]
    batch = task.collate(cfg, rows, processor, epoch=1)["pixel_values"]
    # The same pixels whatever the batch around a sample (accumulation, processes) and on a
    # second call (resume).
    alone = torch.cat([task.collate(cfg, [row], processor, 1)["pixel_values"] for row in rows])
    assert torch.equal(batch, alone)
    assert torch.equal(batch, task.collate(cfg, rows, processor, 1)["pixel_values"])
    # Another epoch draws other crops; evaluation draws none.
    assert not torch.equal(batch, task.collate(cfg, rows, processor, 2)["pixel_values"])
    evaluated = task.collate(cfg, rows, processor, None)["pixel_values"]
    pictures = [images.open_image(row["image"]) for row in rows]
    assert torch.equal(evaluated, processor(pictures, return_tensors="pt")["pixel_values"])
    # Without crops and flips, training sees what evaluation sees.
    cfg.min_crop_scale, cfg.horizontal_flip = 1.0, False
    plain = task.collate(cfg, rows, processor, 1)["pixel_values"]
    assert torch.equal(plain, evaluated)
    assert batch.shape == (6, 3, 32, 32)


def test_crops_keep_at_least_min_crop_scale_and_flips_mirror():
    from PIL import Image

    image = Image.new("RGB", (40, 30))
    image.putpixel((0, 0), (255, 0, 0))
    cfg = configured(min_crop_scale=0.5, horizontal_flip="false")
    areas = [
        images.random_crop_and_flip(image, cfg, epoch, index).size
        for epoch in range(3)
        for index in range(50)
    ]
    assert min(w * h for w, h in areas) >= 0.5 * 40 * 30 * 0.9  # rounding of the box sides
    assert len(set(areas)) > 10
    cfg = configured(min_crop_scale=1.0, horizontal_flip="true")
    corners = [
        images.random_crop_and_flip(image, cfg, 0, index).getpixel((39, 0)) for index in range(40)
    ]
    # About half the images are mirrored: the red corner moves to the right.
    assert 10 < corners.count((255, 0, 0)) < 30


def test_an_image_folder_per_class_trains(tmp_path):
    """train_dir and validation_dir in the imagefolder layout: the folder names are the labels."""
    folder, rows = bundled_rows(60)
    for split, part in (("train", rows[:45]), ("val", rows[45:])):
        for i, row in enumerate(part):
            target = tmp_path / split / row["label"] / f"{i}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / row["image"], target)
    options = {"train_dir": tmp_path / "train", "validation_dir": tmp_path / "val"}
    _, _, (train_set, eval_set, label_names) = prepare(**options)
    assert label_names == sorted({row["label"] for row in rows[:45]})
    assert (len(train_set), len(eval_set)) == (45, 15)
    expected = [label_names.index(row["label"]) for row in rows[45:]]
    assert sorted(eval_set["labels"]) == sorted(expected)
    out = tmp_path / "run"
    run_train(out, max_steps=2, eval_strategy="steps", eval_steps=2, **options)
    assert eval_records(out)[-1]["eval_accuracy"] >= 0


def test_unreadable_images_are_skipped_and_counted_when_asked(tmp_path, capsys):
    folder, rows = bundled_rows(30)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows = [{**row, "image": str(folder / row["image"])} for row in rows]
    rows[4]["image"] = str(tmp_path / "broken.png")
    rows[7]["image"] = str(tmp_path / "missing.png")
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _, _, (train_set, _, _) = prepare(train_file=data, skip_unreadable_images="true")
    assert len(train_set) == 28
    skipped = "Skipped 2 unreadable image(s) of the train data; the first: row 4 holds"
    assert skipped in capsys.readouterr().out


def test_relative_paths_count_from_the_data_file_and_images_may_be_embedded(tmp_path):
    """A csv beside its images folder, and a parquet file holding the images themselves (what
    hub datasets hold): both load through the same code."""
    folder, rows = bundled_rows(24)
    (tmp_path / "pictures").mkdir()
    for i, row in enumerate(rows):
        shutil.copy(folder / row["image"], tmp_path / "pictures" / f"{i}.png")
    beside = tmp_path / "beside.csv"
    lines = [f"pictures/{i}.png,{row['label']}" for i, row in enumerate(rows)]
    beside.write_text("image,label\n" + "\n".join(lines) + "\n")
    embedded = tmp_path / "embedded.parquet"
    images = [{"bytes": (folder / row["image"]).read_bytes(), "path": None} for row in rows]
    features = datasets.Features(image=datasets.Image(), label=datasets.Value("string"))
    columns = {"image": images, "label": [row["label"] for row in rows]}
    datasets.Dataset.from_dict(columns, features=features).to_parquet(embedded)
    stored = pyarrow.parquet.read_table(embedded).column("image").to_pylist()
    assert all(image["bytes"] for image in stored), "the file holds the images themselves"
    pixels = []
    for data in (beside, embedded):
        cfg, processor, (train_set, _, _) = prepare(train_file=data, validation_file=data)
        pixels.append(task.collate(cfg, [train_set[i] for i in range(24)], processor, None))
    assert torch.equal(pixels[0]["pixel_values"], pixels[1]["pixel_values"])
    assert torch.equal(pixels[0]["labels"], pixels[1]["labels"])


def test_a_pretrained_classifier_of_other_classes_gets_a_fresh_head(tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForImageClassification

    config = AutoConfig.from_pretrained(PROJECT / TINY["config_name"], num_labels=5)
    torch.manual_seed(0)
    pretrained = AutoModelForImageClassification.from_config(config)
    pretrained.save_pretrained(tmp_path / "five")
    shutil.copy(PROJECT / TINY["config_name"] / "preprocessor_config.json", tmp_path / "five")
    cfg = configured(model_name_or_path=tmp_path / "five")
    _, model_config = task.load_tokenizer_and_config(cfg)
    model = task.build_model(cfg, model_config, ["circle", "square", "triangle"])
    assert "The 5-label head of" in capsys.readouterr().out
    assert model.config.id2label == {0: "circle", 1: "square", 2: "triangle"}
    assert model.classifier.out_features == 3
    kept = pretrained.state_dict()
    for name, value in model.state_dict().items():
        if not name.startswith("classifier"):
            assert torch.equal(value, kept[name]), name


def test_final_holds_the_image_processor(tmp_path):
    from transformers import AutoImageProcessor

    out = tmp_path / "run"
    run_train(out, max_steps=2)
    saved = AutoImageProcessor.from_pretrained(out / "final")
    assert saved.size == {"height": 32, "width": 32}
    assert (out / "final" / "preprocessor_config.json").is_file()


def test_the_defaults_train_on_the_images_as_evaluation_sees_them(monkeypatch):
    """No crops and no flips unless asked for: ImageNet's recipe would destroy small images and
    shapes whose orientation matters (issue 28), so the default training pixels are evaluation's."""
    from accelerate import Accelerator

    from config import Config
    from trainkit import cli, data

    monkeypatch.chdir(PROJECT)
    augmentation = ("min_crop_scale", "horizontal_flip")
    argv = [f"--{name}={value}" for name, value in TINY.items() if name not in augmentation]
    cfg = cli.parse_args(argv, Config)
    assert (cfg.min_crop_scale, cfg.horizontal_flip) == (1.0, False)
    processor, _ = task.load_tokenizer_and_config(cfg)
    train_set = data.load_datasets(cfg, Accelerator(cpu=True), processor, task)[0]
    rows = [train_set[i] for i in range(4)]
    trained = task.collate(cfg, rows, processor, epoch=3)["pixel_values"]
    assert torch.equal(trained, task.collate(cfg, rows, processor, None)["pixel_values"])


def test_class_folders_come_in_a_seeded_order_so_a_few_rows_hold_every_class(tmp_path):
    """Folders are read class by class; the rows are then shuffled with the seed, so
    max_train_samples (the debug preset) sees every class, the same rows on every run."""
    from PIL import Image

    for split in ("train", "val"):
        for label in ("a", "b", "c", "d"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(10):
                Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / split / label / f"{i}.png")
    options = {"train_dir": tmp_path / "train", "validation_dir": tmp_path / "val"}
    cfg, _, (train_set, _, label_names) = prepare(max_train_samples=8, **options)
    assert label_names == ["a", "b", "c", "d"]
    assert len(set(train_set["labels"])) == 4, "eight rows of four classes hold every class"
    again = prepare(max_train_samples=8, **options)[2][0]
    assert train_set["labels"] == again["labels"]


def test_predict_reads_a_folder_of_images(tmp_path, monkeypatch, capsys):
    """predict.py on a folder: every image predicted, in class folders with its folder's name
    as its label (issue 28); scores need a run that trained on folders, else one line says so."""
    import predict

    monkeypatch.chdir(PROJECT)
    run = tmp_path / "run"
    run_train(run, max_steps=2)
    folder, rows = bundled_rows(6)
    for row in rows:
        target = tmp_path / "new" / str(row["label"]) / Path(row["image"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / row["image"], target)
    output = tmp_path / "predictions.jsonl"
    predict.main([str(run / "final"), str(tmp_path / "new"), "--output", str(output)])
    predictions = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(predictions) == 6
    assert {p["input"]["label"] for p in predictions} == {str(row["label"]) for row in rows}
    assert all("probabilities" in p for p in predictions)
    assert "No scores: the run trained on a data file" in capsys.readouterr().out
