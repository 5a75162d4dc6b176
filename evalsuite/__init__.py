"""evalsuite: is your LoRA/QLoRA fine-tune broken?

Importing this package must stay cheap: no torch, transformers or datasets at import time.
Heavy imports live inside the functions that need them.
"""

__version__ = "0.1.0"
