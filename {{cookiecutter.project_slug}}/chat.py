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


def answer(model, tokenizer, messages, templated, stop, generation):
    """The model's reply to the conversation; `generation`: generate()'s options."""
    if templated:
        ids = rendered(tokenizer, messages, add_generation_prompt=True)
    else:
        ids = tokenizer(messages[-1]["content"])["input_ids"]
    generated = model.generate(
        torch.tensor([ids], device=model.device),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop,
        **generation,
    )
    return tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True).strip()


def predict(model, inputs, tokenizer, generation, text_field="text"):
    """predict.py's answers, one input at a time. A conversation (messages) gets its next
    assistant turn through the chat template; a last assistant message in it is left out, as
    the answer the model should give; so does a prompt that is a conversation (dpo's). A
    prompt, a plain text (in `text_field`) or a plain string is continued as it is, as prompts
    were trained."""
    templated = bool(tokenizer.chat_template)
    stop = [tokenizer.eos_token_id, *(turn_end(tokenizer) if templated else [])]
    said = []
    for row in inputs:
        fields = row if isinstance(row, dict) else {"prompt": row}
        text = fields.get("prompt") or fields.get(text_field)
        if fields.get("messages") or isinstance(text, list):  # a conversation (dpo: its prompt)
            messages, templated = fields.get("messages") or text, True
            if messages[-1]["role"] == "assistant":
                messages = messages[:-1]
        else:
            messages, templated = [{"role": "user", "content": text}], False
        reply = answer(model, tokenizer, messages, templated, stop, generation)
        said.append({"answer": reply})
    return said


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a directory the run wrote: final/ or a checkpoint's model")
    parser.add_argument("--prompt", help="answer this one message and exit")
    parser.add_argument("--plain", action="store_true", help="no chat template (prompt/completion)")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    # Imported here: task.py imports this file, and --help needs no transformers.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    templated = bool(tokenizer.chat_template) and not args.plain
    generation = {"max_new_tokens": args.max_new_tokens}
    if args.temperature > 0:
        generation.update(do_sample=True, temperature=args.temperature)
    stop = [tokenizer.eos_token_id, *(turn_end(tokenizer) if templated else [])]
    messages = []
    lines = [args.prompt] if args.prompt is not None else iter(lambda: input("> "), "")
    try:
        for line in lines:
            messages.append({"role": "user", "content": line})
            reply = answer(model, tokenizer, messages, templated, stop, generation)
            messages.append({"role": "assistant", "content": reply})
            print(reply, flush=True)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)


if __name__ == "__main__":
    main()
