"""Files: one owner for each format.

* :mod:`.obj` -- Wavefront OBJ meshes (read and write);
* :mod:`.final` -- a fit's ``final/`` folder (write and read);
* :mod:`.gltf` -- the animated, skinned glTF 2.0 rig (write);
* :mod:`.video` -- mp4 and GIF videos (write).
"""
