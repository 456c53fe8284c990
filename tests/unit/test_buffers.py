"""Stack memory reused from one job tile to the next (stacube.algo.buffers)."""

import numpy as np

from stacube.algo import buffers
from stacube.algo.buffers import MIN_BYTES, BufferPool, reuse_buffers

BIG = (4, 1024, 1024)  # 16 MiB of float32: above MIN_BYTES


def test_a_given_back_array_serves_the_next_one_of_any_dtype_that_fits():
    pool = BufferPool()
    a = pool.empty(BIG, np.float32)
    address = a.__array_interface__["data"][0]
    pool.give_back(a)
    b = pool.empty((4, 1024, 1024), np.uint16)  # half the bytes: the same buffer
    assert pool.reused == 1
    assert b.__array_interface__["data"][0] == address
    assert b.shape == (4, 1024, 1024) and b.dtype == np.uint16 and b.flags.c_contiguous
    c = pool.empty(BIG, np.float32)  # the buffer is in use: a new array
    assert not np.may_share_memory(b, c) and pool.reused == 1


def test_the_smallest_buffer_that_fits_is_taken():
    pool = BufferPool()
    small, large = pool.empty((3, 1024, 1024), np.float32), pool.empty((8, 1024, 1024), np.float32)
    pool.give_back(large, small)
    taken = pool.empty((2, 1024, 1024), np.float32)
    assert np.may_share_memory(taken, small) and not np.may_share_memory(taken, large)


def test_views_give_back_their_owner_once_and_kept_memory_is_never_given_back():
    pool = BufferPool()
    owner = pool.empty((6, 1024, 1024), np.float32)
    pool.give_back(owner[:3], owner[3:], owner[:, 10:20])  # three views of one owner: kept once
    first = pool.empty((6, 1024, 1024), np.float32)
    assert np.may_share_memory(first, owner)
    assert pool.empty((6, 1024, 1024), np.float32) is not None and pool.reused == 1

    values = pool.empty((2, 8, 1024, 1024), np.float32)  # one allocation holding two bands
    pool.give_back(values[1], keep=(values[0],))  # the other band is still in use
    fresh = pool.empty((8, 1024, 1024), np.float32)
    assert not np.may_share_memory(fresh, values) and pool.reused == 1


def test_memory_the_pool_did_not_hand_out_is_left_alone():
    pool = BufferPool()
    small = pool.empty((MIN_BYTES // 2,), np.uint8)  # below the threshold: numpy's own
    foreign = np.empty((MIN_BYTES * 2,), np.uint8)  # allocated elsewhere (odc-stac's arrays)
    wrapped = np.frombuffer(bytearray(MIN_BYTES * 2), dtype=np.uint8)  # owned by a bytearray
    pool.give_back(small, foreign, wrapped, None, "not an array")
    assert pool._free == []
    other = BufferPool()
    pool.give_back(other.empty((MIN_BYTES,), np.uint8))  # another pool's
    assert pool._free == []
    strided = pool.empty((2048, 2048, 4), np.float32)[:, :, 0]  # a view: its owner comes back
    pool.give_back(strided)
    pool.empty((2048, 2048, 4), np.float32)
    assert pool.reused == 1


def test_free_buffers_are_bounded_and_the_largest_dropped_first():
    pool = BufferPool(max_free_bytes=40 << 20)
    a, b, c = (pool.empty((n, 1024, 1024), np.float32) for n in (3, 4, 5))  # 12, 16, 20 MiB
    pool.give_back(a, b, c)
    assert sorted(x.nbytes for x in pool._free) == [12 << 20, 16 << 20]


def test_module_functions_use_the_active_pool_only():
    a = buffers.empty(BIG, np.float32)
    buffers.give_back(a)  # no pool: nothing kept
    with reuse_buffers() as pool:
        with reuse_buffers() as inner:  # nested blocks share one pool
            assert inner is pool
        x = buffers.empty(BIG, np.float32)
        buffers.give_back(x)
        y = buffers.empty(BIG, np.float32)
        assert np.may_share_memory(x, y) and pool.reused == 1
        buffers.give_back(y)
    assert pool._free == [] and buffers._pool.current is None  # released when the last block ended
    z = buffers.empty(BIG, np.float32)
    assert not np.may_share_memory(z, y)
