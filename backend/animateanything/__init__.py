"""AnimateAnything (CVPR 2025, arXiv 2411.10836) as diffusers models and a pipeline.

Stage 1, unified flow: flow_vae.py (FlowVAE), camera_reference.py (CameraReferenceModel: camera
encoder + reference UNet with camera motion attention), flow_generation.py (FlowGenerationModel).
Stage 2, flow-guided video: flow_encoder.py (FlowEncoder3D), flow_fusion.py (FlowFusionBlock),
frequency_attention.py (FrequencyStabilizer + its CogVideoX attention processor), transformer.py
(AnimateAnythingTransformer). pipeline.py: AnimateAnythingPipeline, with stage1.py (its stage-1
loop and input checks) and checkpoint_io.py (its save/load). checkpoint.py: the checkpoint
folder's layout and completeness (no torch). configs.py: real and tiny sizes. Training (data,
losses, the CLI) is backend/training/; the shared runtime is backend/runtime/. Design choices:
docs/animateanything.md.
Nothing is imported here: torch and diffusers load only when a module is used.
"""
