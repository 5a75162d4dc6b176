"""Stage 7, gates: gate expressions, gates declared in pyproject/evalsuite.yaml, their evaluation against results
and baselines, and `evalsuite gate` / `evalsuite baseline`."""
