"""Files: weights (safetensors, weights-only torch), run directories and their policy, atomic writes."""

from .atomic import atomic_write_bytes, atomic_write_json
from .out_dir import prepare_out_dir
from .run_dir import load, read_config, save_run
from .weights import load_state, load_weights, save_weights

__all__ = ["atomic_write_bytes", "atomic_write_json", "load", "load_state", "load_weights",
           "prepare_out_dir", "read_config", "save_run", "save_weights"]
