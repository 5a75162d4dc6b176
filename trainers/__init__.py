"""Trainer backends. Each backend is one readable module; see `evalsuite.backends` for the protocol."""
