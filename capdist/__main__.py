"""``python -m capdist`` runs the command-line interface."""

from capdist.cli.main import main

if __name__ == "__main__":
    main()
