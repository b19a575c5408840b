"""AnimateAnything (CVPR 2025, arXiv 2411.10836) as diffusers models and a pipeline.

Stage 1, unified flow: flow_vae.py (FlowVAE), camera_reference.py (CameraReferenceModel: camera
encoder + reference UNet with camera motion attention), flow_generation.py (FlowGenerationModel).
Stage 2, flow-guided video: flow_encoder.py (FlowEncoder3D), flow_fusion.py (FlowFusionBlock),
frequency_attention.py (FrequencyStabilizer + its CogVideoX attention processor), transformer.py
(AnimateAnythingTransformer). pipeline.py: AnimateAnythingPipeline. training.py: losses.
configs.py: real and tiny sizes. Design choices: docs/animateanything.md.
Nothing is imported here: torch and diffusers load only when a module is used.
"""
