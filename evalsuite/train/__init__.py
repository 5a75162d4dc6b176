"""Stage 3, training: the trainer-backend protocol and registry, and `evalsuite train`. The backends themselves live
in the top-level trainers/ folder (installed as ``evalsuite.trainers``), loaded by name only when asked for."""
