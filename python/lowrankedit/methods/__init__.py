"""Editing methods that find latent directions (LowRankGAN, ReSeFa, LELSD, PandA); each module exports one entry point."""
