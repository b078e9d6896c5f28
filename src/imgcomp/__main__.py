"""``python -m imgcomp`` (also what ``torchrun -m imgcomp train ...`` runs)."""

from imgcomp.cli import main

if __name__ == "__main__":
    main()
