"""Real-size models and data for the benchmark, built offline (no hub).

    encoder  the shapes of all-MiniLM-L6-v2 (BERT: 6 layers, 384 wide, 12 heads, 30,522-token
             vocabulary, 22.7M parameters), saved as a pretrained BertModel, as a hub checkpoint
             is: fine-tuning adds a fresh classification head; data: the bundled 3-class sample
    decoder  the shapes of GPT-2 small (12 layers, 768 wide, 50,257-token vocabulary, 1,024
             positions, 124M parameters), saved as GPT2LMHeadModel; data: documents of a
             long-tailed length (1 to 48 bundled lines, about 25 to 1,200 tokens), so that
             packing and padding differ as they do on real text

The weights are random (seeded) and the tokenizer is the project's tiny one: the token ids use
a corner of the vocabulary, which changes no tensor shape and so no time per update.
"""

import json
import random
import shutil

SHAPES = {
    "encoder": {
        "task": "text-classification",
        "config": {
            "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
        },
        "class": "BertModel",
    },
    "decoder": {
        "task": "causal-lm",
        "config": {
            "model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
            "n_head": 12, "bos_token_id": 0, "eos_token_id": 0,
        },
        "class": "GPT2LMHeadModel",
    },
}  # fmt: skip


def build(kind, project, root):
    """Saves the model (random weights, seed 0) and its data under root/kind; returns
    (model directory, train file, validation file)."""
    import torch
    import transformers

    shape = SHAPES[kind]
    model_dir, data_dir = root / kind / "model", root / kind / "data"
    data_dir.mkdir(parents=True)
    settings = dict(shape["config"])
    config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(0)
    model = getattr(transformers, shape["class"])(config)
    model.save_pretrained(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(project / "assets" / "tiny-model")
    tokenizer.save_pretrained(model_dir)
    bundled = project / "assets" / "data"
    for split in ("train", "validation"):
        source = bundled / f"{split}.jsonl"
        if kind == "encoder":
            shutil.copy(source, data_dir / source.name)
        else:
            lines = [json.loads(line)["text"] for line in source.read_text().splitlines()]
            (data_dir / source.name).write_text("".join(json.dumps({"text": t}) + "\n" for t in documents(lines)))
    return model_dir, data_dir / "train.jsonl", data_dir / "validation.jsonl"


def documents(lines, seed=0):
    """The lines joined into documents whose sizes follow a long tail (lognormal, median 4 lines)."""
    rng, out, i = random.Random(seed), [], 0
    while i < len(lines):
        size = min(48, max(1, round(rng.lognormvariate(1.4, 1.0))))
        out.append(" ".join(lines[i : i + size]))
        i += size
    return out
