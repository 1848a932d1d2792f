"""onnxruntime session for an encoder graph: provider choice, input/output detection, pooling.

Handles two graph shapes so other encoders can be dropped in without code changes:

* BERT-style graphs built by models/build_encoder.py: inputs input_ids, attention_mask,
  token_type_ids; output ``sentence_embedding`` [batch, dim], already pooled and normalised.
* Plain transformer exports (e.g. ModernBERT): no token_type_ids; output ``last_hidden_state``
  [batch, seq, dim], mean-pooled over the attention mask and L2-normalised here in numpy.

``InferenceSession.run`` is thread-safe, and nothing here is mutated after construction, so one
backend can serve a thread pool.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from semroute.encoder.errors import EncoderError
from semroute.encoder.tokenize import TokenBatch

log = logging.getLogger("semroute.encoder")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
REQUIRED_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)
PREFERRED_OUTPUTS = ("sentence_embedding", "last_hidden_state")
_NUMPY_INT = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_op_threads  # 0 = onnxruntime's default (all physical cores)
    so.log_severity_level = 3  # keep ORT's own warnings out of service logs; ours say why
    return so


def create_session(
    model_path: Path, *, device: str = "cpu", intra_op_threads: int = 0
) -> ort.InferenceSession:
    """Session on ``device``; "cuda" falls back to CPU with a WARNING saying why.

    A GPU is an optimisation, never a requirement: a config written for a GPU host must still
    start on a CPU-only one (tests, laptops, a node without drivers).
    """
    if device not in ("cpu", "cuda"):
        raise EncoderError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if intra_op_threads < 0:
        raise EncoderError(f"intra_op_threads must be >= 0 (0 = default), got {intra_op_threads}")
    if not model_path.is_file():
        raise EncoderError(f"model file {model_path} does not exist")

    def make(providers: list[str]) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(model_path), _session_options(intra_op_threads), providers=providers
        )

    if device == "cuda":
        available = ort.get_available_providers()
        if CUDA not in available:
            log.warning(
                "encoder: device='cuda' requested but this onnxruntime build has no %s "
                "(available: %s; install onnxruntime-gpu for CUDA); falling back to CPU",
                CUDA,
                ", ".join(available),
            )
        else:
            try:
                session = make([CUDA, CPU])
            except Exception as e:  # driver/library problems surface here
                log.warning(
                    "encoder: device='cuda' requested but creating a CUDA session failed (%s); "
                    "falling back to CPU",
                    e,
                )
            else:
                if CUDA in session.get_providers():
                    return session
                log.warning(
                    "encoder: device='cuda' requested but onnxruntime could not initialise %s "
                    "(usually missing CUDA/cuDNN libraries); falling back to CPU",
                    CUDA,
                )
                return session  # onnxruntime already fell back to CPU on its own
    try:
        return make([CPU])
    except Exception as e:
        raise EncoderError(f"onnxruntime cannot load {model_path}: {e}") from e


class OnnxBackend:
    """Runs token batches through an encoder graph and returns L2-normalised float32 rows."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,
        output_normalized: bool = False,
    ) -> None:
        self.session = create_session(model_path, device=device, intra_op_threads=intra_op_threads)
        self.providers: list[str] = list(self.session.get_providers())
        inputs = {i.name: i for i in self.session.get_inputs()}
        missing = [n for n in REQUIRED_INPUTS if n not in inputs]
        unknown = [n for n in inputs if n not in REQUIRED_INPUTS + OPTIONAL_INPUTS]
        if missing or unknown:
            raise EncoderError(
                f"{model_path} has inputs {sorted(inputs)}; an encoder graph needs "
                f"{list(REQUIRED_INPUTS)} and may have {list(OPTIONAL_INPUTS)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unsupported {unknown})" if unknown else "")
            )
        self._inputs: dict[str, type[np.integer]] = {}
        for name, arg in inputs.items():
            if arg.type not in _NUMPY_INT:
                raise EncoderError(
                    f"{model_path}: input {name} is {arg.type}, expected int64/int32"
                )
            self._inputs[name] = _NUMPY_INT[arg.type]
        self.uses_token_type_ids = "token_type_ids" in inputs

        outputs = {o.name: o for o in self.session.get_outputs()}
        preferred = [n for n in PREFERRED_OUTPUTS if n in outputs]
        if preferred:
            self.output = preferred[0]
        elif len(outputs) == 1:
            self.output = next(iter(outputs))
        else:
            raise EncoderError(
                f"{model_path} has outputs {sorted(outputs)}; expected one of "
                f"{list(PREFERRED_OUTPUTS)} or a single output"
            )
        shape = outputs[self.output].shape
        if len(shape) not in (2, 3):
            raise EncoderError(
                f"{model_path}: output {self.output} has rank {len(shape)}; expected 2 "
                "(pooled sentence embedding) or 3 (last_hidden_state)"
            )
        self.pooled = len(shape) == 2
        self.dim: int | None = shape[-1] if isinstance(shape[-1], int) else None
        # Rank-2 outputs are trusted to be unit length only when the model says so.
        self._normalize = not (self.pooled and output_normalized)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.session.get_outputs())

    def _feeds(self, batch: TokenBatch) -> dict[str, np.ndarray]:
        arrays = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return {
            name: arrays[name].astype(dtype, copy=False) for name, dtype in self._inputs.items()
        }

    def run_output(self, batch: TokenBatch, name: str) -> np.ndarray:
        """Another output of the graph (e.g. a classifier's ``route_logits``), as float32."""
        return np.asarray(self.session.run([name], self._feeds(batch))[0], dtype=np.float32)

    def run(self, batch: TokenBatch) -> np.ndarray:
        """(n, dim) float32 embeddings with unit-length rows for a non-empty batch."""
        out = np.asarray(self.session.run([self.output], self._feeds(batch))[0], dtype=np.float32)
        if not self.pooled:
            mask = batch.attention_mask[:, :, None].astype(np.float32)
            out = (out * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self._normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32, copy=False)
