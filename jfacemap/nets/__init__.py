"""Flax NNX networks (parameters only; training loops live beside the stages that use them).

  unet.py      the tracker U-Net (FacemapUNet); layers.py its hand-written gradients; init.py weight init
  encoder.py   the neural encoder: behaviour -> 256 deep features -> neural PCs
  convert.py   the original program's .pt weights -> FacemapUNet
  schedule.py  learning-rate tails shared by the tracker and the encoder
"""
