"""Import a .glb with Blender's own glTF importer and dump the armature it makes (run by Blender).

    blender -b --factory-startup --python experiments/blender_armature.py -- final/animation.glb out.json [KEYS]

Writes JSON: the importer's version, the armatures and, for each bone, its name, parent,
head and tail in the armature's rest pose (edit bones, armature space, Blender's Z-up axes)
and the world head/tail of the posed bones and the skinned mesh's world vertices (as Blender
deforms it) at the animation keys KEYS (comma-separated key
indices, default 0; the scene's frame rate is set to the file's before the import, so key k
is on Blender frame k: the importer puts time s on frame s * fps). ``experiments/draw_armature.py``
draws it; this is how the README's armature picture is checked against what Blender makes.
"""

import json
import sys

import bpy

try:  # Debian's Blender 3.4 importer still says np.bool, which its numpy (>= 1.24) no longer has
    import numpy

    if "bool" not in numpy.__dict__:
        numpy.bool = bool
except ImportError:
    pass

argv = sys.argv[sys.argv.index("--") + 1:]
src, out = argv[0], argv[1]
keys = [int(x) for x in argv[2].split(",")] if len(argv) > 2 else [0]
bpy.ops.wm.read_factory_settings(use_empty=True)
with open(src, "rb") as fh:  # the file's frame rate (lasr's extras), so that keys fall on frames
    head = fh.read(20)
    doc = json.loads(fh.read(int.from_bytes(head[12:16], "little")))
fps = doc.get("extras", {}).get("lasr", {}).get("fps")
if fps and float(fps).is_integer():
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = int(fps), 1.0
bpy.ops.import_scene.gltf(filepath=src)
res = {"blender": bpy.app.version_string, "armatures": []}
scene = bpy.context.scene
for ob in bpy.data.objects:
    if ob.type != "ARMATURE":
        continue
    arm = {"name": ob.name, "parent": ob.parent.name if ob.parent else None,
           "meshes": [c.name for c in ob.children if c.type == "MESH"],
           "bones": [{"name": b.name, "parent": b.parent.name if b.parent else None,
                      "head": list(b.head_local), "tail": list(b.tail_local), "length": b.length,
                      "connected": b.use_connect} for b in ob.data.bones],
           "posed": {}}
    for k in keys:
        scene.frame_set(k)
        mw = ob.matrix_world
        arm["posed"][str(k)] = {pb.name: [list(mw @ pb.head), list(mw @ pb.tail)] for pb in ob.pose.bones}
        deps = bpy.context.evaluated_depsgraph_get()
        for child in ob.children:  # the skinned mesh as Blender deforms it (world coordinates)
            if child.type == "MESH":
                ev = child.evaluated_get(deps)
                arm.setdefault("mesh_world", {})[str(k)] = [list(child.matrix_world @ v.co) for v in ev.data.vertices]
                arm["mesh_faces"] = [list(p.vertices) for p in child.data.polygons]
    res["armatures"].append(arm)
res["frame_range"] = [scene.frame_start, scene.frame_end, scene.render.fps / scene.render.fps_base]
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)
print(f"wrote {out}: {[(a['name'], len(a['bones'])) for a in res['armatures']]}")
