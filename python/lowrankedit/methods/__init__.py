"""Editing methods (LowRankGAN, ReSeFa, LELSD, PandA), one module each; each returns ``Directions`` unless its
docstring says otherwise. The package-level names are registered in ``lowrankedit/__init__.py``."""
