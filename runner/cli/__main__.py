"""``python -m runner.cli``: the ``runner`` command."""

from runner.cli.app import main

if __name__ == "__main__":
    main()
