"""Diffusion-model likelihoods: the utility v(S) = log p_S(x | c) of the Shapley Royalty Share.

``unet`` builds the diffusers ``UNet2DModel`` + ``DDPMScheduler`` pair, ``elbo`` estimates
log-likelihoods in nats by the DDPM evidence lower bound with common random numbers,
``images`` decodes content, and ``family`` serves a trained family to the agent.
"""
