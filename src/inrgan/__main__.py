"""``python -m inrgan`` runs the CLI; this is also how torchrun starts it: ``torchrun ... -m inrgan train ...``."""

from inrgan.cli import main

if __name__ == "__main__":
    main(prog_name="inrgan")
