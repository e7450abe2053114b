"""Write qlearn/data/texts/generated.txt: calibration text that SmolLM2-135M-Instruct writes itself.

    PYTHONPATH=. python scripts/generate_calibration_text.py            # run once; the file is shipped

The data-free recipe of LLM-QAT (Liu et al. 2023, arXiv:2305.17888): let the float model generate the text its
quantized version calibrates on, so no dataset is downloaded and the eval text is never seen. We prompt it with
course-style requests on topics that share nothing with course_text("eval"), sample (temperature 0.8, top-p 0.95,
seed 0) and keep the replies. The output is machine-generated text, dedicated to the public domain (CC0 1.0).
"""

from __future__ import annotations

from pathlib import Path

import torch

from qlearn.data.llm import load_llm

TOPICS = ("how a volcano forms", "the life of a penguin colony", "how to plant a small vegetable garden",
          "the history of chess", "how a bicycle gear works", "why leaves change colour in autumn",
          "a day in the life of a librarian", "how coffee is grown and roasted", "the water cycle",
          "how to write a good letter", "the planets of the solar system", "how a violin makes sound",
          "a recipe for vegetable soup", "the invention of the telephone", "how glaciers move",
          "the rules of football", "how electricity reaches a house", "a story about a lost kitten",
          "why people keep diaries", "how a compass works", "the animals of the desert", "how paper is made",
          "a short story about two friends building a boat", "how to care for a houseplant",
          "the first flight of the Wright brothers", "what a doctor does in a day", "how mountains are measured",
          "a poem about the moon", "how to learn a new language", "the life cycle of a butterfly",
          "how a camera captures a picture", "why we sleep")
OUT = Path(__file__).resolve().parents[1] / "qlearn" / "data" / "texts" / "generated.txt"


@torch.no_grad()
def main(max_new_tokens: int = 200, batch_size: int = 8) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_llm(progress=False)
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    replies = []
    for start in range(0, len(TOPICS), batch_size):
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"Write a few paragraphs about {t}."}],
                                                 add_generation_prompt=True, tokenize=False)
                   for t in TOPICS[start:start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.8, top_p=0.95,
                             pad_token_id=pad)  # (batch, prompt + new)
        for row in out[:, batch["input_ids"].shape[1]:]:
            replies.append(" ".join(tokenizer.decode(row, skip_special_tokens=True).split()))
        print(f"{len(replies)}/{len(TOPICS)}", flush=True)
    OUT.write_text("\n\n".join(replies) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({sum(len(r.split()) for r in replies)} words)")


if __name__ == "__main__":
    main()
