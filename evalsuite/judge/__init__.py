"""Pairwise preference between two columns of a results file, asked of a judge model (``evalsuite judge``)."""
