"""Stage 1, the config: the axolotl-style YAML (load, fields), its datasets and their rows, with line numbers for
every error. Imports nothing heavy."""
