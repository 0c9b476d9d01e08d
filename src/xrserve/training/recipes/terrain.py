"""`terrain-vae` and `terrain-gan`: generative models of 32x32 heightmaps in metres.

Both learn from random crops (with flips and 90-degree rotations) of the real elevation
models matplotlib ships. The DEMs are cut into 40x40 tiles dealt to train / validation
/ test with the seed, so a held-out crop never overlaps a training one. Heights are
standardised with the training tiles' mean and standard deviation; the exported modules
undo that, so they take and return metres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xrserve.training.data import dem_files, read_dems, split_terrain
from xrserve.training.evaluate import fit_fractal_baseline, realism_score, terrain_statistics
from xrserve.training.recipes import Recipe, save_torchscript

SIZE = 32
BLOCK = 40


class Encoder(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 16
            nn.Conv2d(16, 32, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 4
            nn.Flatten(),
        )
        self.mu = nn.Linear(64 * 16, latent)
        self.logvar = nn.Linear(64 * 16, latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x.unsqueeze(1))
        return self.mu(h), self.logvar(h).clamp(-12.0, 8.0)


class Decoder(nn.Module):
    """Latent -> heightmap (standardised). Also the GAN's generator, with batch norm there.

    Nearest upsampling + 3x3 convolutions (not transposed convolutions): no checkerboard
    artefacts, which a slope statistic would see at once, and about half the compute.
    """

    def __init__(self, latent: int, norm: bool = False, upsample: str = "nearest") -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Upsample(scale_factor=2.0, mode=upsample),
                nn.Conv2d(cin, cout, 3, 1, 1),
                *([nn.BatchNorm2d(cout)] if norm else []),
                nn.ReLU(),
            ]

        self.fc = nn.Linear(latent, 64 * 16)
        self.conv = nn.Sequential(
            *block(64, 48),
            *block(48, 24),
            *block(24, 12),  # 8, 16, 32
            nn.Conv2d(12, 1, 3, 1, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.fc(z)).view(-1, 64, 4, 4)).squeeze(1)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, 32, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(32, 64, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(64, 128, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            sn(nn.Linear(128 * 16, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1)).squeeze(1)


class VaeExport(nn.Module):
    """Served module: metres in and out. `encode` -> (mean, log-variance); `decode` latent -> metres."""

    def __init__(self, encoder: Encoder, decoder: Decoder, mean: float, std: float) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.mean, self.std = mean, std

    @torch.jit.export
    def encode(self, heights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder((heights - self.mean) / self.std)

    @torch.jit.export
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent) * self.std + self.mean

    def forward(self, heights: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(heights)[0])


class Smoothing(nn.Module):
    """A fixed Gaussian low-pass (5x5, reflected edges); sigma 0 passes maps through unchanged."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        offsets = torch.arange(-2, 3, dtype=torch.float32)
        bell = torch.exp(-(offsets**2) / (2 * sigma**2)) if sigma > 0 else (offsets == 0).float()
        bell = bell / bell.sum()
        self.register_buffer("kernel", torch.outer(bell, bell)[None, None])

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(maps.unsqueeze(1), (2, 2, 2, 2), mode="reflect"), self.kernel).squeeze(1)


class GanExport(nn.Module):
    """Served module: latent [N, Z] -> heightmap [N, 32, 32] in metres."""

    def __init__(self, generator: Decoder, mean: float, std: float, smoothing: float = 0.0) -> None:
        super().__init__()
        self.generator = generator
        self.smooth = Smoothing(smoothing)
        self.mean, self.std = mean, std

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.smooth(self.generator(latent)) * self.std + self.mean


def log_spectrum(maps: torch.Tensor, bins: int = 12) -> torch.Tensor:
    """Batch-mean log power in radial frequency bins: a differentiable picture of the spectrum."""
    size = maps.shape[-1]
    power = torch.fft.rfft2(maps - maps.mean(dim=(-2, -1), keepdim=True)).abs().pow(2).mean(0)
    fy = torch.fft.fftfreq(size).abs()[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    which = (torch.sqrt(fy**2 + fx**2) / 0.5 * (bins - 1)).round().long().clamp(max=bins - 1)
    sums = torch.zeros(bins).index_add(0, which.flatten(), power.flatten())
    counts = torch.zeros(bins).index_add(0, which.flatten(), torch.ones(which.numel()))
    return torch.log(sums[1:] / counts[1:].clamp_min(1) + 1e-8)


class TerrainRecipe(Recipe):
    latent = 32
    optional_inputs: tuple[str, ...] = ()  # the inputs a request may leave out (it sends one of them)
    batch_size = 64
    steps = 100  # per epoch

    def prepare(self, data: Path | None, seed: int, limit: int | None) -> dict[str, Any]:
        dems, data_hash = read_dems(data)
        self.split = split_terrain(dems, SIZE, BLOCK, seed)
        if limit:  # a quick run on a slice: fewer training tiles
            self.split.blocks["train"] = self.split.blocks["train"][: max(2, limit)]
        train = np.concatenate([b.ravel() for b in self.split.blocks["train"]])
        self.mean, self.std = float(train.mean()), float(train.std())
        self.val = self.split.fixed_crops("val")
        self.test = self.split.fixed_crops("test")
        source = str(data) if data else "matplotlib sample data: " + ", ".join(str(p) for p in dem_files())
        return {
            "source": source,
            "data_hash": data_hash,
            "units": "metres",
            "dems": {d.name: list(d.heights.shape) for d in dems},
            "split": {k: len(v) for k, v in self.split.blocks.items()},
            "split_rule": f"{BLOCK}x{BLOCK} tiles dealt 70/15/15 by numpy default_rng(seed); "
            f"training: random {SIZE}x{SIZE} crops, flips, 90-degree rotations; "
            f"held out: corners and centre of each tile in 8 orientations "
            f"({len(self.val)} val, {len(self.test)} test crops)",
            "height_mean_m": self.mean,
            "height_std_m": self.std,
        }

    def steps_per_epoch(self) -> int:
        return self.steps

    def batch(self, rng: np.random.Generator) -> torch.Tensor:
        crops = self.split.random_crops("train", self.batch_size, rng)
        return torch.from_numpy((crops - self.mean) / self.std)

    def baseline(self, count: int) -> np.ndarray:
        train = self.split.random_crops("train", 512, np.random.default_rng(123))
        return fit_fractal_baseline(train, count, np.random.default_rng(321))

    def samples_m(self, count: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def realism(self, run_dir: Path, held_out: np.ndarray) -> dict[str, Any]:
        """Realism of samples and of the fractal baseline against held-out real terrain, with pictures."""
        from xrserve.training.report import heightmap_grid, histogram_plot

        generated = self.samples_m(len(held_out), seed=7)
        fractal = self.baseline(len(held_out))
        result = {"realism": realism_score(generated, held_out), "fractal_baseline": realism_score(fractal, held_out)}
        plots = {
            "samples": heightmap_grid(run_dir / "samples.png", generated[:32], f"{self.name}: samples (32x32, metres)"),
            "real": heightmap_grid(
                run_dir / "real_test_crops.png", held_out[:: max(1, len(held_out) // 32)][:32], "real held-out crops"
            ),
            "fractal_baseline": heightmap_grid(
                run_dir / "fractal_baseline.png", fractal[:32], "fractal-noise baseline"
            ),
            "statistics": histogram_plot(
                run_dir / "terrain_statistics.png",
                {
                    "real (test)": terrain_statistics(held_out),
                    self.name: terrain_statistics(generated),
                    "fractal": terrain_statistics(fractal),
                },
                "terrain statistics",
            ),
        }
        return {**result, "plots": plots}

    def export_toml(self, directory: Path, report: dict[str, Any], body: str) -> None:
        (directory / "model.toml").write_text(
            f"# {self.name}: trained by `xrserve train {self.name}` ({report['finished']})\n"
            f'runtime = "python"\ndescription = "{self.description}; {report["headline"]}"\n'
            f'isolation = "thread"  # PyTorch releases the GIL\npriority = "bulk"  # worlds are built, frames are not\n'
            f"optional_inputs = [{', '.join(repr(i) for i in self.optional_inputs)}]  # send one of them\n"
            + body
            + f'\n[parameters]\nweights = "model.pt"\nlatent = {self.latent}\nsize = {SIZE}\n'
            f'recipe = "{self.name}"\ndata_hash = "{report["data"]["data_hash"]}"\n'
        )


def _io(latent: int, batched: bool) -> str:
    first = "-1"
    return (
        f'inputs = [\n  {{ name = "heightmap", datatype = "FP32", shape = [{first}, {SIZE}, {SIZE}] }},\n'
        f'  {{ name = "latent", datatype = "FP32", shape = [{first}, {latent}] }},\n'
        f'  {{ name = "seed", datatype = "INT64", shape = [{first}] }},\n]\n'
        f'outputs = [\n  {{ name = "heightmap", datatype = "FP32", shape = [{first}, {SIZE}, {SIZE}] }},\n'
        f'  {{ name = "latent", datatype = "FP32", shape = [{first}, {latent}] }},\n]\n'
    )


def seeded_latents(seeds: np.ndarray, latent: int) -> np.ndarray:
    """One standard-normal latent per seed: the same seed always gives the same terrain."""
    return np.stack([np.random.default_rng(int(s)).standard_normal(latent) for s in np.ravel(seeds)]).astype(np.float32)


class TerrainVaeRecipe(TerrainRecipe):
    name = "terrain-vae"
    optional_inputs = ("heightmap", "latent", "seed")
    description = "Terrain heightmaps 32x32 in metres: encode, decode, sample, interpolate (VAE)"
    default_epochs = 12  # validation RMSE has flattened by then (78-79 m from epoch 9 on)
    noise_m = 0.1  # likelihood scale in standard units: smaller = sharper, less regular latent space

    def build(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.encoder, self.decoder = Encoder(self.latent), Decoder(self.latent)
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=1e-3)

    def state_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.state_dict(),
            "decoder": self.decoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        self.optimizer.load_state_dict(state["optimizer"])

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.encoder.training else mu
        mse = F.mse_loss(self.decoder(z), x)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        loss = mse * x[0].numel() / (2 * self.noise_m**2) + kl
        return loss / x[0].numel(), mse, kl

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        self.encoder.train(), self.decoder.train()
        loss, mse, kl = self.losses(self.batch(rng))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "kl": kl.item()}

    def measure(self, crops: np.ndarray) -> dict[str, float]:
        self.encoder.eval(), self.decoder.eval()
        with torch.inference_mode():
            x = torch.from_numpy((crops - self.mean) / self.std)
            loss, mse, kl = self.losses(x)
        return {"loss": float(loss), "rmse_m": float(mse.sqrt()) * self.std, "kl": float(kl)}

    def validate(self) -> dict[str, float]:
        m = self.measure(self.val)
        return {"val_loss": m["loss"], "val_rmse_m": m["rmse_m"]}

    def decode_m(self, z: np.ndarray) -> np.ndarray:
        self.decoder.eval()
        with torch.inference_mode():
            return (self.decoder(torch.from_numpy(z)).numpy() * self.std + self.mean).astype(np.float32)

    def samples_m(self, count: int, seed: int) -> np.ndarray:
        return self.decode_m(np.random.default_rng(seed).standard_normal((count, self.latent)).astype(np.float32))

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        from xrserve.training.report import heightmap_grid

        measured = self.measure(self.test)
        self.encoder.eval()
        with torch.inference_mode():
            mu = self.encoder(torch.from_numpy((self.test - self.mean) / self.std))[0].numpy()
        pick = np.random.default_rng(5).choice(len(self.test), size=8, replace=False)
        recon = self.decode_m(mu[pick])
        a, b = mu[pick[0]], mu[pick[1]]
        strip = self.decode_m(np.stack([a + (b - a) * t for t in np.linspace(0, 1, 8)]).astype(np.float32))
        realism = self.realism(run_dir, self.test)
        realism["plots"].update(
            {
                "reconstructions": heightmap_grid(
                    run_dir / "reconstructions.png",
                    np.concatenate([self.test[pick], recon]),
                    "held-out crops (top) and their reconstructions (bottom)",
                ),
                "interpolation": heightmap_grid(
                    run_dir / "interpolation.png",
                    np.concatenate([self.test[pick[:1]], strip, self.test[pick[1:2]]]),
                    "interpolation between two held-out crops (ends: the originals)",
                    columns=10,
                ),
            }
        )
        return {"rmse_m": measured["rmse_m"], "kl": measured["kl"], "test_crops": len(self.test), **realism}

    def headline(self, metrics: dict[str, Any]) -> str:
        return (
            f"test reconstruction RMSE {metrics['rmse_m']:.1f} m, KL {metrics['kl']:.1f} nats, "
            f"sample realism {metrics['realism']['score']:.3f} (fractal baseline "
            f"{metrics['fractal_baseline']['score']:.3f})"
        )

    def export(self, directory: Path, report: dict[str, Any]) -> None:
        self.encoder.eval(), self.decoder.eval()
        save_torchscript(VaeExport(self.encoder, self.decoder, self.mean, self.std), directory / "model.pt")
        self.export_toml(
            directory, report, 'entrypoint = "xrserve.models.trained:TerrainVAE"\n' + _io(self.latent, False)
        )


class TerrainGanRecipe(TerrainRecipe):
    name = "terrain-gan"
    description = "Terrain heightmaps 32x32 in metres sampled from a seed or latent vector (GAN)"
    default_epochs = 20
    optional_inputs = ("latent", "seed")
    latent = 64
    batch_size = 32

    ema_decay = 0.995
    # Optional loss matching the radially averaged log spectrum of real batches. The default
    # generator keeps too much energy at short wavelengths (spectral slope -3.6 vs real -4.8),
    # but with weight 1.0 the best validation realism got worse (0.536 vs 0.432), so it is off;
    # bilinear upsampling was worse too (0.60 after 9 epochs).
    spectral_weight = 0.0
    # What did work: a light Gaussian low-pass after the generator, its width chosen on the
    # validation crops with the epoch (sigma 0.5 px took the spectral-slope distance of the
    # default run from 0.99 to 0.32 on held-out crops; 0.7 already overshoots to 1.58, so the
    # width is chosen, not fixed). 0 is a candidate: an unsmoothed generator can still win.
    smoothing_grid = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)

    def build(self, seed: int) -> None:
        """Besides the two networks: an exponential moving average of the generator's weights
        (much steadier samples than the last step's), and the best such average on the
        validation realism score, which is what is evaluated and exported."""
        import copy

        torch.manual_seed(seed)
        self.generator, self.discriminator = Decoder(self.latent, norm=True), Discriminator()
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.ema = copy.deepcopy(self.generator).eval()
        self.best: dict[str, Any] = {
            "score": float("inf"),
            "epoch": 0,
            "smoothing": 0.0,
            "state": self.ema.state_dict(),
        }
        self.epoch = 0
        self.updates = 0  # generator steps folded into the EMA

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_opt": self.g_opt.state_dict(),
            "d_opt": self.d_opt.state_dict(),
            "ema": self.ema.state_dict(),
            "best": self.best,
            "epoch": self.epoch,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.ema.load_state_dict(state.get("ema", state["generator"]))
        self.best = state.get("best", {"score": float("inf"), "epoch": 0, "state": self.ema.state_dict()})
        self.best.setdefault("smoothing", 0.0)
        self.epoch = state.get("epoch", 0)
        self.updates = state.get("updates", 0)

    @torch.no_grad()
    def _update_ema(self) -> None:
        self.updates += 1
        decay = min(self.ema_decay, (1 + self.updates) / (10 + self.updates))  # warm-up: short runs track too
        for mine, theirs in zip(self.ema.parameters(), self.generator.parameters()):
            mine.lerp_(theirs, 1 - decay)
        for buffer, source in zip(self.ema.buffers(), self.generator.buffers()):
            buffer.copy_(source)

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        """Non-saturating GAN loss; spectral norm keeps the discriminator from running away."""
        self.generator.train(), self.discriminator.train()
        real = self.batch(rng)
        z = torch.randn(len(real), self.latent)
        fake = self.generator(z)
        d_loss = F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake.detach())).mean()
        self.d_opt.zero_grad()
        d_loss.backward()
        self.d_opt.step()
        g_loss = F.softplus(-self.discriminator(fake)).mean()
        self.g_opt.zero_grad()
        if self.spectral_weight:
            spectrum = F.mse_loss(log_spectrum(fake), log_spectrum(real))
            (g_loss + self.spectral_weight * spectrum).backward()
        else:
            g_loss.backward()
        self.g_opt.step()
        self._update_ema()
        losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
        if self.spectral_weight:
            losses["spectrum_loss"] = spectrum.item()
        return losses

    def samples_m(self, count: int, seed: int, smoothing: float | None = None) -> np.ndarray:
        """Samples in metres from the EMA generator, smoothed as chosen (or as `smoothing` says)."""
        z = torch.from_numpy(np.random.default_rng(seed).standard_normal((count, self.latent)).astype(np.float32))
        sigma = self.best["smoothing"] if smoothing is None else smoothing
        with torch.inference_mode():
            return (Smoothing(sigma)(self.ema(z)).numpy() * self.std + self.mean).astype(np.float32)

    def validate(self) -> dict[str, float]:
        """The validation realism of this epoch's EMA generator at its best smoothing width."""
        self.epoch += 1
        scores = {
            sigma: realism_score(self.samples_m(len(self.val), seed=11, smoothing=sigma), self.val)["score"]
            for sigma in self.smoothing_grid
        }
        sigma = min(scores, key=lambda width: scores[width])
        if scores[sigma] < self.best["score"]:
            self.best = {
                "score": scores[sigma],
                "epoch": self.epoch,
                "smoothing": sigma,
                "state": {k: v.clone() for k, v in self.ema.state_dict().items()},
            }
        return {"val_realism": scores[sigma], "val_realism_unsmoothed": scores[0.0]}

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        self.ema.load_state_dict(self.best["state"])  # the generator chosen on the validation split
        return {
            "test_crops": len(self.test),
            "chosen_epoch": self.best["epoch"],
            "chosen_smoothing_px": self.best["smoothing"],
            "val_realism_chosen": self.best["score"],
            **self.realism(run_dir, self.test),
        }

    def headline(self, metrics: dict[str, Any]) -> str:
        return (
            f"realism {metrics['realism']['score']:.3f} vs fractal-noise baseline "
            f"{metrics['fractal_baseline']['score']:.3f} (lower is closer to real terrain)"
        )

    def export(self, directory: Path, report: dict[str, Any]) -> None:
        save_torchscript(GanExport(self.ema, self.mean, self.std, self.best["smoothing"]), directory / "model.pt")
        # the GAN takes no heightmap: drop it from the inputs (the first mention), keep it among the outputs
        io = _io(self.latent, True).replace(
            '  { name = "heightmap", datatype = "FP32", shape = [-1, 32, 32] },\n', "", 1
        )
        self.export_toml(
            directory, report, 'entrypoint = "xrserve.models.trained:TerrainGAN"\nmax_batch_size = 16\n' + io
        )
