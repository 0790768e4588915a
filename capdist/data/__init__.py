"""Datasets for retrieval and classification: scikit-learn digits, Fashion-MNIST."""

from .arrays import ArraySplit, load_digits_split, load_fmnist_split

__all__ = ["ArraySplit", "load_digits_split", "load_fmnist_split"]
