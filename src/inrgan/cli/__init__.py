"""The `inrgan` command: a thin layer of click subcommands over the library.

Each subcommand lives in its own module under ``inrgan.cli`` (exposing ``command``) and is imported only
when it is run, so ``inrgan --help`` starts instantly.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import runtime

# command name -> module under inrgan.cli
COMMANDS = {
    "info": "info",
    "train": "train",
    "generate": "generate",
    "dataset": "dataset",
    "metrics": "metrics",
    "interpolate": "interpolate",
    "video": "video",
    "import-official": "import_official",
    "bench": "bench",
    "plot": "plot",
    "project": "project",
    "showcase": "showcase",
    "serve": "serve",
    "probe": "probe",
    "export": "export",
}


class LazyGroup(click.Group):
    def main(self, *args, **kwargs):
        runtime.prepare()  # before any subcommand imports torch
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ValueError as e:  # a render the generator cannot make (StyleGAN2 off its grid): a clean error
            coords = sys.modules.get("inrgan.models.coords")  # loaded wherever one was raised; no torch import here
            if coords is not None and isinstance(e, coords.GridError):
                raise click.ClickException(str(e)) from None
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"inrgan.cli.{COMMANDS[name]}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inrgan")
def main() -> None:
    """INR-GAN: continuous image GANs. Train, render at any resolution, evaluate."""


def threads_option(command):
    """``--threads N``: the intra-op CPU threads of a command (default: the CPUs other programs leave free,
    or ``OMP_NUM_THREADS`` where set); see ``inrgan.runtime``."""
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads (default: the CPUs other programs leave free, followed during "
                             "training; OMP_NUM_THREADS wins where set).")(command)
