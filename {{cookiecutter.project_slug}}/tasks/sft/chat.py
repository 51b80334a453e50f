"""Chat with a trained model: type a message, read the answer; the conversation goes on until an
empty line or Ctrl-D.

    python chat.py outputs/default/final
    python chat.py outputs/default/final --prompt "What does the cat say?"   # one answer

A model trained on conversations answers through its chat template (saved with it in final/).
One trained on prompts and completions, or on plain text, was never shown that template: give
--plain, and it continues your message as it is, as it was trained. Answers stop at EOS or at
the end of the template's turn. Greedy decoding unless --temperature is above 0."""

import argparse
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def rendered(tokenizer, messages, **options):
    """The conversation's token ids through the chat template."""
    return tokenizer.apply_chat_template(messages, return_dict=True, **options)["input_ids"]


def turn_end(tokenizer):
    """The token the chat template writes right after an assistant's message: where an answer
    ends when it is not EOS (Qwen's <|im_end|>, Llama 3's <|eot_id|>)."""
    question = [{"role": "user", "content": "Hi"}]
    prompt = rendered(tokenizer, question, add_generation_prompt=True)
    reply = tokenizer("Hello", add_special_tokens=False)["input_ids"]
    whole = rendered(tokenizer, [*question, {"role": "assistant", "content": "Hello"}])
    rest = whole[len(prompt) + len(reply) :]
    return rest[:1]


def answer(model, tokenizer, messages, templated, stop, args):
    if templated:
        ids = rendered(tokenizer, messages, add_generation_prompt=True)
    else:
        ids = tokenizer(messages[-1]["content"])["input_ids"]
    sampling = {"do_sample": args.temperature > 0}
    if args.temperature > 0:
        sampling["temperature"] = args.temperature
    generated = model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=args.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop,
        **sampling,
    )
    return tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a directory the run wrote: final/ or a checkpoint's model")
    parser.add_argument("--prompt", help="answer this one message and exit")
    parser.add_argument("--plain", action="store_true", help="no chat template (prompt/completion)")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    templated = bool(tokenizer.chat_template) and not args.plain
    stop = [tokenizer.eos_token_id, *(turn_end(tokenizer) if templated else [])]
    messages = []
    lines = [args.prompt] if args.prompt is not None else iter(lambda: input("> "), "")
    try:
        for line in lines:
            messages.append({"role": "user", "content": line})
            reply = answer(model, tokenizer, messages, templated, stop, args)
            messages.append({"role": "assistant", "content": reply})
            print(reply, flush=True)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)


if __name__ == "__main__":
    main()
