// Package pmap is a persistent ordered map from uint64 keys to values: a
// 32-way trie on the key's bits whose nodes the versions of a map share.
//
// A Map is immutable. Edit starts a new version: it copies a node the
// first time it changes it (the path from the root to each key it sets or
// deletes) and changes its own copies in place afterwards, so a version
// costs at most one path of at most 13 nodes per changed key, and
// usually much less (keys close together share their path), however
// many entries the map holds. Nodes are compact (a bitmap and one slot
// per present child or value), so a map's size follows its entries, not
// the spread of its keys.
//
// A Map may be read from many goroutines at once, and any number of Edits
// of one Map may run at once; one Edit must not be used from two
// goroutines at the same time.
package pmap

import (
	"iter"
	"math/bits"
)

const (
	levelBits = 5
	width     = 1 << levelBits
	slotMask  = width - 1
	// maxShift is the shift of the level that holds a key's top bits.
	maxShift = 60
)

// Map is one version of a map. The zero value is an empty map.
type Map[V any] struct {
	root  *node[V]
	shift uint // the root's level: keys below 1<<(shift+levelBits) fit
	n     int
}

// node is a branch (shift > 0: kids) or a leaf (shift 0: vals); bitmap
// says which of its 32 slots are present, in slot order.
type node[V any] struct {
	owner  *token
	bitmap uint32
	kids   []*node[V]
	vals   []V
}

// token marks the nodes one Edit made, which only it may change. It has a
// field so that every token is a distinct allocation.
type token struct{ _ byte }

// Len returns the number of entries.
func (m Map[V]) Len() int { return m.n }

// Get returns the value of key k.
func (m Map[V]) Get(k uint64) (V, bool) {
	var zero V
	if m.root == nil || !fits(k, m.shift) {
		return zero, false
	}
	n := m.root
	for shift := m.shift; ; shift -= levelBits {
		s := slot(k, shift)
		if n.bitmap&(1<<s) == 0 {
			return zero, false
		}
		i := n.index(s)
		if shift == 0 {
			return n.vals[i], true
		}
		n = n.kids[i]
	}
}

// Max returns the greatest key.
func (m Map[V]) Max() (uint64, bool) {
	if m.root == nil {
		return 0, false
	}
	var k uint64
	n := m.root
	for shift := m.shift; ; shift -= levelBits {
		s := uint(31 - bits.LeadingZeros32(n.bitmap))
		k |= uint64(s) << shift
		if shift == 0 {
			return k, true
		}
		n = n.kids[len(n.kids)-1]
	}
}

// All yields the entries in ascending key order.
func (m Map[V]) All() iter.Seq2[uint64, V] {
	return func(yield func(uint64, V) bool) {
		if m.root != nil {
			m.root.walk(0, m.shift, yield)
		}
	}
}

func (n *node[V]) walk(prefix uint64, shift uint, yield func(uint64, V) bool) bool {
	b := n.bitmap
	for i := 0; b != 0; i++ {
		s := uint(bits.TrailingZeros32(b))
		b &= b - 1
		k := prefix | uint64(s)<<shift
		if shift == 0 {
			if !yield(k, n.vals[i]) {
				return false
			}
		} else if !n.kids[i].walk(k, shift-levelBits, yield) {
			return false
		}
	}
	return true
}

// fits reports whether key k fits under a root at shift.
func fits(k uint64, shift uint) bool {
	return shift >= maxShift || k>>(shift+levelBits) == 0
}

func slot(k uint64, shift uint) uint { return uint(k>>shift) & slotMask }

// index is the position of slot s among the present slots.
func (n *node[V]) index(s uint) int { return bits.OnesCount32(n.bitmap & (1<<s - 1)) }

// Edit is a new version of a Map in the making.
type Edit[V any] struct {
	m Map[V]
	// tok owns the nodes this edit made; nil until it makes one (an edit
	// that changes nothing, or nothing since Map, allocates none).
	tok *token
}

// Edit starts a new version of m; m itself never changes.
func (m Map[V]) Edit() *Edit[V] { return &Edit[V]{m: m} }

// Map returns the version edited so far. Later changes through e do not
// affect it.
func (e *Edit[V]) Map() Map[V] {
	e.tok = nil // the nodes made so far now belong to the returned Map
	return e.m
}

// token returns the token of the nodes this edit makes, made the first
// time a change needs it.
func (e *Edit[V]) token() *token {
	if e.tok == nil {
		e.tok = new(token)
	}
	return e.tok
}

// Len returns the number of entries of the version being edited.
func (e *Edit[V]) Len() int { return e.m.n }

// Get returns the value of key k in the version being edited.
func (e *Edit[V]) Get(k uint64) (V, bool) { return e.m.Get(k) }

// Max returns the greatest key of the version being edited.
func (e *Edit[V]) Max() (uint64, bool) { return e.m.Max() }

// own returns n if this edit made it, else a copy that it owns.
func (e *Edit[V]) own(n *node[V]) *node[V] {
	if n.owner == e.tok && e.tok != nil {
		return n
	}
	c := &node[V]{owner: e.token(), bitmap: n.bitmap}
	if n.kids != nil {
		c.kids = append(make([]*node[V], 0, len(n.kids)+1), n.kids...)
	}
	if n.vals != nil {
		c.vals = append(make([]V, 0, len(n.vals)+1), n.vals...)
	}
	return c
}

// Set sets the value of key k.
func (e *Edit[V]) Set(k uint64, v V) {
	m := &e.m
	tok := e.token()
	if m.root == nil {
		m.shift = 0
		for !fits(k, m.shift) {
			m.shift += levelBits
		}
		m.root = &node[V]{owner: tok}
	}
	for !fits(k, m.shift) {
		// The root covers the keys below 1<<(shift+levelBits): slot 0 of
		// a root one level up.
		m.root = &node[V]{owner: tok, bitmap: 1, kids: []*node[V]{m.root}}
		m.shift += levelBits
	}
	m.root = e.own(m.root)
	n := m.root
	for shift := m.shift; ; shift -= levelBits {
		s := slot(k, shift)
		i := n.index(s)
		present := n.bitmap&(1<<s) != 0
		if shift == 0 {
			if present {
				n.vals[i] = v
				return
			}
			n.bitmap |= 1 << s
			n.vals = insertAt(n.vals, i, v)
			m.n++
			return
		}
		var kid *node[V]
		if present {
			kid = e.own(n.kids[i])
			n.kids[i] = kid
		} else {
			kid = &node[V]{owner: tok}
			n.bitmap |= 1 << s
			n.kids = insertAt(n.kids, i, kid)
		}
		n = kid
	}
}

// Delete removes key k and reports whether it was present.
func (e *Edit[V]) Delete(k uint64) bool {
	m := &e.m
	if _, ok := m.Get(k); !ok {
		return false
	}
	m.root = e.own(m.root)
	var path [maxShift/levelBits + 1]*node[V]
	depth := 0
	n := m.root
	for shift := m.shift; ; shift -= levelBits {
		path[depth] = n
		depth++
		if shift == 0 {
			break
		}
		i := n.index(slot(k, shift))
		kid := e.own(n.kids[i])
		n.kids[i] = kid
		n = kid
	}
	// Remove the value, then every node it leaves empty.
	for d, shift := depth-1, uint(0); d >= 0; d, shift = d-1, shift+levelBits {
		n := path[d]
		s := slot(k, shift)
		i := n.index(s)
		n.bitmap &^= 1 << s
		if shift == 0 {
			n.vals = removeAt(n.vals, i)
		} else {
			n.kids = removeAt(n.kids, i)
		}
		if n.bitmap != 0 {
			break
		}
		if d == 0 {
			m.root = nil
		}
	}
	m.n--
	return true
}

func insertAt[T any](s []T, i int, v T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

func removeAt[T any](s []T, i int) []T {
	copy(s[i:], s[i+1:])
	var zero T
	s[len(s)-1] = zero // let the garbage collector have what it held
	return s[:len(s)-1]
}
