"""Learned codes: a convolutional autoencoder and a VAE on the same convolutional trunk."""
