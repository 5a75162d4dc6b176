"""SQuAD v1.1 metric folder: ``squad_v11.py`` is the ``evaluate`` module, ``squad_scoring.py`` the scoring rules."""
