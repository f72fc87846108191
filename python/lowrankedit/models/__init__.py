"""Generators: the protocol every method relies on, the pretrained face DCGAN, and ``wrap`` for any callable."""
from .protocol import Generator, check_generator, fingerprint
from .dcgan import DCGAN, dcgan_digiface, dcgan_mouth_region, dcgan_region
from .wrap import wrap

__all__ = ["Generator", "check_generator", "fingerprint", "DCGAN", "dcgan_digiface", "dcgan_mouth_region", "dcgan_region", "wrap"]
