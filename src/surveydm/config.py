"""Settings: a TOML file overlaid by ``SURVEYDM_*`` environment variables.

Resolution order (later wins): built-in defaults, the TOML file, the environment.
The TOML file is ``$SURVEYDM_CONFIG`` if set, else ``$SURVEYDM_HOME/surveydm.toml`` if it
exists. Keys in the file are the field names below (``database_url = "postgresql+psycopg://..."``).

This module imports nothing else from surveydm (it is the bottom layer).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ENV_PREFIX = "SURVEYDM_"


class ConfigError(ValueError):
    """The settings file or an environment variable is invalid."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one surveydm installation.

    Attributes:
        home: directory holding the archive and, by default, the SQLite registry.
        database_url: SQLAlchemy URL of the registry; defaults to SQLite in ``home``.
        release: name of the data release reduced products are filed under (``red/<release>``).
        lease_seconds: how long a claimed job stays leased without a heartbeat.
    """

    home: Path = field(default_factory=lambda: Path("surveydm-data"))
    database_url: str = ""
    release: str = "dev"
    lease_seconds: float = 60.0

    @property
    def archive_root(self) -> Path:
        """Root of the file archive (``raw/``, ``red/``, ``quarantine/``)."""
        return self.home / "archive"

    @property
    def resolved_database_url(self) -> str:
        """The registry URL, defaulting to ``sqlite:///<home>/registry.sqlite``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'registry.sqlite').resolve()}"


def _coerce(name: str, raw: object, typ: object) -> object:
    try:
        if typ in (Path, "Path"):
            return Path(str(raw)).expanduser()
        if typ in (float, "float"):
            return float(raw)  # type: ignore[arg-type]
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} ({exc})") from exc


def load_settings(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and ``overrides``.

    Raises:
        ConfigError: the TOML file cannot be parsed or holds an unknown key or a bad value.
    """
    env = dict(os.environ if env is None else env)
    settings = Settings()
    known = {f.name: f.type for f in fields(Settings)}
    home = Path(env.get(ENV_PREFIX + "HOME", str(settings.home))).expanduser()
    path = env.get(ENV_PREFIX + "CONFIG") or str(home / "surveydm.toml")
    values: dict[str, object] = {"home": home}
    if Path(path).is_file():
        try:
            data = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}; known: {sorted(known)}")
            values[key] = _coerce(key, raw, known[key])
    for key, typ in known.items():
        if ENV_PREFIX + key.upper() in env:
            values[key] = _coerce(key, env[ENV_PREFIX + key.upper()], typ)
    for key, raw in overrides.items():
        if raw is not None:
            values[key] = _coerce(key, raw, known[key])
    return replace(settings, **values)  # type: ignore[arg-type]


def settings_environment(settings: Settings) -> dict[str, str]:
    """``SURVEYDM_*`` variables that reproduce ``settings`` in a child process (workers)."""
    return {
        ENV_PREFIX + "HOME": str(settings.home),
        ENV_PREFIX + "DATABASE_URL": settings.resolved_database_url,
        ENV_PREFIX + "RELEASE": settings.release,
        ENV_PREFIX + "LEASE_SECONDS": str(settings.lease_seconds),
    }
