"""Trainer backends. Each backend is one readable module; see `evalsuite.train.backends` for the protocol."""
