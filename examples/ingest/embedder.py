"""A small, deterministic text embedder in torch: no weights to download.

Words are hashed (blake2b, so the same word lands in the same bucket in
every process, unlike Python's salted ``hash()``) into 4096 buckets; an
``EmbeddingBag`` averages the buckets' rows and a ``Linear`` projects the
mean to 32 dimensions, L2-normalised. Both are filled from a fixed seed, so
the same text always gets the same vector. It stands in for a real sentence
encoder: swap :class:`Embedder` for one and keep the rest. The model is built
once per process, on CUDA when there is one, else on the CPU.
"""

import hashlib
import re
import threading

import torch

#: Hash buckets (the vocabulary of the bag of words).
BUCKETS = 4096
#: Width of a bucket's row.
WIDTH = 64
#: Dimensions of an embedding.
DIM = 32
#: Seed of the weights.
SEED = 1234

_WORD = re.compile(r"[a-z0-9']+")
_lock = threading.Lock()
_model: "Embedder | None" = None


def bucket(word: str) -> int:
    """A word's bucket, the same in every process."""
    digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % BUCKETS


class Embedder(torch.nn.Module):
    """Hashed bag of words -> mean of bucket rows -> projection."""

    def __init__(self, seed: int = SEED) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.bag = torch.nn.EmbeddingBag(BUCKETS, WIDTH, mode="mean")
        self.proj = torch.nn.Linear(WIDTH, DIM, bias=False)
        with torch.no_grad():
            self.bag.weight.copy_(torch.randn(BUCKETS, WIDTH,
                                              generator=generator))
            self.proj.weight.copy_(torch.randn(DIM, WIDTH,
                                               generator=generator)
                                   / WIDTH ** 0.5)

    def forward(self, ids: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        mean = self.bag(ids, offsets)
        return torch.nn.functional.normalize(self.proj(mean), dim=1)

    def embed(self, texts: "list[str]") -> torch.Tensor:
        """One forward pass for many texts; a (len(texts), DIM) CPU tensor."""
        ids: "list[int]" = []
        offsets: "list[int]" = []
        for text in texts:
            offsets.append(len(ids))
            ids.extend(bucket(w) for w in _WORD.findall(text.lower()) or [""])
        device = self.proj.weight.device
        with torch.inference_mode():
            out = self(torch.tensor(ids, device=device),
                       torch.tensor(offsets, device=device))
        return out.cpu()


def load() -> Embedder:
    """This process's model, built on first use."""
    global _model
    with _lock:
        if _model is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            _model = Embedder().to(device).eval()
        return _model
