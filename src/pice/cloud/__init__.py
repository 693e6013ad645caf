"""The real cloud: vLLM in its own virtual environment, fed checkpoints converted from GGUF."""
