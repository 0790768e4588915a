"""Datasets for retrieval: Fashion-MNIST, digits, image folders and re-ID layouts."""

from .arrays import ArraySplit, load_digits_split, load_fmnist_split
from .retrieval import RetrievalData, TensorImages
from .sampling import BatchPlan, augment
from .specs import open_dataset

__all__ = ["ArraySplit", "BatchPlan", "RetrievalData", "TensorImages", "augment", "load_digits_split",
           "load_fmnist_split", "open_dataset"]
