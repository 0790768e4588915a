"""Files: weights (safetensors, weights-only torch), run directories, atomic writes."""

from .atomic import atomic_write_bytes, atomic_write_json, prepare_out_dir
from .run_dir import load, read_config, save_run
from .weights import load_state, load_weights, save_weights

__all__ = ["atomic_write_bytes", "atomic_write_json", "load", "load_state", "load_weights",
           "prepare_out_dir", "read_config", "save_run", "save_weights"]
