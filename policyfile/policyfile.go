package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/policy"
)

// Load reads and compiles the policy file at path. Errors name the path.
func Load(path string) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the path
	}
	return Parse(path, data)
}

// Parse compiles the policy in data, a YAML document; file names it in
// messages.
func Parse(file string, data []byte) (*policy.Policy, error) {
	doc, twice, err := decode(file, data)
	if err != nil {
		return nil, err
	}
	p, err := policy.Compile(file, doc)
	if len(twice) > 0 {
		return nil, errors.Join(append(twice, err)...)
	}
	return p, err
}

// decode decodes exactly one YAML document into a generic tree. A key
// written twice in a mapping is an error of its own, in twice, and the
// first is kept, so that the file's other errors are found too.
func decode(file string, data []byte) (doc any, twice []error, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil // empty: policy.Compile says so
		}
		return nil, nil, yamlError(file, err)
	}
	twice = keysTwice(file, &root, "", nil)
	if err := root.Decode(&doc); err != nil {
		return nil, nil, yamlError(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return doc, twice, nil
	case err != nil:
		return nil, nil, yamlError(file, err)
	}
	return nil, nil, fmt.Errorf("%s: line %d: a second YAML document: a policy file holds exactly one", file, next.Line)
}

// keysTwice appends to errs an error for each key written twice in a
// mapping of n, whose field path is path, and drops the later ones from n.
func keysTwice(file string, n *yaml.Node, path string, errs []error) []error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			errs = keysTwice(file, c, path, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = keysTwice(file, c, policy.IndexPath(path, i), errs)
		}
	case yaml.MappingNode:
		lines := make(map[string]int, len(n.Content)/2) // a key's first line
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k // an alias as a key stands for the key it names
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				name = k.Alias
			}
			at := policy.FieldPath(path, name.Value)
			if name.Kind == yaml.ScalarNode && name.Tag != "!!merge" {
				if first, dup := lines[name.Value]; dup {
					errs = append(errs, fmt.Errorf("%s: %s: written twice, at lines %d and %d", file, at, first, k.Line))
					continue
				}
				lines[name.Value] = k.Line
			}
			errs = keysTwice(file, v, at, errs)
			kept = append(kept, k, v)
		}
		n.Content = kept
	}
	return errs
}

// yamlError rewrites the decoder's errors as "<file>: line N: <problem>",
// one error per problem.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = fmt.Errorf("%s: %s", file, e)
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
}
