"""TensorBoard output written by rank 0 (Ray Train V2 writes none itself)."""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter


class TrialWriter:
    """Per-trial scalars and image grids under <experiment>/tensorboard/<trial>/."""

    def __init__(self, logdir: str):
        self.writer = SummaryWriter(logdir, flush_secs=30)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)

    def reconstructions(self, x: torch.Tensor, x_hat: torch.Tensor, step: int, n: int = 4) -> None:
        """One image per sample: input | reconstruction side by side (RGB channels)."""
        x_full, x_hat_full = x, x_hat
        x, x_hat = x[:n, :3].detach().float().cpu(), x_hat[:n, :3].detach().float().cpu().clamp(0, 1)
        pairs = torch.cat([x, x_hat], dim=3)  # (n, 3, H, 2W)
        grid = torch.cat(list(pairs), dim=1)  # (3, n*H, 2W)
        self.writer.add_image("images/input|reconstruction", grid, step)
        if x_hat_full.shape[1] == 4:  # the edge channel: input map | reconstructed map
            maps = torch.cat([x_full[:n, 3:].detach().float().cpu(), x_hat_full[:n, 3:].detach().float().cpu().clamp(0, 1)], 3)
            self.writer.add_image("images/edge_input|edge_reconstruction", torch.cat(list(maps), 1), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
