"""Stage 6, results: the results-file schema, its validation and atomic I/O, metric rows and their statistics."""
