package replay

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// merge hands out the lines of several files in time order: a k-way merge
// of the files' sources (each sorted within its reorder window), holding
// one head line per file.
type merge struct {
	sources []*source // by file index; nil for a file skipped
	heads   entries   // the head line of each source not at its end
	free    []*entry
}

// openMerge opens the files, in order (a line's file index is its place in
// names). A file named twice, by the same name or another (a symlink), is
// an error; a file lumberjack was compressing (filesToSkip) is skipped.
func openMerge(names []string, warn func(string)) (*merge, error) {
	skip, err := filesToSkip(names, warn)
	if err != nil {
		return nil, err
	}
	m := &merge{sources: make([]*source, len(names))}
	for i, name := range names {
		if skip[i] {
			continue
		}
		s, err := openSource(name, i, &m.free, warn)
		if err != nil {
			m.close()
			return nil, err
		}
		m.sources[i] = s
	}
	for _, s := range m.sources {
		if s == nil {
			continue
		}
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

// filesToSkip returns which of the files named to leave out, and an error
// when one file is named twice (its lines would be replayed twice, doubling
// the rate every limit sees). lumberjack compresses a rotated file X.log in
// place: it writes X.log.gz, then removes X.log. When both are named, X.log
// is complete and X.log.gz may be half-written: X.log.gz is skipped, and
// warn names it.
func filesToSkip(names []string, warn func(string)) ([]bool, error) {
	infos := make([]os.FileInfo, len(names))
	for i, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, err
		}
		infos[i] = fi
	}
	skip := make([]bool, len(names))
	for i, name := range names {
		plain, ok := strings.CutSuffix(name, ".gz")
		if !ok {
			continue
		}
		fi, err := os.Stat(plain)
		if err != nil {
			continue // no X.log beside it: X.log.gz is complete
		}
		for j := range names {
			if j != i && os.SameFile(infos[j], fi) {
				skip[i] = true
				if warn != nil {
					warn(fmt.Sprintf("skipped %s: %s is named too (a rotated log being compressed: %s is complete, %s may be half-written)",
						name, names[j], names[j], name))
				}
				break
			}
		}
	}
	for i := range names {
		for j := range i {
			if !skip[i] && !skip[j] && os.SameFile(infos[i], infos[j]) {
				if names[i] == names[j] {
					return nil, fmt.Errorf("replay: %s is named twice: its lines would be replayed twice", names[i])
				}
				return nil, fmt.Errorf("replay: %s and %s are the same file: its lines would be replayed twice", names[j], names[i])
			}
		}
	}
	return skip, nil
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

// counts returns the lines skipped (malformed, or cut short) and the lines
// replayed late, over all files.
func (m *merge) counts() (skipped, late int64) {
	for _, s := range m.sources {
		if s != nil {
			skipped += s.bad
			late += s.late
		}
	}
	return skipped, late
}

// close closes the files.
func (m *merge) close() error {
	var errs []error
	for _, s := range m.sources {
		if s != nil {
			errs = append(errs, s.close())
		}
	}
	return errors.Join(errs...)
}
