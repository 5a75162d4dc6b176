"""Probe batteries, as data (YAML/JSONL). Located at run time with importlib.resources."""
