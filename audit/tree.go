package audit

import (
	"crypto"
	_ "crypto/sha256" // registers SHA-256 for the RFC 6962 hasher
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Hasher is the RFC 6962 SHA-256 hasher used for every leaf and node.
var Hasher = rfc6962.New(crypto.SHA256)

// LeafHash returns the Merkle leaf hash of an entry's bytes.
func LeafHash(entry []byte) []byte { return Hasher.HashLeaf(entry) }

// Tree is an in-memory Merkle tree over leaf hashes that keeps every perfect subtree's hash, so
// roots and proofs for any size up to Size cost O(log n). It is not safe for concurrent use.
type Tree struct {
	// levels[l][i] is the hash of the perfect subtree of height l covering leaves
	// [i<<l, (i+1)<<l).
	levels [][][]byte
	rf     compact.RangeFactory
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{levels: [][][]byte{nil}, rf: compact.RangeFactory{Hash: Hasher.HashChildren}}
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.levels[0])) }

// Leaf returns the hash of leaf i. Requires i < Size().
func (t *Tree) Leaf(i uint64) []byte { return t.levels[0][i] }

// Append adds a leaf hash.
func (t *Tree) Append(leafHash []byte) {
	t.levels[0] = append(t.levels[0], leafHash)
	for l := 0; len(t.levels[l])%2 == 0; l++ {
		if l+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		n := len(t.levels[l])
		t.levels[l+1] = append(t.levels[l+1], Hasher.HashChildren(t.levels[l][n-2], t.levels[l][n-1]))
	}
}

func (t *Tree) node(id compact.NodeID) ([]byte, error) {
	if int(id.Level) >= len(t.levels) || id.Index >= uint64(len(t.levels[id.Level])) {
		return nil, fmt.Errorf("audit: node %+v is not in a tree of size %d", id, t.Size())
	}
	return t.levels[id.Level][id.Index], nil
}

func (t *Tree) nodes(ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := t.node(id)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// Root returns the root hash of the first size leaves. Requires size <= Size().
func (t *Tree) Root(size uint64) ([]byte, error) {
	if size > t.Size() {
		return nil, fmt.Errorf("audit: root of size %d requested from a tree of size %d", size, t.Size())
	}
	if size == 0 {
		return Hasher.EmptyRoot(), nil
	}
	hashes, err := t.nodes(compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	r, err := t.rf.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// InclusionProof proves leaf index is in the tree of the given size.
// Requires index < size <= Size().
func (t *Tree) InclusionProof(index, size uint64) ([][]byte, error) {
	if index >= size || size > t.Size() {
		return nil, fmt.Errorf("audit: inclusion of leaf %d in size %d needs index < size <= %d", index, size, t.Size())
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return t.rehash(n)
}

// ConsistencyProof proves the tree of size1 is a prefix of the tree of size2.
// Requires size1 <= size2 <= Size().
func (t *Tree) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 || size2 > t.Size() {
		return nil, fmt.Errorf("audit: consistency from %d to %d needs size1 <= size2 <= %d", size1, size2, t.Size())
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return t.rehash(n)
}

func (t *Tree) rehash(n proof.Nodes) ([][]byte, error) {
	hashes, err := t.nodes(n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hashes, Hasher.HashChildren)
}

// VerifyInclusion checks an inclusion proof against a root.
func VerifyInclusion(index, size uint64, leafHash []byte, p [][]byte, root []byte) error {
	return proof.VerifyInclusion(Hasher, index, size, leafHash, p, root)
}

// VerifyConsistency checks a consistency proof between two roots.
func VerifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(Hasher, size1, size2, p, root1, root2)
}
