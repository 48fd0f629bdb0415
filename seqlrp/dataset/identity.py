"""The identity of a dataset run: everything that determines a row, as plain JSON for the manifest.

A re-run (or a resumed run) may only reuse part files when its identity equals the manifest's; any
difference is refused, naming what changed. The identity covers

- the **input's content**: one SHA-256 per shard of the rows as read (tokens and labels; image files'
  bytes; a Dataset's items), not a path, size or modification time;
- the **vocabulary's content** (every token and its id), or a Hugging Face **tokenizer's** (the files it saves:
  its vocabulary, merges, normalizer, special tokens and settings);
- **every rule parameter**: the composite / rule objects described recursively (class, attributes,
  tensors by dtype, shape and a hash of their values);
- the **model's parameters and buffers** (persistent or not) and the **code that runs**: a hash of the
  source file of every class in the model that does not come from torch (the ``--model-class`` file
  edited is a different run), torch's and seqlrp's versions; a Hugging Face model's **configuration** (every
  value of ``model.config``: the attention implementation, the padding id, the norm's ε, ...).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_DEPTH = 8


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and values (16 hex digits)."""
    value = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{value.dtype}:{tuple(tensor.shape)}".encode())
    if value.numel():
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.dtype != torch.bool
                      else value.numpy().tobytes())
    return digest.hexdigest()[:16]


def describe(value: Any, _depth: int = 0, _seen: frozenset = frozenset()) -> Any:
    """``value`` as plain JSON that changes whenever a parameter in it changes.

    Numbers, strings and None as they are; sequences and mappings element by element; tensors and arrays
    by dtype, shape and hash; types and functions by qualified name; any other object (a composite, a
    rule) by its class and its attributes, recursively.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value  # (JSON keeps a float exactly: Python writes the shortest repr that reads back the same)
    if isinstance(value, torch.Tensor):
        return {"tensor": tensor_digest(value)}
    if isinstance(value, np.ndarray):
        return {"array": tensor_digest(torch.from_numpy(np.ascontiguousarray(value)))}
    if isinstance(value, type) or inspect.isroutine(value):
        name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', _no_address(repr(value)))}"
        code = getattr(getattr(value, "__func__", value), "__code__", None)
        if code is not None:  # (a lambda or function edited between runs is another run)
            name += ":" + hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:12]
        return name
    if _depth > _DEPTH or id(value) in _seen:
        return type(value).__qualname__  # (a cycle, or deeper than any rule's parameters)
    seen = _seen | {id(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [describe(v, _depth + 1, seen) for v in items]
    if type(value) is dict and all(isinstance(k, str) for k in value):
        return {k: describe(v, _depth + 1, seen) for k, v in value.items()}
    if isinstance(value, nn.Module):
        return {"module": type(value).__qualname__, "state": model_digest(value)}
    described: dict[str, Any] = {"class": f"{type(value).__module__}.{type(value).__qualname__}"}
    if isinstance(value, Mapping):
        described["items"] = [[describe(k, _depth + 1, seen), describe(v, _depth + 1, seen)]
                              for k, v in value.items()]
    state = getattr(value, "__dict__", None)
    if state:
        described["attributes"] = {str(k): describe(v, _depth + 1, seen) for k, v in sorted(state.items())}
    slots = [s for cls in type(value).__mro__ for s in getattr(cls, "__slots__", ()) if hasattr(value, s)]
    if slots:
        described["slots"] = {s: describe(getattr(value, s), _depth + 1, seen) for s in sorted(slots)}
    if len(described) == 1 and not isinstance(value, Mapping):
        described["repr"] = _no_address(repr(value))
    return described


def _no_address(text: str) -> str:
    """A repr without memory addresses (``<object object at 0x7f...>``), which differ between processes."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def model_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (persistent or not), by name."""
    digest = hashlib.sha256()
    for kind, named in (("parameter", model.named_parameters(remove_duplicate=False)),
                        ("buffer", model.named_buffers(remove_duplicate=False))):
        for name, tensor in named:
            digest.update(f"{kind}:{name}:{tensor_digest(tensor)};".encode())
    return digest.hexdigest()


def _source_digest(cls: type) -> str:
    """Hash of the file(s) that define ``cls`` and its methods (so a helper they call in the same file counts
    too), else of the methods' compiled code."""
    files, code = set(), hashlib.sha256()
    module = sys.modules.get(cls.__module__)
    with suppress(TypeError):
        files.add(inspect.getsourcefile(module) if module is not None else None)
    for value in vars(cls).values():
        function = getattr(value, "__func__", value)
        if inspect.isfunction(function):
            files.add(function.__code__.co_filename)
            code.update(function.__code__.co_code + repr(function.__code__.co_consts).encode())
    found = sorted(f for f in files if f and Path(f).is_file())
    if found:
        digest = hashlib.sha256()
        for path in found:
            digest.update(Path(path).read_bytes())
        return digest.hexdigest()[:16]
    return code.hexdigest()[:16]


def code_identity(model: nn.Module) -> dict[str, str]:
    """The code that runs: per class of the model not defined by torch, the hash of its source file;
    torch's and seqlrp's versions."""
    from .. import __version__

    code = {"torch": torch.__version__, "seqlrp": __version__}
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        if cls.__module__.split(".")[0] != "torch":
            code[f"{cls.__module__}.{cls.__qualname__}"] = _source_digest(cls)
    return code


#: what a configuration or a saved tokenizer records about where and how it was loaded, not what it computes
_LOADING_KEYS = frozenset({"_name_or_path", "name_or_path", "is_local", "local_files_only", "cache_dir", "token",
                           "revision", "_commit_hash", "trust_remote_code"})


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What the model contributes to a row: its class, parameters and buffers, and its code (and a Hugging Face
    model's configuration)."""
    identity = {"class": f"{type(model).__module__}.{type(model).__qualname__}", "state": model_digest(model),
                "code": code_identity(model)}
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    if callable(to_dict):
        identity["config"] = describe({str(k): v for k, v in sorted(to_dict().items()) if k not in _LOADING_KEYS})
    return identity


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash of a Hugging Face tokenizer's content: every file ``save_pretrained`` writes (the vocabulary, merges,
    normalizer and pre-tokenizer, special tokens, settings), without where it was loaded from."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if path.suffix == ".json":
                with suppress(ValueError):
                    value = json.loads(data)
                    if isinstance(value, dict):
                        value = {k: v for k, v in value.items() if k not in _LOADING_KEYS}
                    data = json.dumps(value, sort_keys=True).encode()
            digest.update(f"{path.relative_to(folder).as_posix()}:{len(data)}:".encode() + data)
    return digest.hexdigest()[:32]


class RowHasher:
    """SHA-256 of the rows of one shard, fed row by row (``update``), read with ``hexdigest``."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def update(self, *parts) -> None:
        for part in parts:
            if isinstance(part, bytes):
                self._digest.update(len(part).to_bytes(8, "little") + part)
            elif isinstance(part, torch.Tensor):
                self._digest.update(tensor_digest(part).encode())
            else:
                text = repr(part).encode()
                self._digest.update(len(text).to_bytes(8, "little") + text)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:32]


def first_difference(old: Any, new: Any, prefix: str = "") -> str:
    """The first place where two identities differ, as ``"key.sub: <there> there, <now> now"`` (at each level the
    plain values first, so that a changed ``epsilon`` is named before the composite that holds it)."""
    if isinstance(old, dict) and isinstance(new, dict):
        def nested(key) -> bool:
            return isinstance(old.get(key), (dict, list)) and isinstance(new.get(key), (dict, list))

        for key in sorted(set(old) | set(new), key=lambda k: (nested(k), str(k))):
            found = first_difference(old.get(key, "(absent)"), new.get(key, "(absent)"), f"{prefix}{key}.")
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{prefix}{i}.")
            if found:
                return found
        return ""
    if old != new:
        return f"{prefix.rstrip('.')}: {_short(old)} there, {_short(new)} now"
    return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
