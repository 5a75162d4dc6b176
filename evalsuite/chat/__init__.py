"""Stage 2, render + tokenize + label: the sandboxed chat-template renderer, its static taint analysis, the render
diff and per-shape layouts, the tokenizer files, and the one encoder the lint and every trainer share."""
