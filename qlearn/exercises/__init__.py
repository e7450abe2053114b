"""Check functions for the notebooks' exercises, one module per notebook (nb03.py, nb04.py, ...)."""
