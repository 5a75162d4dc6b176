"""Stage 5, probing: batteries and scorers, run dirs turned into targets, generation engines, the cache, data-parallel
sharding, the runner and `evalsuite probe`. Engines (torch, vLLM) are imported only when a probe runs."""
