"""Export, after training: a run dir merged into its base as an HF model folder, and that folder converted to GGUF by
llama.cpp's own converter (`evalsuite export`). Torch and peft are imported only when a merge runs."""
