"""Generators: the protocol every method relies on, the pretrained face DCGAN, StyleGAN2 in Z / W / W+ (random
weights), adapters for users' NVlabs and rosinality generators, and ``wrap`` for any callable."""
from .protocol import Generator, check_generator, fingerprint
from .dcgan import DCGAN, dcgan_digiface, dcgan_mouth_region, dcgan_region
from .wrap import wrap
from .latent_space import SPACES, StyleGANSpace, apply_direction
from .stylegan2 import StyleGAN2, stylegan2
from .adapters import (NVlabsGenerator, RosinalityGenerator, from_checkpoint, from_nvlabs, from_rosinality,
                       load_nvlabs_pickle, use_reference_ops)

__all__ = ["Generator", "check_generator", "fingerprint", "DCGAN", "dcgan_digiface", "dcgan_mouth_region", "dcgan_region", "wrap",
           "SPACES", "StyleGANSpace", "apply_direction", "StyleGAN2", "stylegan2", "NVlabsGenerator",
           "RosinalityGenerator", "from_checkpoint", "from_nvlabs", "from_rosinality", "load_nvlabs_pickle", "use_reference_ops"]
