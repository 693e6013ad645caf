"""Write a peft LoRA adapter with random, non-zero weights over a Hugging Face checkpoint.

Run with the tuning environment's Python (``.venv-tune``), not imported by the tests:

    python make_random_lora.py CHECKPOINT_DIR OUT_DIR [RANK]

peft starts B at zero (the adapter then changes nothing); ``init_lora_weights=False`` draws
both A and B at random, so the adapter changes the model's output from the first token. The
result is what ``pice tune train`` leaves in ``run/adapter`` and exports the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import peft
    import torch
    import transformers

    checkpoint, out = Path(argv[0]), Path(argv[1])
    rank = int(argv[2]) if len(argv) > 2 else 4
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=rank,  # scale alpha / rank = 1: the random B alone sets the size of the change
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
    )
    peft.get_peft_model(model, config).save_pretrained(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
