package aggregate

// strtab interns strings with reference counts; index 0 is "" and is never
// counted. A string whose count drops to zero is forgotten and its index
// reused. Not safe for concurrent use.
type strtab struct {
	ids  map[string]uint32
	strs []string
	refs []uint32
	free []uint32
	size int // bytes of live strings
}

func newStrtab() *strtab {
	return &strtab{ids: map[string]uint32{}, strs: []string{""}, refs: []uint32{0}}
}

// intern returns s's index and counts one more reference; b, when not nil,
// is s's bytes (looked up without allocating).
func (t *strtab) intern(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	if i, ok := t.ids[string(b)]; ok {
		t.refs[i]++
		return i
	}
	s := string(b)
	var i uint32
	if k := len(t.free); k > 0 {
		i = t.free[k-1]
		t.free = t.free[:k-1]
		t.strs[i], t.refs[i] = s, 1
	} else {
		i = uint32(len(t.strs))
		t.strs = append(t.strs, s)
		t.refs = append(t.refs, 1)
	}
	t.ids[s] = i
	t.size += len(s)
	return i
}

// internString is intern for a Go string.
func (t *strtab) internString(s string) uint32 {
	if s == "" {
		return 0
	}
	if i, ok := t.ids[s]; ok {
		t.refs[i]++
		return i
	}
	return t.intern([]byte(s))
}

// release drops one reference to i and reports whether it was the last.
func (t *strtab) release(i uint32) bool {
	if i == 0 {
		return false
	}
	t.refs[i]--
	if t.refs[i] > 0 {
		return false
	}
	s := t.strs[i]
	delete(t.ids, s)
	t.size -= len(s)
	t.strs[i] = ""
	t.free = append(t.free, i)
	return true
}

func (t *strtab) get(i uint32) string { return t.strs[i] }

func (t *strtab) len() int { return len(t.ids) }
