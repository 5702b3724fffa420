"""lasr.io.obj: the one OBJ reader and writer (exact round trips, the formats others write)."""

import numpy as np
import pytest
import torch

from lasr.geometry.mesh import icosphere
from lasr.io.obj import read_obj, write_obj


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_obj_round_trip_exact(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(50, 3, generator=g, dtype=torch.float64).to(dtype) * torch.tensor([1e-7, 1.0, 1e5], dtype=dtype)
    f = torch.randint(0, 50, (80, 3), generator=g)
    c = torch.rand(50, 3, generator=g, dtype=torch.float64).to(dtype)
    p = tmp_path / "m.obj"
    write_obj(p, v, f)
    v2, f2 = read_obj(p)
    assert torch.equal(torch.from_numpy(v2).to(dtype), v) and torch.equal(torch.from_numpy(f2), f)
    write_obj(p, v, f, colors=c)
    v3, f3, c3 = read_obj(p, colors=True)
    assert torch.equal(torch.from_numpy(v3).to(dtype), v) and torch.equal(torch.from_numpy(c3).to(dtype), c)
    vi, fi = icosphere(2, dtype=dtype)
    write_obj(p, vi.numpy(), fi.numpy())  # arrays too
    v4, f4, c4 = read_obj(p, colors=True)
    assert torch.equal(torch.from_numpy(v4).to(dtype), vi) and torch.equal(torch.from_numpy(f4), fi) and c4 is None
    write_obj(p, vi, fi, digits=6)
    assert np.abs(read_obj(p)[0] - vi.numpy()).max() <= 5e-7


def test_read_obj_formats(tmp_path):
    text = """# comment
mtllib foo.mtl
o quad
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 0.5 0.5 1
vt 0 0
vt 1 0
vn 0 0 1
usemtl bar
s off
f 1/1/1 2/2/1 3/1/1 4/2/1
f 1//1 2//1 5//1
f -4/1 -3/2 -1/1
"""
    p = tmp_path / "q.obj"
    p.write_text(text)
    v, f = read_obj(p)
    assert v.shape == (5, 3)
    assert f.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4]]
    p.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(ValueError):
        read_obj(p)
    p.write_text("v 0 0 0\nv 1 0 0\nf 1 2\n")
    with pytest.raises(ValueError, match="< 3 vertices"):
        read_obj(p)
