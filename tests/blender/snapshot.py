"""What a failed import or generation must leave untouched: every datablock name in bpy.data,
the Sequencer's strips, camera background images and the scene's frame settings. The
`scene.animate_anything` status fields (job_running, last_message, ...) are left out on purpose:
they are where a failure is reported. So is Blender's "Render Result" slot (an image of type
VIEWER that any render creates, holding no data of the file)."""

from __future__ import annotations

import bpy

COLLECTIONS = (
    "actions",
    "cameras",
    "collections",
    "images",
    "lights",
    "materials",
    "meshes",
    "movieclips",
    "node_groups",
    "objects",
    "scenes",
    "texts",
    "textures",
    "worlds",
)


def data_snapshot() -> dict:
    snap = {name: sorted(id_.name for id_ in getattr(bpy.data, name)) for name in COLLECTIONS}
    snap["images"] = sorted(i.name for i in bpy.data.images if i.type != "RENDER_RESULT")
    for scene in bpy.data.scenes:
        se = scene.sequence_editor
        snap[f"strips:{scene.name}"] = (
            None
            if se is None
            else sorted((s.name, s.channel, s.frame_final_start, s.frame_final_duration) for s in se.strips)
        )
        snap[f"frames:{scene.name}"] = (
            scene.frame_start,
            scene.frame_end,
            scene.frame_current,
            scene.render.fps,
        )
        snap[f"camera:{scene.name}"] = scene.camera.name if scene.camera else None
    for cam in bpy.data.cameras:
        snap[f"bg:{cam.name}"] = (
            cam.show_background_images,
            [
                (b.source, b.image.name if b.image else None, b.image_user.frame_duration)
                for b in cam.background_images
            ],
        )
    for image in bpy.data.images:
        if image.type == "RENDER_RESULT":
            continue
        snap[f"image:{image.name}"] = (image.source, image.filepath)
    return snap


def assert_unchanged(before: dict, after: dict) -> None:
    changed = {
        k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)
    }
    assert not changed, f"the .blend changed: {changed}"
