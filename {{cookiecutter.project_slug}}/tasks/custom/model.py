"""Your model: a plain torch.nn.Module that train.py trains like any other. Edit it freely.

It starts as an MLP that classifies rows of numeric columns. Replace the layers with your CNN,
your own small transformer, anything: the loop asks only that forward(features) returns one row
of class scores (logits) per sample, and that the model saves and loads itself as below.

Its size is the signature's: hidden_size, num_hidden_layers and dropout below. A model trained
from scratch takes them from here (assets/tiny-model/config.json, config_name, holds only what
differs: nothing), so an edit of a default takes effect at the next run. final/ holds
config.json (all of the constructor's arguments) and model.safetensors (the weights), so a
trained model comes back with one line, also in a project without train.py:

    import torch
    from model import Model

    model = Model.from_pretrained("outputs/default/final").eval()
    # One row per sample, its columns in the order of model.config["feature_names"].
    probabilities = model(torch.tensor([[39.1, 18.7, 181.0, 3750.0]])).softmax(-1)
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class Model(nn.Module):
    def __init__(
        self,
        feature_names,
        feature_mean,
        feature_std,
        label_names,
        hidden_size=32,
        num_hidden_layers=2,
        dropout=0.0,
    ):
        super().__init__()
        # Everything needed to rebuild the model: saved as config.json next to the weights.
        self.config = {
            "feature_names": list(feature_names),
            "feature_mean": list(feature_mean),
            "feature_std": list(feature_std),
            "label_names": list(label_names),
            "hidden_size": hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "dropout": dropout,
        }
        # Raw columns in, standardized inside: the statistics come from the training data and
        # travel in config.json, so predictions need no preprocessing step of their own.
        # In float64: a column with a large offset and a small spread (timestamps) keeps its
        # variation.
        for name, values in (("mean", feature_mean), ("std", feature_std)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float64), persistent=False)
        layers, width = [], len(feature_names)
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_size
        layers.append(nn.Linear(width, len(label_names)))
        self.layers = nn.Sequential(*layers)

    def forward(self, features):
        return self.layers(((features.double() - self.mean) / self.std).float())

    @classmethod
    def from_pretrained(cls, directory):
        directory = Path(directory)
        model = cls(**json.loads((directory / "config.json").read_text()))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return model

    def save_pretrained(self, directory, state_dict=None):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        tensors = self.state_dict() if state_dict is None else state_dict
        save_file(
            {name: tensor.contiguous() for name, tensor in tensors.items()},
            directory / "model.safetensors",
        )
