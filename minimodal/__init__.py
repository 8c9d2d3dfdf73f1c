"""minimodal: vision-language models built from first principles in PyTorch.

Each module holds one idea; the lessons in ``lessons/`` build them step by step and
check every piece against a reference implementation.
"""

__version__ = "0.1.0"
