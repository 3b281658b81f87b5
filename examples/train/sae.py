"""A sparse autoencoder and the synthetic activations it learns from (torch).

:func:`activations` makes seeded stand-ins for a model's hidden states: each
sample is a sum of a few of ``features`` random unit directions, with random
positive magnitudes, plus a little noise. It fills its tensor chunk by chunk,
reporting progress about ten times, so host memory grows with ``samples``:
that is what an oversized run runs out of. :class:`SparseAutoencoder` is the
usual ReLU encoder and linear decoder, trained on reconstruction error plus
an L1 penalty on the codes, with unit-norm decoder columns.
"""

import torch

#: Samples generated per chunk.
CHUNK = 16384


def activations(samples: int, d_model: int, features: int, active: int = 4,
                seed: int = 0, report=None) -> torch.Tensor:
    """``samples`` synthetic activation vectors of width ``d_model``."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(
        torch.randn(features, d_model, generator=generator), dim=1)
    out = torch.empty(samples, d_model)
    every = max(1, samples // CHUNK // 10) * CHUNK
    for start in range(0, samples, CHUNK):
        n = min(CHUNK, samples - start)
        which = torch.randint(features, (n, active), generator=generator)
        size = torch.rand(n, active, generator=generator) * 2
        chunk = out[start:start + n]
        chunk.copy_(torch.randn(n, d_model, generator=generator)).mul_(0.01)
        for k in range(active):
            chunk.addcmul_(directions[which[:, k]], size[:, k:k + 1])
        if report is not None and ((start + n) % every == 0
                                   or start + n == samples):
            report(start + n, samples)
    return out


class SparseAutoencoder(torch.nn.Module):
    """ReLU encoder to ``dict_size`` latents, linear decoder back."""

    def __init__(self, d_model: int, dict_size: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(d_model, dict_size)
        self.decoder = torch.nn.Linear(dict_size, d_model)
        with torch.no_grad():  # tied start: encoder = decoder transposed
            self.normalize_decoder()
            self.encoder.weight.copy_(self.decoder.weight.t())
            self.encoder.bias.zero_()

    def forward(self, x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        codes = torch.relu(self.encoder(x - self.decoder.bias))
        return self.decoder(codes), codes

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Keep each latent's decoder column at unit norm."""
        weight = self.decoder.weight
        weight.div_(weight.norm(dim=0, keepdim=True).clamp_min(1e-8))


def train_epoch(model: SparseAutoencoder, optimizer, data: torch.Tensor,
                batch_size: int, l1: float, generator: torch.Generator,
                device: str) -> "tuple[float, float]":
    """One pass over ``data`` in shuffled batches: (mean loss, mean L0)."""
    order = torch.randperm(len(data), generator=generator)
    total = l0 = 0.0
    steps = 0
    for start in range(0, len(data), batch_size):
        batch = data[order[start:start + batch_size]].to(device)
        recon, codes = model(batch)
        loss = ((recon - batch).pow(2).sum(1).mean()
                + l1 * codes.abs().sum(1).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.normalize_decoder()
        total += loss.item()
        l0 += (codes > 0).float().sum(1).mean().item()
        steps += 1
    return total / steps, l0 / steps
