"""GGUF files: the header reader (no dependencies), llama.cpp through llama-cpp-python (the `[gguf]` extra), and a
GGUF's vocabulary behind evalsuite's tokenizer interface. Used by export, the gguf probe engine and drift."""
