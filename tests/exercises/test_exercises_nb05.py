"""The notebook 05 checks accept the right answers and reject wrong ones."""

from qlearn.exercises import nb05


def test_int4_bytes():
    assert nb05.check_int4_bytes(4096 * 4096 // 2 + 4096 * 32 * 5)
    assert not nb05.check_int4_bytes(4096 * 4096 // 2)
    assert not nb05.check_int4_bytes("a lot")


def test_pack_pair():
    assert nb05.check_pack_pair(lambda q0, q1: ((q1 + 8) << 4) | (q0 + 8))
    assert not nb05.check_pack_pair(lambda q0, q1: ((q0 + 8) << 4) | (q1 + 8))
    assert not nb05.check_pack_pair(lambda q0, q1: 1 / 0)
    assert not nb05.check_pack_pair(3)


def test_naive_traffic():
    assert nb05.check_naive_traffic(9 * 4096 * 4096)
    assert not nb05.check_naive_traffic(4 * 4096 * 4096)
