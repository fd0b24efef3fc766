"""Diffusion-model likelihoods: the utility v(S) = log p_S(x | c) of the Shapley Royalty Share.

Shared estimator machinery, used at runtime by the diffusion kinds of
:mod:`royalflow.attribution.families` (``digits``, ``lora``): ``unet`` builds the diffusers
``UNet2DModel`` + ``DDPMScheduler`` pair, ``elbo`` estimates log-likelihoods in nats by the DDPM
evidence lower bound with common random numbers, ``images`` decodes content, and ``sampling``
generates images from a digits family (the demo producer). Training is offline work, in
:mod:`royalflow.training`.
"""
