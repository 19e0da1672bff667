package replay

import "errors"

// merge hands out the lines of several files in time order: a k-way merge
// of the files' sources (each sorted within its reorder window), holding
// one head line per file.
type merge struct {
	sources []*source
	heads   entries // the head line of each source not at its end
	free    []*entry
}

// openMerge opens the files, in order (a line's file index is its place in
// names).
func openMerge(names []string, warn func(string)) (*merge, error) {
	m := &merge{}
	for i, name := range names {
		s, err := openSource(name, i, &m.free, warn)
		if err != nil {
			m.close()
			return nil, err
		}
		m.sources = append(m.sources, s)
	}
	for _, s := range m.sources {
		e, err := s.next()
		if err != nil {
			m.close()
			return nil, err
		}
		if e != nil {
			m.heads.push(e)
		}
	}
	return m, nil
}

// next returns the earliest line of all files, nil after the last. The
// line is the caller's until it hands it back with release.
func (m *merge) next() (*entry, error) {
	if len(m.heads) == 0 {
		return nil, nil
	}
	e := m.heads.pop()
	following, err := m.sources[e.file].next()
	if err != nil {
		return nil, err
	}
	if following != nil {
		m.heads.push(following)
	}
	return e, nil
}

// release recycles a line next returned.
func (m *merge) release(e *entry) { m.free = append(m.free, e) }

// counts returns the malformed lines skipped and the lines replayed late,
// over all files.
func (m *merge) counts() (skipped, late int64) {
	for _, s := range m.sources {
		skipped += s.bad
		late += s.late
	}
	return skipped, late
}

// close closes the files.
func (m *merge) close() error {
	var errs []error
	for _, s := range m.sources {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}
