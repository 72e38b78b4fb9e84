"""``ars-engine evidence``: verify and purge evidence bundles (see :mod:`.service.evidence`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from .config import Settings
from .errors import ConfigError, EvidenceError
from .service.evidence import purge_evidence, verify_evidence


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def evidence() -> None:
    """Evidence bundles of recorded calls: verify them, purge the expired ones."""


@evidence.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--no-key", is_flag=True,
              help="Check the files' hashes only, not the manifest's signature.")
@click.pass_context
def verify(ctx: click.Context, file: Path, no_key: bool) -> None:
    """Verify the bundle of FILE (its manifest.json, its directory or one of its audio files):
    signature and audio hashes. Exit 0 when every check passes, 1 otherwise."""
    key: bytes | None = None
    key_id: str | None = None
    if not no_key:
        try:
            master = _settings().master_key()
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        key, key_id = master.evidence_key, master.evidence_key_id
    report = verify_evidence(file, key=key, key_id=key_id)
    click.echo(report.describe())
    ctx.exit(0 if report.ok else 1)


@evidence.command()
@click.option("--older-than-days", type=click.IntRange(min=1), default=None,
              help="Retention in days [default: [service] retention_days, 1826].")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="The evidence root [default: <recordings>/evidence].")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def purge(older_than_days: int | None, directory: Path | None, dry_run: bool) -> None:
    """Remove the bundles of calls that ended longer ago than the retention. Bundles whose
    manifest cannot be read are kept (and logged)."""
    settings = _settings()
    days = older_than_days if older_than_days is not None else settings.service.retention_days
    root = directory if directory is not None else settings.recordings_dir / "evidence"
    try:
        removed = purge_evidence(root, older_than_days=days, now=datetime.now(UTC),
                                 dry_run=dry_run)
    except EvidenceError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    click.echo(f"{len(removed)} bundle{'' if len(removed) == 1 else 's'} "
               f"{'would be removed' if dry_run else 'removed'} "
               f"(calls ended over {days} days ago, under {root})")
