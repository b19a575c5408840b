"""Scene pieces the Blender tests build again and again: a camera at the origin looking down -Z,
boxes, a grease pencil object for drags (with a stroke material), stroke points and a flat
Workbench render. Plain functions on a bpy module and a scene, so tests and scripts share them."""

from __future__ import annotations

import numpy as np

BOX_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def add_camera(bpy, scene, name: str = "Cam"):
    """A camera object at the origin (Blender's default orientation: looking down -Z), made the
    scene camera."""
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def add_box(bpy, scene, name: str, centre, size, colour=None):
    """An axis-aligned box mesh object of `size` (x, y, z) scene units centred at `centre`, with a
    material of diffuse `colour` (r, g, b) when one is given."""
    sx, sy, sz = (s / 2 for s in size)
    verts = [(x * sx, y * sy, z * sz) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], BOX_FACES)
    if colour is not None:
        mat = bpy.data.materials.new(name)
        mat.diffuse_color = (*colour, 1.0)
        mesh.materials.append(mat)
    ob = bpy.data.objects.new(name, mesh)
    ob.location = centre
    scene.collection.objects.link(ob)
    return ob


def add_drag_object(bpy, scene, compat, name: str = "Drags"):
    """A grease pencil object (this Blender's grease pencil data, through compat) with one stroke
    material, linked to the scene. Returns (object, data)."""
    gpd = compat.grease_pencil_data().new(name)
    mat = bpy.data.materials.new(name + "Stroke")
    bpy.data.materials.create_gpencil_data(mat)
    gpd.materials.append(mat)
    gp = bpy.data.objects.new(name, gpd)
    scene.collection.objects.link(gp)
    return gp, gpd


def set_stroke_points(drawing, points, radius: float | None = None) -> None:
    """Write all point positions (P, 3) layer space of a drawing's strokes (in stroke order), and
    every point's radius when given."""
    points = np.asarray(points, np.float32)
    drawing.attributes["position"].data.foreach_set("vector", points.ravel())
    if radius is not None:
        radii = drawing.attributes.get("radius") or drawing.attributes.new("radius", "FLOAT", "POINT")
        radii.data.foreach_set("value", np.full(len(points), radius, np.float32))


def flat_workbench(scene, width: int, height: int, color_type: str = "MATERIAL") -> None:
    """Render with Workbench, flat light, at width x height and 100 %: every surface one colour."""
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = color_type
