"""hf-tasks: reproducible computer-vision training, evaluation and publishing on the Hugging Face stack."""

__version__ = "0.1.0"
