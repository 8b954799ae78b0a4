"""``python -m runner.cli``: the ``runner`` command."""

from runner.cli.leave import console

if __name__ == "__main__":
    console()
