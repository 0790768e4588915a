"""Datasets for retrieval: Fashion-MNIST, digits, image folders and re-ID layouts, and their loaders."""

from .arrays import ArraySplit, load_digits_split, load_fmnist_split
from .loader import eval_loader, fetch, train_loader
from .retrieval import RetrievalData, TensorImages
from .sampling import IdentityBatchSampler
from .specs import open_dataset, parse_image_size
from .transforms import Augment

__all__ = ["ArraySplit", "Augment", "IdentityBatchSampler", "RetrievalData", "TensorImages", "eval_loader", "fetch",
           "load_digits_split", "load_fmnist_split", "open_dataset", "parse_image_size", "train_loader"]
