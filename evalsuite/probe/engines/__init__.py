"""Generation engines: hf (transformers + peft) with its KV-cache decoder, and vllm. Each is imported only when
selected."""
