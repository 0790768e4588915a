import torch

from capdist.compactor import Compactor, DiagonalCompactor, LinearCompactor


def test_compactors_start_as_identity():
    x = torch.randn(2, 5, 3, 3)
    assert torch.allclose(Compactor(5)(x), x)
    assert torch.allclose(DiagonalCompactor(5)(x), x)
    v = torch.randn(4, 7, 5)
    assert torch.allclose(LinearCompactor(5)(v), v)


def test_row_norms_match_definition():
    c = Compactor(3)
    with torch.no_grad():
        c.weight.copy_(torch.arange(9.0).view(3, 3, 1, 1))
    assert torch.allclose(c.row_sq_norms(), torch.tensor([0 + 1 + 4, 9 + 16 + 25, 36 + 49 + 64.0]))
    d = DiagonalCompactor(3)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([2.0, -3.0, 0.5]).view(3, 1, 1, 1))
    assert torch.allclose(d.row_sq_norms(), torch.tensor([4.0, 9.0, 0.25]))
    assert torch.allclose(d.matrix(), torch.diag(torch.tensor([2.0, -3.0, 0.5])))
