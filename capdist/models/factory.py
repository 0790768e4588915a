"""Build a network from a name a user types: a torchvision backbone or a capdist tiny model.

Example:
    >>> build_model("resnet18", num_classes=10).fc.out_features
    10
"""

from __future__ import annotations

import difflib
import importlib

import torchvision
from torch import nn

from ..errors import UnsupportedModel
from .tiny import tiny_models


def build_model(spec: str, **kwargs) -> nn.Module:
    """Build ``spec`` with random initialisation.

    Args:
        spec: a torchvision classification model name (``resnet18``), a capdist tiny
            model (``tiny_resnet``), ``package.module:factory`` (the part before the colon may also be
            an attribute a package re-exports, e.g. ``torchreid.models:build_model``), ``timm:NAME``
            or ``torchreid:NAME`` (``osnet_x1_0``; built with ``loss='triplet'``, no download).
        **kwargs: passed to the constructor (e.g. ``num_classes``).

    Raises:
        UnsupportedModel: unknown name, a factory that fails or returns no module.
    """
    if spec.startswith("timm:"):
        return _checked(spec, _timm_factory(spec[5:]), kwargs)
    if spec.startswith("torchreid:"):
        return _checked(spec, _torchreid_factory(spec[10:]), kwargs)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(import_path(module_name), attr)
        except Exception as exc:  # a user's module may fail to import in any way
            raise UnsupportedModel(f"cannot import model factory '{spec}': {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:120] if str(exc) else ''}") from None
        if not callable(factory):
            raise UnsupportedModel(f"'{spec}' is a {type(factory).__name__}, not a model factory")
        return _checked(spec, factory, kwargs)
    tiny = tiny_models()
    if spec in tiny:
        return tiny[spec](**kwargs)
    names = torchvision.models.list_models(module=torchvision.models)
    if spec not in names:
        close = [n for n in names if spec.lower()[:4] in n][:5]
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UnsupportedModel(f"unknown model '{spec}' (a torchvision classification model, "
                               f"{', '.join(tiny)}, or package.module:factory){hint}")
    if kwargs.get("weights") not in (None, "None"):
        raise UnsupportedModel("capdist never downloads weights: build with random init and load "
                               "a local file with --weights")
    kwargs.pop("weights", None)
    last_stride = kwargs.pop("last_stride", None)
    extra = {"aux_logits": False, "init_weights": False} if spec in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(spec, weights=None, **extra, **kwargs)
    if last_stride is not None:
        set_last_stride(model, int(last_stride), spec)
    return model


def set_last_stride(model: nn.Module, stride: int, spec: str = "") -> None:
    """Set the stride of a torchvision ResNet's last stage (1: the re-ID "last stride" trick of the
    BoT baseline, which CDD's teachers use; the final feature map doubles in each direction).

    Raises:
        UnsupportedModel: the model has no ResNet ``layer4``, or the stride is not 1 or 2.
    """
    if stride not in (1, 2):
        raise UnsupportedModel(f"last_stride must be 1 or 2, not {stride}")
    block = getattr(getattr(model, "layer4", None), "0", None)
    if block is None:
        raise UnsupportedModel(f"last_stride applies to ResNets (layer4), not {spec or type(model).__name__}")
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def import_path(dotted: str):
    """The object a dotted path names: the longest importable module, then attributes
    (``torchreid.models`` is an attribute that ``torchreid`` re-exports, not a module).

    Raises:
        ImportError: not even the first part imports.
    """
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name) or cut == 1:
                raise  # a module that exists failed inside, or nothing of the path imports
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


TORCHREID_DEFAULTS = {"loss": "triplet", "pretrained": False}


def _torchreid_factory(name: str):
    """torchreid's ``build_model`` for one architecture: ``loss='triplet'`` (its training output is
    ``(logits, features)``, so the features are the embedding in both modes) and no ImageNet download
    (the user's checkpoint holds the weights)."""
    try:
        models = import_path("torchreid.reid.models")
    except ImportError as exc:
        raise UnsupportedModel(f"torchreid is not usable ({exc}): pip install 'capdist[torchreid]'") from None
    known = sorted(getattr(models, "__model_factory", {}))
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        raise UnsupportedModel(f"unknown torchreid model '{name}'" + (f"; close matches: {', '.join(close)}"
                                                                      if close else ""))

    def create(**kwargs):
        return models.build_model(name=name, **{**TORCHREID_DEFAULTS, **kwargs})

    return create


def _timm_factory(name: str):
    try:
        import timm
    except ImportError:
        raise UnsupportedModel("timm is not installed: pip install 'capdist[timm]'") from None
    if name not in timm.list_models():
        raise UnsupportedModel(f"unknown timm model '{name}'")

    def create(**kwargs):
        kwargs.pop("pretrained", None)
        return timm.create_model(name, pretrained=False, **kwargs)

    return create


def _checked(spec: str, factory, kwargs: dict) -> nn.Module:
    """Call a user's factory; one clear line when it fails or returns something else than a module."""
    try:
        model = factory(**kwargs)
    except Exception as exc:  # a user's constructor may raise anything
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise UnsupportedModel(f"model factory '{spec}' failed with {given}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:120] if str(exc) else ''} "
                               "(pass constructor arguments with --teacher-arg KEY=VALUE)") from None
    if not isinstance(model, nn.Module):
        raise UnsupportedModel(f"model factory '{spec}' returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_model_args(pairs) -> dict:
    """``["num_classes=751", "name=a"]`` -> ``{"num_classes": 751, "name": "a"}`` (JSON literals, else strings).

    Raises:
        UnsupportedModel: an item without ``=``.
    """
    import json

    args = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip().isidentifier():
            raise UnsupportedModel(f"model argument '{pair}' must be KEY=VALUE, e.g. num_classes=751")
        try:
            args[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            args[key.strip()] = value
    return args


def parse_input_size(text: str) -> tuple[int, ...]:
    """One image's size as ``(C, H, W)``: ``"224x224"`` (three channels), ``"3x224x224"`` or ``"3,224,224"``."""
    try:
        size = tuple(int(v) for v in str(text).lower().replace(",", "x").split("x"))
    except ValueError:
        raise UnsupportedModel(f"input size '{text}' must be HxW or CxHxW, e.g. 224x224") from None
    size = (3, *size) if len(size) == 2 else size
    if len(size) != 3 or min(size) < 1:
        raise UnsupportedModel(f"input size '{text}' must be HxW or CxHxW, e.g. 224x224")
    return size
