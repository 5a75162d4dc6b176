"""Stage 4, the run dir: the contract between trainers and every later stage (layout, manifest)."""
