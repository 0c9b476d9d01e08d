"""The model repository: built-in models plus any `--model-repository` directories.

Layout of a user directory: `<model>/<version>/model.toml` (+ weights). A user version
with a built-in's name and version number replaces that built-in version. Mistakes are collected, not raised, so
one broken `model.toml` never keeps the others from loading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from xrserve.core.config import ConfigError, ModelConfig, load_model_toml


@dataclass
class RepositoryScan:
    configs: list[ModelConfig] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)


def scan_directory(root: Path) -> RepositoryScan:
    scan = RepositoryScan()
    if not root.is_dir():
        scan.errors.append(ConfigError(root, "(repository)", "is not a directory"))
        return scan
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if not version_dir.name.isdigit():
                continue  # Triton-style repositories hold other folders too
            toml = version_dir / "model.toml"
            if not toml.exists():
                scan.errors.append(ConfigError(toml, "(file)", "is missing; every version directory needs one"))
                continue
            try:
                scan.configs.append(load_model_toml(toml, name=model_dir.name, version=version_dir.name))
            except ConfigError as error:
                scan.errors.append(error)
    return scan


@dataclass
class RepositorySource:
    """Where models come from, as the server assembles it: user directories plus the built-in configs.

    `builtins` makes fresh configs each call (loading may fill them in); `only` restricts
    loading to these names (a fast start for tests and benches).
    """

    directories: list[Path] = field(default_factory=list)
    builtins: Callable[[], list[ModelConfig]] = list
    only: list[str] | None = None

    def wanted(self, config: ModelConfig) -> bool:
        return self.only is None or config.name in self.only


def scan_repository(source: RepositorySource) -> RepositoryScan:
    scan = RepositoryScan()
    user = RepositoryScan()
    for root in source.directories:
        found = scan_directory(root)
        user.configs += found.configs
        user.errors += found.errors
    # a user version replaces the built-in version with the same number; the built-in's
    # other versions stay (so `xrserve train --register` adds gesture v2 beside the shipped v1)
    overridden = {(c.name, c.version) for c in user.configs}
    scan.configs += [c for c in source.builtins() if (c.name, c.version) not in overridden]
    scan.configs += user.configs
    scan.errors += user.errors
    return scan
