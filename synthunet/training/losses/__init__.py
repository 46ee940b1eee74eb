"""Loss functions of the trainer variants (see documentation/trainers/)."""
from synthunet.training.losses.adversarial import (ClassifierDiscriminator, PatchDiscriminator, UNetDiscriminator,
                                                   bce_discriminator_loss, bce_generator_loss, lsgan_discriminator_loss,
                                                   lsgan_generator_loss, patchgan_receptive_field)
from synthunet.training.losses.frequency import frequency_loss, low_frequency_mask
from synthunet.training.losses.perceptual import PerceptualLoss, VGG19Features, load_vgg19_features
from synthunet.training.losses.pixel import enhancement_mask, l1_loss, l2_loss, local_l1, tumour_weighted_l1
from synthunet.training.losses.structural import gradient_difference_loss, ssim_loss

__all__ = ["ClassifierDiscriminator", "PatchDiscriminator", "PerceptualLoss", "UNetDiscriminator", "VGG19Features",
           "bce_discriminator_loss", "bce_generator_loss", "enhancement_mask", "frequency_loss",
           "gradient_difference_loss", "l1_loss", "l2_loss", "load_vgg19_features", "local_l1",
           "low_frequency_mask", "lsgan_discriminator_loss", "lsgan_generator_loss", "patchgan_receptive_field",
           "ssim_loss", "tumour_weighted_l1"]
