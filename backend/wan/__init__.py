"""Mode `guided`'s Wan 2.x parts (a model family beside backend/guided/, CogVideoX, and
backend/animateanything/, all peers on backend/runtime/):

- limits.py: which variant a checkpoint is (2.1 I2V / Wan-Move, 2.2 I2V-A14B, 2.2 TI2V-5B) and what
  sizes, frame counts and fps it can do and was trained at, from its configs (no torch).
- load.py: a diffusers-layout Wan folder (or an original-format transformer file over one, as for
  Wan-Move) into a GuidedWanPipeline on the CPU; safetensors only.
- pipeline.py: `GuidedWanPipeline`, diffusers' WanImageToVideoPipeline plus Time-to-Move / SDEdit
  guidance, pixel-resolution warped noise and Wan-Move track conditioning.
- tracks.py: Wan-Move's conditioning (frame 0's latent features copied along point tracks) and the
  job's tracks (drags + a camera grid carried by the unified flow).
"""
