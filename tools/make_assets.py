"""Build the small offline assets embedded in the cookiecutter template.

Writes, under ``{{cookiecutter.project_slug}}/assets/``:

* ``causal-lm/data/{train,validation}.jsonl``: synthetic English paragraphs
  (``{"text": ...}``) from a seeded toy grammar, regular enough that a tiny
  LM's loss drops within a few hundred steps.
* ``text-classification/data/{train,validation}.jsonl``: synthetic 3-class
  sentiment sentences (``{"text": ..., "label": "positive"|...}``).
* ``causal-lm/tiny-model/``: byte-level BPE tokenizer + GPT-2 config (no weights).
* ``text-classification/tiny-model/``: WordPiece tokenizer + BERT config.
* ``token-classification/data/{train,validation}.jsonl``: synthetic sentences with
  person, location and organisation names tagged in IOB2
  (``{"tokens": [...], "ner_tags": ["B-PER", ...]}``), and its WordPiece
  tokenizer + BERT config.
* ``custom/data/{train,validation}.jsonl``: penguin-like measurements in four numeric columns
  and a species ``label``; ``custom/tiny-model/config.json``: what differs from model.py's
  signature (nothing: the size is model.py's to set).
* ``seq2seq/data/{train,validation}.jsonl``: three-sentence stories and a one-sentence summary
  (``{"document": ..., "summary": ...}``); ``seq2seq/tiny-model/``: a word-level tokenizer
  (every word of the sample) and a tiny T5 config.
* ``image-classification/data/{train,validation}.jsonl``: rows ``{"image": "images/...png",
  "label": "circle"|"square"|"triangle"}`` whose paths count from the data file's folder; the
  PNGs under ``data/images/``: one shape on a plain background, 28-44 pixels a side, its colour
  mostly following the class;
  ``image-classification/tiny-model/``: a ViT config (32x32 inputs) and its image processor.
* ``sft/data/{train,validation}.jsonl``: chat conversations (``{"messages": [{"role": ...,
  "content": ...}, ...]}``) about a farm's animals, whose answers follow from the question (what an
  animal says, eats, where it lives), some with a system message, some with two turns;
  ``sft/tiny-model/``: a byte-level BPE tokenizer with chat tokens and a chat template whose
  ``{% generation %}`` markers let the loss keep to assistant turns, and a GPT-2 config with
  1,024 positions (TRL's default ``max_length``).
* ``dpo/data/{train,validation}.jsonl``: preference pairs in TRL's conversational format
  (``{"prompt": [messages], "chosen": [assistant message], "rejected": [...]}``) on the sft
  sample's farm questions: the chosen answer is the right one, the rejected one plainly worse (a
  wrong fact, another animal's answer, or no answer); ``dpo/tiny-model/``: the sft tokenizer and
  GPT-2 config, copied.

Generated projects can then train and test end to end without network access
to any model or dataset hub. Everything is seeded, so re-running produces
byte-identical files. Run with: ``python tools/make_assets.py``.
"""

import json
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    GPT2Config,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    ViTConfig,
)

ROOT = Path(__file__).resolve().parent.parent / "{{cookiecutter.project_slug}}" / "assets"
LM_DIR = ROOT / "causal-lm"
CLS_DIR = ROOT / "text-classification"
NER_DIR = ROOT / "token-classification"
CUSTOM_DIR = ROOT / "custom"
SEQ2SEQ_DIR = ROOT / "seq2seq"
IMAGE_DIR = ROOT / "image-classification"
SFT_DIR = ROOT / "sft"
DPO_DIR = ROOT / "dpo"

# --- causal-lm grammar -------------------------------------------------------

NAMES = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jo"]
ANIMALS = ["cat", "dog", "pig", "owl", "hen", "goat", "duck", "frog"]
ADJS = ["small", "old", "red", "quiet", "happy", "tired", "brown", "clever"]
PLACES = ["garden", "kitchen", "park", "river", "barn", "market", "forest"]
THINGS = ["apple", "ball", "book", "cup", "hat", "kite", "lamp", "shoe"]
VERBS = ["found", "saw", "took", "lost", "liked", "carried", "painted"]
MOVES = ["walked", "ran", "went", "hurried", "wandered"]
TIMES = ["In the morning", "At noon", "In the evening", "Later", "Every day"]
WEATHER = ["sunny", "rainy", "cold", "warm", "windy"]


def lm_sentence(rng: random.Random) -> str:
    """Return one sentence from a handful of fixed templates."""
    c = rng.choice
    templates = [
        lambda: f"{c(NAMES)} {c(VERBS)} a {c(ADJS)} {c(THINGS)} in the {c(PLACES)}.",
        lambda: f"The {c(ADJS)} {c(ANIMALS)} {c(MOVES)} to the {c(PLACES)}.",
        lambda: f"{c(TIMES)}, {c(NAMES)} {c(MOVES)} to the {c(PLACES)} with the {c(ANIMALS)}.",
        lambda: f"It was {c(WEATHER)}, so the {c(ANIMALS)} stayed in the {c(PLACES)}.",
        lambda: f"{c(NAMES)} gave the {c(THINGS)} to {c(NAMES)}.",
        lambda: f"The {c(ANIMALS)} is {c(ADJS)} and the {c(THINGS)} is {c(ADJS)}.",
        lambda: f"{c(NAMES)} has {rng.randint(2, 9)} {c(THINGS)}s and {rng.randint(2, 9)} {c(ANIMALS)}s.",
    ]
    return c(templates)()


def lm_rows(rng: random.Random, n: int) -> list[dict]:
    return [{"text": " ".join(lm_sentence(rng) for _ in range(rng.randint(1, 4)))} for _ in range(n)]


# --- text-classification grammar ---------------------------------------------

CUES = {
    "positive": [
        "great",
        "wonderful",
        "excellent",
        "loved",
        "delightful",
        "fantastic",
        "pleasant",
        "superb",
    ],
    "negative": [
        "terrible",
        "awful",
        "boring",
        "hated",
        "disappointing",
        "broken",
        "poor",
        "annoying",
    ],
    "neutral": [
        "okay",
        "average",
        "ordinary",
        "fine",
        "acceptable",
        "standard",
        "typical",
        "unremarkable",
    ],
}
SUBJECTS = [
    "the movie",
    "this phone",
    "the hotel",
    "our dinner",
    "the book",
    "that concert",
    "the service",
]
FILLER = [
    "the",
    "a",
    "it",
    "was",
    "and",
    "really",
    "quite",
    "very",
    "we",
    "i",
    "they",
    "this",
    "that",
    "with",
    "for",
    "on",
    "at",
    "of",
    "to",
    "so",
    "today",
    "yesterday",
    "overall",
    "honestly",
    "also",
    "again",
    "some",
    "time",
    "place",
    "staff",
    "price",
    "room",
    "food",
    "music",
    "story",
    "screen",
    "battery",
    "seat",
    "view",
    "team",
    "week",
    "night",
]
LABEL_NOISE = 0.05


def cls_row(rng: random.Random) -> dict:
    label = rng.choice(sorted(CUES))
    n_words = rng.randint(5, 40)
    subject = rng.choice(SUBJECTS).split() + ["was"]
    words = list(subject)
    n_cues = max(1, n_words // 10)
    words += rng.sample(CUES[label], n_cues)
    while len(words) < n_words:
        words.insert(rng.randint(len(subject), len(words)), rng.choice(FILLER))
    text = " ".join(words[:n_words]).capitalize() + "."
    if rng.random() < LABEL_NOISE:
        label = rng.choice(sorted(CUES))
    return {"text": text, "label": label}


# --- token-classification grammar ---------------------------------------------

ENTITIES = {
    "PER": ["Ada", "Ben Okafor", "Cleo", "Dan Weiss", "Eva Lind", "Finn", "Hana Sato", "Ivo Petrov"],
    "LOC": ["Paris", "New York", "Lagos", "Oslo", "Buenos Aires", "Kyoto", "Cape Town", "Lima"],
    "ORG": ["Acme Corp", "Globex", "United Nations", "Red Cross", "Initech", "Umbrella Group"],
}
NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{PER} flew from {LOC} to {LOC} on Monday .",
    "{ORG} opened a new office in {LOC} last year .",
    "Yesterday {PER} met {PER} at the {ORG} meeting .",
    "The weather in {LOC} was cold , said {PER} .",
    "{ORG} and {ORG} signed a deal .",
    "Nobody knew why the train was late again .",
    "{PER} moved to {LOC} to join {ORG} .",
]


def ner_row(rng: random.Random) -> dict:
    """One sentence: template words tagged O, entity names tagged B-/I- with their type."""
    tokens, tags = [], []
    for word in rng.choice(NER_TEMPLATES).split():
        if word.startswith("{"):
            kind = word[1:-1]
            name = rng.choice(ENTITIES[kind]).split()
            tokens += name
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        else:
            tokens.append(word)
            tags.append("O")
    return {"tokens": tokens, "ner_tags": tags}


# --- custom (tabular) sample ---------------------------------------------------

# Penguin-like measurements: per species a mean and spread for each column, on very different
# scales (millimetres and grams), so the model's standardization matters. The classes overlap.
SPECIES = {
    "adelie": {"bill_length_mm": (38.8, 2.7), "bill_depth_mm": (18.3, 1.2),
               "flipper_length_mm": (190.0, 6.5), "body_mass_g": (3700.0, 460.0)},
    "chinstrap": {"bill_length_mm": (48.8, 3.3), "bill_depth_mm": (18.4, 1.1),
                  "flipper_length_mm": (196.0, 7.1), "body_mass_g": (3730.0, 380.0)},
    "gentoo": {"bill_length_mm": (47.5, 3.1), "bill_depth_mm": (15.0, 1.0),
               "flipper_length_mm": (217.0, 6.5), "body_mass_g": (5080.0, 500.0)},
}  # fmt: skip


def penguin_row(rng: random.Random) -> dict:
    label = rng.choice(sorted(SPECIES))
    row = {name: round(rng.gauss(mean, spread * 1.5), 1) for name, (mean, spread) in SPECIES[label].items()}
    return {**row, "label": label}


# --- image-classification sample ----------------------------------------------

SHAPES = ("circle", "square", "triangle")


def shape_image(rng: random.Random, label: str) -> Image.Image:
    """One shape in a colour of its own on a plain background; sizes and positions vary, so the
    image processor resizes, and random crops sometimes cut the shape."""
    width, height = rng.randint(28, 44), rng.randint(28, 44)
    background = tuple(rng.randint(0, 110) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    size = rng.randint(12, min(width, height) - 4)
    left, top = rng.randint(0, width - size), rng.randint(0, height - size)
    box = (left, top, left + size, top + size)
    # Three times in four the colour tells the class too (circles reddish, squares greenish,
    # triangles bluish): a tiny model learns that within the debug preset's 40 updates, and the
    # shape for the rest over the default run.
    colour = [rng.randint(140, 200) for _ in range(3)]
    if rng.random() < 0.75:
        colour[SHAPES.index(label)] = 255
    colour = tuple(colour)
    draw = ImageDraw.Draw(image)
    if label == "circle":
        draw.ellipse(box, fill=colour)
    elif label == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(left, top + size), (left + size, top + size), (left + size // 2, top)], fill=colour)
    return image


def write_image_split(rng: random.Random, split: str, count: int) -> None:
    rows = []
    for i in range(count):
        label = rng.choice(SHAPES)
        name = f"images/{split}/{i:04d}.png"
        path = IMAGE_DIR / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shape_image(rng, label).save(path, optimize=True)
        rows.append({"image": name, "label": label})
    write_jsonl(IMAGE_DIR / "data" / f"{split}.jsonl", rows)


# --- seq2seq grammar ------------------------------------------------------------


def summary_row(rng: random.Random) -> dict:
    """A short story and its one-sentence summary: who, which animal, what it did, where."""
    name, animal, adj = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(ADJS)
    place, thing, verb = rng.choice(PLACES), rng.choice(THINGS), rng.choice(VERBS)
    story = [
        f"{rng.choice(TIMES)} {name} {rng.choice(MOVES)} to the {place} with a {adj} {animal} .",
        f"The weather was {rng.choice(WEATHER)} .",
        f"There the {animal} {verb} a {thing} .",
    ]
    if rng.random() < 0.5:
        story[1:] = story[:0:-1]
    return {"document": " ".join(story), "summary": f"{name} 's {animal} {verb} a {thing} in the {place} ."}


# --- sft conversations ---------------------------------------------------------

FARM = {  # animal: (what it says, where it lives, what it eats)
    "cat": ("meow", "kitchen", "fish"),
    "dog": ("woof", "garden", "bones"),
    "pig": ("oink", "barn", "apples"),
    "owl": ("hoot", "forest", "mice"),
    "hen": ("cluck", "yard", "corn"),
    "goat": ("baa", "field", "grass"),
    "duck": ("quack", "pond", "bread"),
    "frog": ("ribbit", "river", "flies"),
}
QUESTIONS = [  # (question templates, answer template); {a} the animal, {v} the fact
    (["What does the {a} say?", "What sound does a {a} make?", "How does the {a} talk?"],
     "The {a} says {v}."),
    (["Where does the {a} live?", "Where is the {a}'s home?", "Where can I find the {a}?"],
     "The {a} lives in the {v}."),
    (["What does the {a} eat?", "What food does the {a} like?", "What should I feed the {a}?"],
     "The {a} eats {v}."),
]  # fmt: skip
SYSTEMS = ["You are a helpful farm guide.", "Answer in one short sentence."]


def sft_turn(rng: random.Random) -> list[dict]:
    animal = rng.choice(sorted(FARM))
    fact = rng.randrange(3)
    questions, answer = QUESTIONS[fact]
    values = {"a": animal, "v": FARM[animal][fact]}
    return [
        {"role": "user", "content": rng.choice(questions).format(**values)},
        {"role": "assistant", "content": answer.format(**values)},
    ]


def sft_row(rng: random.Random) -> dict:
    system = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
    turns = [message for _ in range(1 if rng.random() < 0.7 else 2) for message in sft_turn(rng)]
    return {"messages": system + turns}


EVASIONS = ["I do not know.", "Ask someone else.", "Nobody knows that.", "I cannot say."]


def dpo_row(rng: random.Random) -> dict:
    """A farm question (after an sft-style system message or earlier turn, sometimes) with its
    right answer (chosen) and a plainly worse one (rejected): a wrong fact about the same animal,
    another animal's answer, or an evasion."""
    before = sft_row(rng)["messages"][:-2] if rng.random() < 0.4 else []
    animal, fact = rng.choice(sorted(FARM)), rng.randrange(3)
    questions, answer = QUESTIONS[fact]
    kind = rng.randrange(3)
    if kind == 0:  # a wrong fact: another animal's value in the right sentence
        other = rng.choice([a for a in sorted(FARM) if FARM[a][fact] != FARM[animal][fact]])
        wrong = answer.format(a=animal, v=FARM[other][fact])
    elif kind == 1:  # the answer about another animal
        other = rng.choice([a for a in sorted(FARM) if a != animal])
        wrong = answer.format(a=other, v=FARM[other][fact])
    else:
        wrong = rng.choice(EVASIONS)
    question = {"role": "user", "content": rng.choice(questions).format(a=animal, v=FARM[animal][fact])}
    return {
        "prompt": [*before, question],
        "chosen": [{"role": "assistant", "content": answer.format(a=animal, v=FARM[animal][fact])}],
        "rejected": [{"role": "assistant", "content": wrong}],
    }


def write_dpo_assets() -> None:
    """The pairs, and the sft model's tokenizer and config (the same tiny model)."""
    dpo_rng = random.Random(6)
    write_jsonl(DPO_DIR / "data" / "train.jsonl", [dpo_row(dpo_rng) for _ in range(1000)])
    write_jsonl(DPO_DIR / "data" / "validation.jsonl", [dpo_row(dpo_rng) for _ in range(100)])
    (DPO_DIR / "tiny-model").mkdir(parents=True, exist_ok=True)
    for source in sorted((SFT_DIR / "tiny-model").iterdir()):
        (DPO_DIR / "tiny-model" / source.name).write_bytes(source.read_bytes())


# The chat template of the tiny model: ChatML-like, on one line so no whitespace leaks in. The
# {% generation %} markers tell transformers which tokens the assistant wrote
# (return_assistant_tokens_mask), which assistant_only_loss needs.
SFT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% else %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")


# --- tiny models --------------------------------------------------------------


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """Save, naming the portable class so transformers 4.x can load it too."""
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_causal_lm(texts: list[str]) -> None:
    out = LM_DIR / "tiny-model"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=256,
    )
    save_tokenizer(fast, out)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    config.save_pretrained(out)

    # Smoke test: reload from disk and run a forward pass.
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out))
    batch = tokenizer(texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss), loss


def build_bert(out: Path, texts: list[str], vocab_size: int = 1000) -> None:
    """A WordPiece tokenizer trained on `texts` and a tiny BERT config, saved to `out`."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    # The trainer numbers "##x" tokens in hash-map order, which changes merge
    # tie-breaks (and so the vocab) between runs. Registering them up front, in
    # sorted order, fixes their ids and makes training deterministic.
    chars = sorted({ch for t in texts for ch in normalizer.normalize_str(t)})
    suffixes = ["##" + ch for ch in chars if not ch.isspace()]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials + suffixes, show_progress=False)
    draft = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    draft.normalizer = normalizer
    draft.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    draft.train_from_iterator(texts, trainer=trainer)

    # Rebuild with the learned vocab so only the real specials are added tokens.
    tok = Tokenizer(models.WordPiece(vocab=draft.get_vocab(), unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(specials)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=256,
    )
    save_tokenizer(fast, out)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=fast.pad_token_id,
    )
    config.save_pretrained(out)


def build_classifier(texts: list[str]) -> None:
    out = CLS_DIR / "tiny-model"
    build_bert(out, texts)
    # Smoke test: reload from disk and run a forward pass on a padded batch.
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(out, num_labels=3))
    batch = tokenizer(texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (4, 3), logits.shape


def build_token_classifier(sentences: list[list[str]]) -> None:
    out = NER_DIR / "tiny-model"
    # A vocabulary smaller than the words, so that some words split into several sub-tokens.
    build_bert(out, [" ".join(words) for words in sentences], vocab_size=120)
    # Smoke test: words in, one logit row per sub-token out.
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForTokenClassification.from_config(AutoConfig.from_pretrained(out, num_labels=7))
    batch = tokenizer(sentences[:4], is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == 7 and batch.word_ids(0)[1] == 0, logits.shape


def build_custom_model_config() -> None:
    """model.py's size lives in its signature (hidden_size, num_hidden_layers, dropout): the
    shipped config holds only what differs from it, nothing, so an edit of model.py's defaults
    takes effect."""
    out = CUSTOM_DIR / "tiny-model" / "config.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("{}\n")


def build_seq2seq(texts: list[str]) -> None:
    """A word-level tokenizer (every word of the sample, sorted: deterministic) that ends each
    text with </s> as T5's does, and a tiny T5 config."""
    out = SEQ2SEQ_DIR / "tiny-model"
    specials = ["<pad>", "</s>", "<unk>"]
    words = sorted({word for text in texts for word in text.lower().split()})
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(specials + words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )
    save_tokenizer(fast, out)
    config = T5Config(
        vocab_size=len(fast), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=64, dropout_rate=0.0,
        feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    config.save_pretrained(out)
    # Smoke test: a loss from a padded batch, and generation.
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = T5ForConditionalGeneration(AutoConfig.from_pretrained(out))
    batch = tokenizer(texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss
        generated = model.generate(**batch, max_new_tokens=5)
    assert torch.isfinite(loss) and generated.shape[0] == 4, (loss, generated.shape)


def build_sft_model(conversations: list[list[dict]]) -> None:
    """A byte-level BPE tokenizer with chat tokens, trained on the rendered conversations, its
    chat template, and a GPT-2 config. The end-of-turn token is also EOS, so generation stops
    where an answer ends."""
    out = SFT_DIR / "tiny-model"
    specials = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator([m["content"] for c in conversations for m in c], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|end|>", unk_token="<|endoftext|>",
        pad_token="<|pad|>", model_max_length=1024,
    )  # fmt: skip
    fast.chat_template = SFT_CHAT_TEMPLATE
    save_tokenizer(fast, out)
    config = GPT2Config(
        vocab_size=len(fast), n_positions=1024, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )  # fmt: skip
    config.save_pretrained(out)
    # Smoke test: the assistant mask covers exactly the answer and its end token.
    tokenizer = AutoTokenizer.from_pretrained(out)
    chat = [{"role": "user", "content": "What does the cat say?"}, {"role": "assistant", "content": "Meow."}]
    rendered = tokenizer.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, m in zip(rendered["input_ids"], rendered["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer) == "Meow.<|end|>", tokenizer.decode(answer)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out))
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([rendered["input_ids"]]), labels=torch.tensor([rendered["input_ids"]])).loss
    assert torch.isfinite(loss), loss


def build_image_classifier() -> None:
    """A tiny ViT for 32x32 images and the image processor that brings any image to that size."""
    out = IMAGE_DIR / "tiny-model"
    config = ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    config.save_pretrained(out)
    # Written out, not saved from an instance: transformers 5 names its PIL or torchvision
    # variant, and every version loads the plain class name.
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    }  # fmt: skip
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    # Smoke test: two images of other sizes in, one logit row each out.
    images = [Image.open(IMAGE_DIR / "data" / "images" / "train" / f"000{i}.png") for i in range(2)]
    pixels = AutoImageProcessor.from_pretrained(out)(images, return_tensors="pt")["pixel_values"]
    model = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(out, num_labels=3))
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    assert pixels.shape == (2, 3, 32, 32) and logits.shape == (2, 3), (pixels.shape, logits.shape)


def main() -> None:
    rng = random.Random(0)
    lm_train, lm_val = lm_rows(rng, 2000), lm_rows(rng, 200)
    write_jsonl(LM_DIR / "data" / "train.jsonl", lm_train)
    write_jsonl(LM_DIR / "data" / "validation.jsonl", lm_val)

    cls_train = [cls_row(rng) for _ in range(2000)]
    cls_val = [cls_row(rng) for _ in range(301)]
    write_jsonl(CLS_DIR / "data" / "train.jsonl", cls_train)
    write_jsonl(CLS_DIR / "data" / "validation.jsonl", cls_val)

    # Its own generator, so the files above stay byte-identical.
    ner_rng = random.Random(1)
    ner_train = [ner_row(ner_rng) for _ in range(1000)]
    ner_val = [ner_row(ner_rng) for _ in range(200)]
    write_jsonl(NER_DIR / "data" / "train.jsonl", ner_train)
    write_jsonl(NER_DIR / "data" / "validation.jsonl", ner_val)

    custom_rng = random.Random(2)
    write_jsonl(CUSTOM_DIR / "data" / "train.jsonl", [penguin_row(custom_rng) for _ in range(1000)])
    write_jsonl(CUSTOM_DIR / "data" / "validation.jsonl", [penguin_row(custom_rng) for _ in range(200)])
    build_custom_model_config()

    seq_rng = random.Random(3)
    seq_train = [summary_row(seq_rng) for _ in range(1000)]
    seq_val = [summary_row(seq_rng) for _ in range(200)]
    write_jsonl(SEQ2SEQ_DIR / "data" / "train.jsonl", seq_train)
    write_jsonl(SEQ2SEQ_DIR / "data" / "validation.jsonl", seq_val)

    image_rng = random.Random(4)
    write_image_split(image_rng, "train", 600)
    write_image_split(image_rng, "validation", 150)

    sft_rng = random.Random(5)
    sft_train = [sft_row(sft_rng) for _ in range(1200)]
    sft_val = [sft_row(sft_rng) for _ in range(120)]
    write_jsonl(SFT_DIR / "data" / "train.jsonl", sft_train)
    write_jsonl(SFT_DIR / "data" / "validation.jsonl", sft_val)

    torch.manual_seed(0)
    build_causal_lm([r["text"] for r in lm_train])
    build_classifier([r["text"] for r in cls_train])
    build_token_classifier([r["tokens"] for r in ner_train])
    build_seq2seq([r[key] for r in seq_train + seq_val for key in ("document", "summary")])
    build_image_classifier()
    build_sft_model([row["messages"] for row in sft_train])
    write_dpo_assets()
    print(f"wrote assets under {ROOT}")


if __name__ == "__main__":
    main()
