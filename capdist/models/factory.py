"""Build a network from a name a user types: a torchvision backbone or a capdist tiny model.

Example:
    >>> build_model("resnet18", num_classes=10).fc.out_features
    10
"""

from __future__ import annotations

import torchvision
from torch import nn

from ..errors import UnsupportedModel
from .tiny import tiny_models
from .zoo import ZOOS, import_path


def build_model(spec: str, **kwargs) -> nn.Module:
    """Build ``spec`` with random initialisation.

    Args:
        spec: a torchvision classification model name (``resnet18``), a capdist tiny
            model (``tiny_resnet``), ``package.module:factory`` (the part before the colon may also be
            an attribute a package re-exports, e.g. ``torchreid.models:build_model``), or a model of a
            zoo (:mod:`capdist.models.zoo`): ``timm:NAME``, ``torchreid:NAME``, ``fastreid:CONFIG.yml``.
        **kwargs: passed to the constructor (e.g. ``num_classes``).

    Raises:
        UnsupportedModel: unknown name, a factory that fails or returns no module.
    """
    zoo, _, name = spec.partition(":")
    if zoo in ZOOS:
        return _checked(spec, ZOOS[zoo](name), kwargs)
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
    """``["num_classes=751", "name=a"]`` -> ``{"num_classes": 751, "name": "a"}`` (JSON literals, else
    strings); dotted keys are config keys (``MODEL.BACKBONE.DEPTH=18x`` for ``fastreid:`` models).

    Raises:
        UnsupportedModel: an item without ``=``.
    """
    import json

    args = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not all(part.isidentifier() for part in key.strip().split(".")):
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
