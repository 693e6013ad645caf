"""Write a random peft LoRA adapter for a Hugging Face checkpoint (run in the tune venv).

    python tests/support/random_lora.py CHECKPOINT OUT [--rank R] [--b-scale S]

``init_lora_weights=False`` leaves B random instead of zero, so the adapter changes the
model's output (a freshly initialised LoRA is the identity). ``--b-scale`` shrinks B so the
model still writes text, only different text. Standalone: it runs in ``.venv-tune``, which has
torch and peft and no PICE.
"""

from __future__ import annotations

import argparse

import peft
import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--b-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
    config = peft.LoraConfig(
        r=args.rank,
        lora_alpha=args.rank,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    lora = peft.get_peft_model(model, config)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.mul_(args.b_scale)
    lora.save_pretrained(args.out)


if __name__ == "__main__":
    main()
