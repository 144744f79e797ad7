"""Merkle trees (RFC 6962 / RFC 9162): tree hashes, proofs, and the transparency-dev vectors."""

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "merkle"

# The RFC 6962 reference leaves used by the Certificate Transparency and transparency-dev suites.
REFERENCE_LEAVES = [
    bytes.fromhex(value)
    for value in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_LEAF_HASHES = [leaf_hash(data) for data in REFERENCE_LEAVES]

# Tree hashes of the first n reference leaves, copied from transparency-dev/merkle
# proof/verify_test.go (`roots`, the well-known CT values); size 0 is SHA-256 of "". They are not
# produced by the code under test.
REFERENCE_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

# Distinct leaves for round trips: with duplicate leaf hashes a proof for one index could
# legitimately verify at another, which would blur the "wrong index fails" checks.
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(4096)]
PREFIX_ROOTS = [root(LEAVES[:size]) for size in range(130)]
ROUND_TRIP_SIZES = range(1, 65)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _children(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


# Literal transcriptions of RFC 9162, written without domain.merkle, as independent oracles.


def _split(size: int) -> int:
    k = 1
    while k * 2 < size:
        k *= 2
    return k


def _rfc_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH of §2.1.1 by its recursive definition (hashes are leaf hashes)."""
    if not hashes:
        return _sha256(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _children(_rfc_mth(hashes[:k]), _rfc_mth(hashes[k:]))


def _rfc_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return [*_rfc_path(m, hashes[:k]), _rfc_mth(hashes[k:])]
    return [*_rfc_path(m - k, hashes[k:]), _rfc_mth(hashes[:k])]


def _rfc_subproof(m: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of §2.1.4.1."""
    if m == len(hashes):
        return [] if whole else [_rfc_mth(hashes)]
    k = _split(len(hashes))
    if m <= k:
        return [*_rfc_subproof(m, hashes[:k], whole), _rfc_mth(hashes[k:])]
    return [*_rfc_subproof(m - k, hashes[k:], False), _rfc_mth(hashes[:k])]


def _rfc_inclusion_ok(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], tree_root: bytes
) -> bool:
    """The verification algorithm of §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _children(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _children(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == tree_root


def _rfc_consistency_ok(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """The verification algorithm of §2.1.4.2, behind transparency-dev's checks on the sizes."""
    # §2.1.4.2 assumes 0 < first < second; these are the reference implementation's rules.
    if not 0 < size1 <= size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _children(c, fr), _children(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _children(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == root1 and sr == root2 and sn == 0


def _inclusion_accepted(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], tree_root: bytes
) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, tree_root)
    except ProofError:
        return False
    return True


def _consistency_accepted(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        return False
    return True


def _flipped(proof: Sequence[bytes], position: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[position])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [bytes(changed) if i == position else value for i, value in enumerate(proof)]


# The vectors: copies of transparency-dev/merkle testdata (see tests/data/merkle/README.md).


def _vector_names(kind: str) -> list[str]:
    return sorted(path.relative_to(DATA).as_posix() for path in (DATA / kind).rglob("*.json"))


INCLUSION_VECTORS = _vector_names("inclusion")
CONSISTENCY_VECTORS = _vector_names("consistency")


def _load(name: str, fields: set[str]) -> dict[str, object]:
    loaded = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    assert set(loaded) == fields | {"proof", "desc", "wantErr"}, name
    return loaded


def _integer(case: dict[str, object], key: str) -> int:
    value = case[key]
    assert type(value) is int
    return value


def _bytes(value: object) -> bytes:
    assert isinstance(value, str)
    return base64.b64decode(value, validate=True)


def _proof(case: dict[str, object]) -> list[bytes]:
    value = case["proof"]
    if value is None:
        return []
    assert isinstance(value, list)
    return [_bytes(item) for item in value]


def _want_error(case: dict[str, object]) -> bool:
    value = case["wantErr"]
    assert isinstance(value, bool)
    return value


@dataclass(frozen=True)
class InclusionCase:
    leaf_index: int
    tree_size: int
    root: bytes
    leaf_hash: bytes
    proof: list[bytes]
    want_error: bool

    @classmethod
    def load(cls, name: str) -> Self:
        case = _load(name, {"leafIdx", "treeSize", "root", "leafHash"})
        return cls(
            leaf_index=_integer(case, "leafIdx"),
            tree_size=_integer(case, "treeSize"),
            root=_bytes(case["root"]),
            leaf_hash=_bytes(case["leafHash"]),
            proof=_proof(case),
            want_error=_want_error(case),
        )


@dataclass(frozen=True)
class ConsistencyCase:
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes]
    want_error: bool

    @classmethod
    def load(cls, name: str) -> Self:
        case = _load(name, {"size1", "size2", "root1", "root2"})
        return cls(
            size1=_integer(case, "size1"),
            size2=_integer(case, "size2"),
            root1=_bytes(case["root1"]),
            root2=_bytes(case["root2"]),
            proof=_proof(case),
            want_error=_want_error(case),
        )


def test_every_vector_was_copied() -> None:
    assert len(INCLUSION_VECTORS) == 98
    assert len(CONSISTENCY_VECTORS) == 98
    assert (DATA / "LICENSE").is_file()
    assert (DATA / "README.md").is_file()


# Hashing.


def test_hashes_are_domain_separated_sha256() -> None:
    assert EMPTY_ROOT.hex() == REFERENCE_ROOTS[0]
    assert leaf_hash(b"abc") == _sha256(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == _sha256(b"\x01" + b"L" * 32 + b"R" * 32)
    assert leaf_hash(b"\x01" + b"L" * 32 + b"R" * 32) != node_hash(b"L" * 32, b"R" * 32)
    assert len(leaf_hash(b"")) == HASH_SIZE
    assert issubclass(ProofError, ValueError)


@pytest.mark.parametrize("size", sorted(REFERENCE_ROOTS))
def test_tree_hash_of_the_reference_leaves(size: int) -> None:
    assert root(REFERENCE_LEAF_HASHES[:size]).hex() == REFERENCE_ROOTS[size]
    builder = TreeBuilder()
    builder.extend(REFERENCE_LEAF_HASHES[:size])
    assert builder.root().hex() == REFERENCE_ROOTS[size]


def test_tree_hash_matches_the_rfc_recursion() -> None:
    for size in range(130):
        assert PREFIX_ROOTS[size] == _rfc_mth(LEAVES[:size]), size


def test_tree_builder_agrees_with_root_at_every_size() -> None:
    builder = TreeBuilder()
    for size in range(301):
        assert builder.size == size
        assert builder.root() == root(LEAVES[:size]), size
        builder.append(LEAVES[size])


def test_a_million_streamed_leaves() -> None:
    count = 1_000_000
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(count)]
    builder = TreeBuilder()
    builder.extend(iter(leaves))
    assert builder.size == count
    assert builder.root() == root(leaves)


def test_leaf_hashes_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="leaf_hash"):
        root([*LEAVES[:3], b"raw entry"])
    with pytest.raises(ValueError, match="bytes"):
        TreeBuilder().append(b"raw entry")


def test_proof_generation_refuses_impossible_arguments() -> None:
    for index in (-1, 5, 6):
        with pytest.raises(ValueError, match="outside"):
            inclusion_proof(LEAVES[:5], index)
    for size1 in (-1, 0, 6):
        with pytest.raises(ValueError, match="size1"):
            consistency_proof(LEAVES[:5], size1)


# The vectors.


@pytest.mark.parametrize("name", INCLUSION_VECTORS)
def test_inclusion_vector(name: str) -> None:
    case = InclusionCase.load(name)
    args = (case.leaf_hash, case.leaf_index, case.tree_size, case.proof)
    if case.want_error:
        with pytest.raises(ProofError):
            verify_inclusion(*args, case.root)
    else:
        verify_inclusion(*args, case.root)
        assert root_from_inclusion_proof(*args) == case.root


@pytest.mark.parametrize("name", CONSISTENCY_VECTORS)
def test_consistency_vector(name: str) -> None:
    case = ConsistencyCase.load(name)
    if case.want_error:
        with pytest.raises(ProofError):
            verify_consistency(case.size1, case.size2, case.proof, case.root1, case.root2)
    else:
        verify_consistency(case.size1, case.size2, case.proof, case.root1, case.root2)
        found = root_from_consistency_proof(case.size1, case.size2, case.proof, case.root1)
        assert found == case.root2


HAPPY_PATHS = [name for name in INCLUSION_VECTORS + CONSISTENCY_VECTORS if "happy-path" in name]


@pytest.mark.parametrize("name", HAPPY_PATHS)
def test_generated_proofs_equal_the_happy_path_vectors(name: str) -> None:
    # These vectors are over the reference leaves, so the generators must reproduce them.
    if name.startswith("inclusion/"):
        inclusion = InclusionCase.load(name)
        leaves = REFERENCE_LEAF_HASHES[: inclusion.tree_size]
        assert inclusion.root.hex() == REFERENCE_ROOTS[inclusion.tree_size]
        assert inclusion.leaf_hash == leaves[inclusion.leaf_index]
        assert inclusion_proof(leaves, inclusion.leaf_index) == inclusion.proof
    else:
        consistency = ConsistencyCase.load(name)
        leaves = REFERENCE_LEAF_HASHES[: consistency.size2]
        assert consistency.root1.hex() == REFERENCE_ROOTS[consistency.size1]
        assert consistency.root2.hex() == REFERENCE_ROOTS[consistency.size2]
        assert consistency_proof(leaves, consistency.size1) == consistency.proof


def test_happy_paths_cover_both_kinds() -> None:
    assert sum(name.startswith("inclusion/") for name in HAPPY_PATHS) == 5
    assert sum(name.startswith("consistency/") for name in HAPPY_PATHS) == 5


# Generation against the RFC text, and round trips.


def test_generated_proofs_equal_the_rfc_recursion() -> None:
    for size in range(1, 34):
        leaves = LEAVES[:size]
        for index in range(size):
            assert inclusion_proof(leaves, index) == _rfc_path(index, leaves), (index, size)
        for size1 in range(1, size + 1):
            expected = _rfc_subproof(size1, leaves, True)
            assert consistency_proof(leaves, size1) == expected, (size1, size)


@pytest.mark.parametrize("size", ROUND_TRIP_SIZES)
def test_inclusion_round_trip(size: int) -> None:
    leaves = LEAVES[:size]
    tree_root = PREFIX_ROOTS[size]
    for index in range(size):
        leaf = leaves[index]
        proof = inclusion_proof(leaves, index)
        verify_inclusion(leaf, index, size, proof, tree_root)
        assert root_from_inclusion_proof(leaf, index, size, proof) == tree_root
        assert _rfc_inclusion_ok(leaf, index, size, proof, tree_root)

        for position in range(len(proof)):
            bad = _flipped(proof, position, (index + position * 37) % 256)
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, tree_root)
        for wrong_index in sorted({index - 1, index + 1, index ^ 1, index ^ 2} - {index}):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, wrong_index, size, proof, tree_root)
        if size > 1:
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index - 1], index, size, proof, tree_root)
        for wrong_size in (size * 2, size // 2):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, wrong_size, proof, tree_root)
        # A neighbouring size can give the same proof shape, and then RFC 9162's own algorithm
        # accepts it too (see test_an_inclusion_proof_does_not_pin_the_tree_size): require the
        # same answer as §2.1.3.2.
        for wrong_size in (size - 1, size + 1):
            accepted = _inclusion_accepted(leaf, index, wrong_size, proof, tree_root)
            assert accepted == _rfc_inclusion_ok(leaf, index, wrong_size, proof, tree_root)


@pytest.mark.parametrize("size2", ROUND_TRIP_SIZES)
def test_consistency_round_trip(size2: int) -> None:
    leaves = LEAVES[:size2]
    root2 = PREFIX_ROOTS[size2]
    for size1 in range(1, size2 + 1):
        root1 = PREFIX_ROOTS[size1]
        proof = consistency_proof(leaves, size1)
        verify_consistency(size1, size2, proof, root1, root2)
        assert root_from_consistency_proof(size1, size2, proof, root1) == root2
        assert _rfc_consistency_ok(size1, size2, proof, root1, root2)

        for position in range(len(proof)):
            bad = _flipped(proof, position, (size1 + position * 37) % 256)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, bad, root1, root2)
        for wrong_size1 in sorted({size1 - 1, size1 + 1, size1 ^ 2} - {size1}):
            with pytest.raises(ProofError):
                verify_consistency(wrong_size1, size2, proof, root1, root2)
        for wrong_size2 in (size2 * 2, size2 // 2):
            with pytest.raises(ProofError):
                verify_consistency(size1, wrong_size2, proof, root1, root2)
        if size1 != size2:
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, proof, root2, root1)
        # As for inclusion, a neighbouring size2 can share the proof shape; match §2.1.4.2.
        for wrong_size2 in (size2 - 1, size2 + 1):
            accepted = _consistency_accepted(size1, wrong_size2, proof, root1, root2)
            assert accepted == _rfc_consistency_ok(size1, wrong_size2, proof, root1, root2)


def test_an_inclusion_proof_does_not_pin_the_tree_size() -> None:
    # RFC 9162 proofs authenticate the root, not the size: leaf 0's path in a tree of 3 has
    # the same shape as in a tree of 4, so both verifiers accept the claim "size 4" against the
    # size-3 root. Whatever publishes a root must sign the size with it (as checkpoints do).
    proof = inclusion_proof(LEAVES[:3], 0)
    verify_inclusion(LEAVES[0], 0, 4, proof, PREFIX_ROOTS[3])
    assert _rfc_inclusion_ok(LEAVES[0], 0, 4, proof, PREFIX_ROOTS[3])
    consistency = consistency_proof(LEAVES[:3], 2)
    verify_consistency(2, 4, consistency, PREFIX_ROOTS[2], PREFIX_ROOTS[3])


def test_verifiers_refuse_negative_numbers() -> None:
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(LEAVES[0], -1, 1, [], PREFIX_ROOTS[1])
    with pytest.raises(ProofError, match="negative"):
        verify_consistency(-1, 1, [], PREFIX_ROOTS[1], PREFIX_ROOTS[1])


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_random_trees_round_trip(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=len(LEAVES)), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    size1 = data.draw(st.integers(min_value=1, max_value=size), label="size1")
    leaves = LEAVES[:size]
    tree_root = root(leaves)
    old_root = root(leaves[:size1])

    proof = inclusion_proof(leaves, index)
    verify_inclusion(leaves[index], index, size, proof, tree_root)
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="pos")
        bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, _flipped(proof, position, bit), tree_root)
    if size > 1:
        other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], other, size, proof, tree_root)

    proof = consistency_proof(leaves, size1)
    verify_consistency(size1, size, proof, old_root, tree_root)
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="pos")
        bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
        with pytest.raises(ProofError):
            verify_consistency(size1, size, _flipped(proof, position, bit), old_root, tree_root)
    if size1 < size:
        with pytest.raises(ProofError):
            verify_consistency(size1 + 1, size, proof, old_root, tree_root)
