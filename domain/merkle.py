"""RFC 9162 (RFC 6962) Merkle tree hashes, inclusion and consistency proofs, and their checks."""

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ProofError",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

# RFC 9162 §2.1.1: the one-byte prefixes separate leaf hashes from node hashes, so a node can
# never be passed off as a leaf (second-preimage resistance).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """Raised when an inclusion or consistency proof does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    # Passing raw entries instead of leaf hashes is an easy mistake that would silently give a
    # root nobody else can reproduce.
    for position, value in enumerate(leaf_hashes):
        if len(value) != HASH_SIZE:
            raise ValueError(
                f"leaf hash {position} has {len(value)} bytes, want {HASH_SIZE}; "
                "pass leaf_hash(entry), not the entry"
            )


def _range_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    # Pairing level by level and carrying an unpaired last node up unchanged gives exactly the
    # RFC 9162 §2.1.1 split-at-largest-power-of-two tree, with each node hashed once and no
    # recursion.
    if start == end:
        return EMPTY_ROOT
    level = list(leaf_hashes[start:end])
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(size: int) -> int:
    # RFC 9162 §2.1.1: k is the largest power of two strictly smaller than size (size > 1).
    return 1 << ((size - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes."""
    _check_leaf_hashes(leaf_hashes)
    return _range_root(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path (RFC 9162 §2.1.3.1) of leaf ``index``, lowest sibling first."""
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    _check_leaf_hashes(leaf_hashes)
    # PATH(m, D[n]) = PATH(...) : MTH(sibling), so walking down from the top meets siblings in
    # reverse order of the proof.
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            siblings.append(_range_root(leaf_hashes, middle, end))
            end = middle
        else:
            siblings.append(_range_root(leaf_hashes, start, middle))
            start = middle
    siblings.reverse()
    return siblings


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """Return the consistency proof (RFC 9162 §2.1.4.1) from ``size1`` to ``len(leaf_hashes)``."""
    size2 = len(leaf_hashes)
    if not 0 < size1 <= size2:
        raise ValueError(f"size1 must satisfy 0 < size1 <= {size2}, got {size1}")
    _check_leaf_hashes(leaf_hashes)
    # SUBPROOF(m, D[n], b) likewise appends the sibling after the recursive part; walking down
    # collects the nodes top first, so they are reversed at the end.
    nodes: list[bytes] = []
    start, end = 0, size2
    whole_old_tree = True  # the flag b of SUBPROOF: still on the path to the old root
    while end != size1:
        middle = start + _split(end - start)
        if size1 <= middle:
            nodes.append(_range_root(leaf_hashes, middle, end))
            end = middle
        else:
            nodes.append(_range_root(leaf_hashes, start, middle))
            start = middle
            whole_old_tree = False
    if not whole_old_tree:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the verifier knows only the old root, not this
        # subtree, unless the subtree is the whole old tree.
        nodes.append(_range_root(leaf_hashes, start, end))
    nodes.reverse()
    return nodes


def _check_sizes(**sizes: int) -> None:
    # Go's uint64 cannot be negative; Python ints can, and a negative size would make the bit
    # arithmetic below meaningless.
    for name, value in sizes.items():
        if value < 0:
            raise ProofError(f"{name} must not be negative, got {value}")


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    # Splits the proof where the paths to leaves ``index`` and ``size - 1`` diverge: below that
    # level siblings may be on either side, above it they are all on the left (the border).
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(proof):
        seed = node_hash(seed, sibling) if index >> level & 1 == 0 else node_hash(sibling, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Only left siblings existed in the older tree, so right siblings are skipped to rebuild the
    # older version of the subtree.
    for level, sibling in enumerate(proof):
        if (index >> level) & 1 == 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _require_match(calculated: bytes, expected: bytes, what: str) -> None:
    if calculated != expected:
        raise ProofError(
            f"calculated {what} {calculated.hex()} does not match expected {expected.hex()}"
        )


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by an inclusion proof (RFC 9162 §2.1.3.2), or raise ProofError."""
    # Mirrors RootFromInclusionProof of transparency-dev/merkle proof/verify.go.
    _check_sizes(index=index, tree_size=tree_size)
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not below tree size {tree_size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
    inner, border = _decomp_incl_proof(index, tree_size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, want {inner + border} "
            f"for leaf {index} of {tree_size}"
        )
    calculated = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(calculated, proof[inner:])


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree with ``root``; raise ProofError."""
    calculated = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    _require_match(calculated, root, "root")


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """Return the size2 root implied by a consistency proof (RFC 9162 §2.1.4.2) and root1."""
    # Mirrors RootFromConsistencyProof of transparency-dev/merkle proof/verify.go, including the
    # order of the early checks, which decides the size1 == size2 == 0 case.
    _check_sizes(size1=size1, size2=size2)
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        # Every tree extends the empty tree, so such a proof would show nothing; rejecting it
        # stops a caller from mistaking it for evidence.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError(f"size1 == size2 ({size1}) but the proof has {len(proof)} hashes")
        return root1
    if not proof:
        raise ProofError(f"empty consistency proof for sizes {size1} and {size2}")

    # The proof is the tail of the inclusion proof of leaf size1 - 1 in the new tree, starting at
    # the level of the largest full subtree that ends the old tree.
    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift

    # That subtree's root opens the proof, unless it is the whole old tree (size1 a power of two):
    # then the verifier already holds it as root1 and RFC 9162 §2.1.4.1 leaves it out.
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, want {start + inner + border} "
            f"for sizes {size1} and {size2}"
        )
    path = proof[start:]
    mask = (size1 - 1) >> shift

    calculated1 = _chain_inner_right(seed, path[:inner], mask)
    calculated1 = _chain_border_right(calculated1, path[inner:])
    _require_match(calculated1, root1, "root1")

    calculated2 = _chain_inner(seed, path[:inner], mask)
    return _chain_border_right(calculated2, path[inner:])


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree with ``root2`` extends the tree with ``root1``; raise ProofError."""
    calculated = root_from_consistency_proof(size1, size2, proof, root1)
    _require_match(calculated, root2, "root2")


class TreeBuilder:
    """Merkle Tree Hash of leaves appended one at a time, in O(log n) memory."""

    def __init__(self) -> None:
        """Start an empty tree."""
        # Roots of the perfect subtrees that tile the leaves so far, largest (leftmost) first:
        # one per set bit of the size, which is why memory stays logarithmic.
        self._subtrees: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Return the number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (not raw data: pass ``leaf_hash(entry)``)."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
        self._subtrees.append(leaf_hash)
        self._size += 1
        # Each trailing one bit that the increment turned to zero is a pair of equal perfect
        # subtrees that now merge into one of twice the size.
        carry = self._size
        while carry & 1 == 0:
            right = self._subtrees.pop()
            left = self._subtrees.pop()
            self._subtrees.append(node_hash(left, right))
            carry >>= 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append every leaf hash of an iterable, in order."""
        for value in leaf_hashes:
            self.append(value)

    def root(self) -> bytes:
        """Return the Merkle Tree Hash (RFC 9162 §2.1.1) of the leaves appended so far."""
        if not self._subtrees:
            return EMPTY_ROOT
        # RFC 9162 §2.1.1 splits off the largest perfect subtree on the left first, so the
        # smaller subtrees fold from the right.
        result = self._subtrees[-1]
        for subtree in reversed(self._subtrees[:-1]):
            result = node_hash(subtree, result)
        return result
