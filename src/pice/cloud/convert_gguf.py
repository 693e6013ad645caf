"""Convert a GGUF model to a Hugging Face safetensors checkpoint that vLLM can serve.

Run with the *vLLM* virtual environment's python (it has torch, transformers, gguf and
accelerate; the PICE environment has none of them), as a script:

    .venv-vllm/bin/python src/pice/cloud/convert_gguf.py --gguf MODEL.gguf --out DIR

vLLM 0.32 does not load GGUF, so the quantised weights are dequantised by transformers,
stored as bfloat16 (vLLM's CPU dtype), and saved next to the tokenizer and its chat template.
The result is written to a sibling temporary directory and renamed into place, with a
``pice-conversion.json`` stamp written last: a directory with that stamp is complete.
This file imports nothing from PICE so it runs in that other environment.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from pathlib import Path

STAMP = "pice-conversion.json"


def is_converted(out: Path, gguf: Path) -> bool:
    """``out`` holds a complete conversion of this very file (same size and mtime)."""
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    stat = gguf.stat()
    return bool(
        stamp.get("source_size") == stat.st_size
        and stamp.get("source_mtime_ns") == stat.st_mtime_ns
        and (out / "config.json").exists()
    )


def convert(gguf: Path, out: Path) -> None:
    # Imported by name: these exist only in the vLLM environment, not where PICE is checked.
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")

    started = time.monotonic()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are plain tensors now; a leftover quantisation config would make vLLM
    # look for a GGUF quantiser it does not have.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    model.save_pretrained(str(tmp))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{gguf} carries no chat template; vLLM could not serve chat")
    tokenizer.save_pretrained(str(tmp))
    stat = gguf.stat()
    stamp = {
        "source": str(gguf),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "dtype": "bfloat16",
        "seconds": round(time.monotonic() - started, 1),
    }
    (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="convert even if up to date")
    args = parser.parse_args(argv)
    if not args.force and is_converted(args.out, args.gguf):
        sys.stderr.write(f"{args.out} is already converted\n")
        return 0
    convert(args.gguf, args.out)
    sys.stderr.write(f"converted {args.gguf} -> {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
