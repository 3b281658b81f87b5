"""A small CPU text embedder in torch, built once per process.

No weights are downloaded: a hashing tokenizer feeds a two-layer transformer
encoder with fixed random weights (seeded), mean-pooled to 256 numbers. It
costs about what a small sentence-embedding model costs per text, which is
what the batch workload needs.
"""

import threading
import zlib

_model = None
_lock = threading.Lock()
VOCAB = 1 << 15
WIDTH = 256
MAX_TOKENS = 32


def _build():
    import torch
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(WIDTH, 4, 4 * WIDTH,
                                             batch_first=True, dropout=0.0)
    model = torch.nn.ModuleDict({
        "embedding": torch.nn.Embedding(VOCAB, WIDTH, padding_idx=0),
        "encoder": torch.nn.TransformerEncoder(layer, 2,
                                               enable_nested_tensor=False)})
    model.eval()
    return model


def tokens(text: str) -> "list[int]":
    """Hash each word into the vocabulary (0 is padding)."""
    return [1 + zlib.crc32(w.encode()) % (VOCAB - 1)
            for w in text.lower().split()][:MAX_TOKENS] or [1]


def embed(texts: "list[str]") -> list:
    """One 256-float embedding per text."""
    global _model
    import torch
    if _model is None:
        with _lock:
            if _model is None:
                _model = _build()
    ids = [tokens(t) for t in texts]
    width = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (width - len(i)) for i in ids])
    mask = batch == 0
    with torch.inference_mode():
        hidden = _model["encoder"](_model["embedding"](batch),
                                   src_key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).float()
        pooled = (hidden * keep).sum(1) / keep.sum(1)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.tolist()


def sample_texts(count: int) -> "list[str]":
    """``count`` short, varied, made-up texts."""
    words = ("edge device queue memory model batch token embed vector jetson "
             "server worker lease store job priority latency drain crash "
             "budget thread process sqlite redis text short long fast slow")
    pool = words.split()
    return [" ".join(pool[(i * 7 + k * 3) % len(pool)]
                     for k in range(4 + i % 12)) for i in range(count)]
