"""Train-serve drift: a GGUF checked against the run dir it was exported from, statically (stops, template, BOS,
tokenization, vocabulary and config) and by running the same batteries on both (`evalsuite drift`)."""
