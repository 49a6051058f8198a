"""``python -m edgenas``: the same CLI as the ``edgenas`` command."""

from edgenas.cli import main

if __name__ == "__main__":
    main()
