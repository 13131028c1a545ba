"""Learned codes on one convolutional trunk (blocks.py): the autoencoder (autoencoder.py,
with its denoising, sparse, contractive and tied settings), the VAE and beta-TCVAE (vae.py),
the adversarial autoencoder (aae.py); invariance losses (invariance.py); the checkpoint
format and the table of architectures (checkpoint.py)."""
